"""The small primitive interface every backend implements.

Recipes are written once over these primitives. The central one is the *ordered
contender queue* behind locks: ``enqueue`` our entry under a path, find the
``predecessor`` that blocks us (linearizable read), ``wait_deleted`` on it alone (no
herd), and ``withdraw`` our entry when done. Entries belong to one session generation
(:class:`~coordination.session.Session`) and vanish with it on the server.

The same queue serves semaphores and read-write locks: a :class:`Rule` says which
earlier entries block ours (``blockers``), and ``wait_any_deleted`` waits on those only.
The head of a queue (``head``, ``wait_head_changed``) is an election's leader.

Each backend keeps its retry and session-loss handling in one place (its ``_call``):
recipes see only :mod:`coordination.errors`.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from ..config import Config
from ..errors import ClientClosed, CoordinationError, SessionLost
from ..session import Session, SessionState
from . import fork
from .kv import Check, Entry, KeyValue, Op

log = logging.getLogger(__name__)
#: Seconds between background retries of entry removals that failed.
ORPHAN_SWEEP_EVERY = 1.0


@dataclasses.dataclass(frozen=True)
class Contender:
    """Our entry in an ordered contender queue.

    ``token`` orders the entries of one path and is the fencing token: the ZooKeeper
    sequence number or the etcd create revision; a later entry always has a larger one.
    """

    path: str
    key: str
    token: int
    session: Session


@dataclasses.dataclass(frozen=True)
class Listed:
    """A contender entry as the servers hold it (anyone's, foreign clients' too): its
    full ``key``, ``value``, the session that ``owner``s it, and its ``token``."""

    key: str
    value: bytes
    owner: int
    token: int


@dataclasses.dataclass(frozen=True)
class Blocker:
    """An entry before ours, which ours waits for: ``key``, and on etcd the create
    revision it had when read (a key deleted and made again is another entry)."""

    key: str
    created: int = 0


@dataclasses.dataclass(frozen=True)
class Rule:
    """Which earlier entries block ours in a contender queue.

    Only entries whose kind is in ``kinds`` count (all entries if None). We hold while
    fewer than ``permits`` counted entries precede ours; otherwise each of the nearest
    ``permits`` of them blocks us: we hold only once one of those is gone, so waiting
    on exactly those (and re-checking when one goes) never misses a wake-up.

    The mutex and a writer: ``Rule()``; a reader: ``Rule(kinds={"lock"})`` (only the
    last writer before it); a semaphore: ``Rule(permits=n)``.
    """

    permits: int = 1
    kinds: frozenset[str] | None = None

    def blocking(self, before: Sequence[Blocker]) -> list[Blocker]:
        """``before``: the nearest counted entries before ours, nearest first, at most
        ``permits``. Returns those that block us; empty when we hold."""
        return list(before[: self.permits]) if len(before) >= self.permits else []


#: The rule of a plain mutex (and of a writer): blocked by the entry just before ours.
MUTEX = Rule()


@dataclasses.dataclass(frozen=True)
class Head:
    """The first entry of a contender queue (an election's leader), as read at
    ``revision`` (etcd; 0 on ZooKeeper). ``key`` is None when the queue is empty."""

    key: str | None
    value: bytes = b""
    token: int = -1
    revision: int = 0

    def same_entry(self, other: Head) -> bool:
        """The same leader entry with the same value (whenever each was read)."""
        return (self.key, self.token, self.value) == (other.key, other.token, other.value)


class Companion(Protocol):
    def stop(self) -> None:
        """End the companion's thread and wait for it."""


class Backend(abc.ABC):
    """A connection to one cluster: sessions, paths, and the contender primitives."""

    name: ClassVar[str]
    #: True where every entry of a session under one path has the same key (etcd's
    #: ``PREFIX/LEASE_ID`` layout): two local contenders must then take turns locally.
    one_entry_per_session: ClassVar[bool] = False
    #: Namings of lock entries that ``enqueue(..., style=)`` takes, for interop with other
    #: clients' locks (ZooKeeper: kazoo's and Curator's node names); empty: one naming.
    node_styles: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Config) -> None:
        self.config = config
        self.closed = False
        self._gates: dict[str, threading.Lock] = {}
        self._gates_guard = threading.Lock()
        self._orphans: list[Contender] = []
        self._orphans_guard = threading.Lock()
        self._next_sweep = 0.0
        self._listeners: list[Any] = []
        self._companions: weakref.WeakSet[Companion] = weakref.WeakSet()
        self._inherited = False  # in a forked child, not connected on its own yet
        self._fork_guard = threading.RLock()
        self._reopening = False
        fork.track(self)

    # --- sessions ----------------------------------------------------------------------

    @abc.abstractmethod
    def session(self) -> Session:
        """The current session generation, opening a new one if the last was lost.

        Raises ``ClientClosed`` after :meth:`close`, ``BackendUnavailable`` if no new
        session can be opened within the request timeout.
        """

    @property
    @abc.abstractmethod
    def session_ttl(self) -> float:
        """Seconds of the latest session as granted (ZooKeeper's negotiated timeout,
        etcd's lease TTL), at once: for sizing waits, never opening a session."""

    def add_companion(self, companion: Companion) -> None:
        """A thread of ours that uses this backend (an election observer): its
        ``stop()`` runs when ``close()`` begins, so the thread is gone before the
        connection is. Held weakly."""
        self._companions.add(companion)

    def _stop_companions(self) -> None:
        for companion in list(self._companions):
            companion.stop()

    def add_listener(self, listener: Any) -> None:
        """Call ``listener(state)`` on every session state change of every generation."""
        self._listeners.append(listener)

    def _notify(self, session: Session, state: SessionState) -> None:
        session.set_state(state)
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                log.exception("listener %r failed", listener)

    def check_open(self) -> None:
        """Raise ``ClientClosed`` after ``close()``; in a forked child, connect first."""
        if self.closed:
            raise ClientClosed("the coordinator is closed")
        if self._inherited:
            self._connect_in_child()

    # --- fork (see fork.py) ------------------------------------------------------------

    def inherit(self) -> None:
        """In a forked child, right after the fork (one thread; nothing may block): the
        parent's sessions, gates and pending removals stay the parent's."""
        self._inherited = True
        self._fork_guard = threading.RLock()
        self._reopening = False
        self._gates, self._gates_guard = {}, threading.Lock()
        self._orphans, self._orphans_guard = [], threading.Lock()
        self._companions = weakref.WeakSet()  # their threads are the parent's
        self._disown_parent()

    def _connect_in_child(self) -> None:
        with self._fork_guard:
            if not self._inherited or self._reopening:
                return  # done by another thread, or this one is doing it
            self._reopening = True
            try:
                self._reconnect_in_child()
                self._inherited = False
            finally:
                self._reopening = False

    @abc.abstractmethod
    def _disown_parent(self) -> None:
        """Part of ``inherit``: fresh guards; the current session reads as lost here
        (``Session.disown``). The parent's client is neither used nor closed."""

    @abc.abstractmethod
    def _reconnect_in_child(self) -> None:
        """Open a client and a session of the child's own (``connect_timeout``);
        ``fork.abandon`` the parent's client."""

    # --- paths -------------------------------------------------------------------------

    @abc.abstractmethod
    def recipe_path(self, kind: str, name: str) -> str:
        """Server path of recipe ``kind`` (e.g. ``locks``) named ``name`` (validated)."""

    @abc.abstractmethod
    def raw_path(self, path: str) -> str:
        """Server path for a foreign client's verbatim prefix (``raw_prefix=True``)."""

    def gate(self, path: str) -> threading.Lock:
        """A process-local lock per path, for backends with ``one_entry_per_session``."""
        with self._gates_guard:
            return self._gates.setdefault(path, threading.Lock())

    # --- the ordered contender queue ---------------------------------------------------

    def shares_entry(self, kind: str | None) -> bool:
        """True if two local contenders of ``kind`` under one path would share one
        server entry (etcd's mutex layout), so they must take turns through ``gate``."""
        return self.one_entry_per_session and kind is None

    @abc.abstractmethod
    def enqueue(self, path: str, data: bytes, kind: str | None = None, rule: Rule = MUTEX
                ) -> tuple[Contender, list[Blocker] | None]:
        """Create our entry under ``path`` in the current session, exactly once even if
        a reply is lost. Returns it and, when the read that came with the create tells,
        the entries blocking it under ``rule`` as ``blockers`` would (None: unknown).

        ``kind`` None is the plain mutex layout (etcd ``PREFIX/LEASE_HEX``, kazoo's
        ``__lock__`` nodes). ``"lock"`` (exclusive) or ``"rlock"`` (shared) give a new,
        distinct entry marked with that kind, several per session."""

    @abc.abstractmethod
    def predecessor(self, me: Contender) -> Blocker | None:
        """The entry right before ``me`` (None if ``me`` is first), by a linearizable
        read. Raises ``SessionLost`` if ``me`` is no longer on the server."""

    def blockers(self, me: Contender, rule: Rule) -> list[Blocker]:
        """The entries before ``me`` that block it under ``rule`` (empty: ``me`` holds),
        by a linearizable read. The mutex rule is exactly ``predecessor``. Raises
        ``SessionLost`` if ``me`` is no longer on the server."""
        if rule == MUTEX:
            blocker = self.predecessor(me)
            return [] if blocker is None else [blocker]
        return rule.blocking(self._preceding(me, rule))

    @abc.abstractmethod
    def _preceding(self, me: Contender, rule: Rule) -> list[Blocker]:
        """The nearest ``rule.permits`` entries before ``me`` whose kind counts under
        ``rule``, nearest first (one linearizable read that also proves ``me`` exists)."""

    @abc.abstractmethod
    def wait_deleted(self, blocker: Blocker, me: Contender, timeout: float | None) -> bool:
        """Wait until ``blocker`` may be gone or ``me``'s session changes state (True:
        re-check), or ``timeout`` seconds pass (False). Watches only ``blocker``."""

    def wait_any_deleted(self, blockers: Sequence[Blocker], me: Contender,
                         timeout: float | None) -> bool:
        """``wait_deleted`` for several blockers: return once any of them may be gone."""
        if len(blockers) == 1:
            return self.wait_deleted(blockers[0], me, timeout)
        return self._wait_any_deleted(blockers, me, timeout)

    @abc.abstractmethod
    def _wait_any_deleted(self, blockers: Sequence[Blocker], me: Contender,
                          timeout: float | None) -> bool:
        """``wait_any_deleted`` with a watch on each of ``blockers``."""

    @abc.abstractmethod
    def head(self, path: str) -> Head:
        """The first entry under ``path`` with its value (linearizable read)."""

    @abc.abstractmethod
    def next_head(self, path: str, seen: Head, timeout: float,
                  woken: threading.Event | None = None) -> Head | None:
        """Wait for the first change of the head of ``path`` after ``seen`` (its entry
        deleted or rewritten; or, if the queue was empty, an entry arrived) and return
        the head as read after that change; None if nothing changed within ``timeout``
        or before ``woken`` was set (the watch sets it too). Watches the head only (or
        the path while it is empty), from now: the head returned is the current one,
        never a queue of past ones, so a head that came and went within the round trip
        of that read may be skipped."""

    @abc.abstractmethod
    def _delete_entry(self, me: Contender) -> bool:
        """Delete ``me`` if it is still the same entry (never a newer one); False if it
        was gone already."""

    def withdraw(self, me: Contender) -> bool | None:
        """Remove our entry: True if this removed it; False if it was gone already (its
        session ended on the server, or a retry of this removal found its own work
        done); None if not known now. If the servers cannot be reached, remember it and
        retry later while its session lives, so that a failed or timed-out acquire never
        leaves an entry that would block others."""
        if not me.session.alive:
            return None  # the server drops the entries of a lost session by itself
        try:
            return self._delete_entry(me)
        except SessionLost:
            return None
        except CoordinationError:
            log.warning("could not remove %s now; will retry", me.key)
            with self._orphans_guard:
                self._orphans.append(me)
            return None

    def adopt(self, key: str) -> None:
        """Our entry ``key`` is in use again (etcd reuses ``PREFIX/LEASE``): never let a
        pending removal of its earlier use delete it."""
        with self._orphans_guard:
            self._orphans = [o for o in self._orphans if o.key != key]

    def sweep_orphans_if_due(self) -> None:
        """Retry pending removals in the background about once a second: called by the
        backend's own timer thread, as a connection that stays up while requests fail
        brings no reconnect to trigger a sweep."""
        now = time.monotonic()
        if self._orphans and now >= self._next_sweep:
            self._next_sweep = now + ORPHAN_SWEEP_EVERY
            threading.Thread(target=self.sweep_orphans, daemon=True,
                             name="coordination-orphan-sweep").start()

    def sweep_orphans(self) -> None:
        """Retry the removals that failed before (called by the backend when it is
        connected again, and by :meth:`sweep_orphans_if_due`)."""
        with self._orphans_guard:
            pending, self._orphans = self._orphans, []
        for me in pending:
            self.withdraw(me)

    # --- transactional key-value (see kv.py), for the queue ----------------------------

    @property
    def kv(self) -> KeyValue:
        """This backend's transactional key-value store."""
        return _KVOfBackend(self)

    @abc.abstractmethod
    def kv_root(self, kind: str, name: str) -> str:
        """Root path (no trailing ``/``) of recipe ``kind`` named ``name``."""

    @abc.abstractmethod
    def kv_get(self, key: str) -> Entry | None:
        """The entry at ``key`` or None, by a linearizable read (ZooKeeper: after sync)."""

    @abc.abstractmethod
    def kv_commit(self, checks: Sequence[Check], ops: Sequence[Op],
                  session: Session | None = None) -> int | None:
        """Apply ``ops`` atomically if every check holds: the commit's stamp, or None if
        a check failed. Ephemeral creates belong to ``session``. Raises
        ``OutcomeUnknown`` if the reply was lost (the commit may have applied)."""

    @abc.abstractmethod
    def kv_written_version(self, stamp: int, before: Entry | None) -> int:
        """The version a ``Version`` check would now compare for a key that the commit
        with ``stamp`` created (``before`` None) or updated (from ``before``; it must be
        the commit's first update, whose stamp ``kv_commit`` returns)."""

    @abc.abstractmethod
    def kv_leaves(self, root: str, depth: int, limit: int) -> list[str]:
        """Up to ``limit`` first keys ``depth`` levels below ``root``, in key order: at
        least one if any exists (fewer than ``limit`` may be returned where more exist:
        those of the first bucket). Leaves deeper than 1 must be created with that
        ``depth`` (see ``Create``)."""

    @abc.abstractmethod
    def kv_counts(self, roots: Sequence[tuple[str, int]]) -> list[int]:
        """For each ``(root, depth)``, how many keys lie ``depth`` levels below ``root``,
        all as of one instant (a key moved between two roots meanwhile is counted once).
        ZooKeeper has no snapshot reads: under writes that go on through every pass it
        confirms, it returns its last pass, whose counts may be from different instants."""

    @abc.abstractmethod
    def kv_wait(self, key: str, seen: Entry | None, timeout: float) -> None:
        """Return when ``key`` changed since ``seen`` was read, or after ``timeout``."""

    def kv_next_write(self, key: str, version: int) -> bytes | None:
        """The value written by the first write of ``key`` after ``version``, from the
        server's history; None if unknown (ZooKeeper keeps no history; etcd: compacted
        away, or that write was a delete)."""
        return None

    def kv_sync(self, key: str) -> bool:
        """Make the next ``kv_get`` of ``key`` see every write acknowledged before this
        call (ZooKeeper: ``sync``). False where reads are linearizable already (etcd):
        nothing was done."""
        return False

    # --- lifecycle ---------------------------------------------------------------------

    @abc.abstractmethod
    def contenders(self, path: str) -> list[Listed]:
        """The contender entries under the lock or election ``path``, in queue order
        (the first holds), read at once; for views (``inspect``) and tests."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the session (its entries are deleted at once) and free resources."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """A small dict for ``repr`` and diagnostics."""


class _KVOfBackend(KeyValue):
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    def root(self, kind: str, name: str) -> str:
        return self._b.kv_root(kind, name)

    def get(self, key: str) -> Entry | None:
        return self._b.kv_get(key)

    def commit(self, checks: Sequence[Check], ops: Sequence[Op],
               session: Session | None = None) -> int | None:
        return self._b.kv_commit(checks, ops, session)

    def written_version(self, stamp: int, before: Entry | None) -> int:
        return self._b.kv_written_version(stamp, before)

    def leaves(self, root: str, depth: int, limit: int) -> list[str]:
        return self._b.kv_leaves(root, depth, limit)

    def counts(self, roots: Sequence[tuple[str, int]]) -> list[int]:
        return self._b.kv_counts(roots)

    def wait(self, key: str, seen: Entry | None, timeout: float) -> None:
        self._b.kv_wait(key, seen, timeout)

    def next_write(self, key: str, version: int) -> bytes | None:
        return self._b.kv_next_write(key, version)

    def sync(self, key: str) -> bool:
        return self._b.kv_sync(key)
