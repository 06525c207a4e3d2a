"""The small interface every backend implements.

Recipes are written once over it. The central part is the *ordered contender queue*
behind locks: ``enqueue`` our entry under a path, ask which earlier entries
``blockers`` it under a :class:`Rule` (linearizable read), ``wait_deleted`` on those
alone (no herd; ``watch_deleted`` arms its watches for any waiter, asyncio's too), and
``withdraw`` our entry when done. Entries belong to one session generation
(:class:`~coordination.session.Session`) and vanish with it on the server.
The head of a queue (``head``, ``next_head``) is an election's leader. The queue's
records live in the backend's transactional key-value store, ``kv``
(:class:`~coordination.backends.kv.KeyValue`).

Each driver keeps its retries and error translation in one place (its connection's
``call``): recipes see only :mod:`coordination.errors`.
"""

from __future__ import annotations

import abc
import threading
import weakref
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from ..config import Config
from ..errors import ClientClosed, CoordinationError, SessionLost
from ..events import Events
from ..session import Listener, Session, StateListeners, Waker
from . import fork
from .contenders import MUTEX, Blocker, Contender, Head, Listed, Rule
from .kv import KeyValue
from .removals import PendingRemovals
from .watching import Watching, wait_armed


class Companion(Protocol):
    def stop(self) -> None:
        """End the companion's thread and wait for it."""


class Backend(abc.ABC):
    """A connection to one cluster: sessions, paths, contenders, and ``kv``."""

    name: ClassVar[str]
    #: Namings of lock entries ``enqueue(..., style=)`` takes besides its default, for
    #: interop with other clients' locks (ZooKeeper: kazoo's and Curator's node names).
    node_styles: ClassVar[tuple[str, ...]] = ()
    #: Whether ``enqueue`` of the plain mutex layout (``kind`` None) makes this
    #: process's contenders of one path take turns at one entry (etcd: one key a lease).
    local_turns: ClassVar[bool] = False
    #: The transactional key-value store, within this backend's sessions and errors.
    kv: KeyValue

    def __init__(self, config: Config) -> None:
        self.config = config
        self.closed = False
        self.listeners = StateListeners()
        #: What the recipes and the driver tell about themselves (``coordination.events``).
        self.events = Events()
        self.listeners.add(lambda state: self.events.emit("session", detail=state.value))
        self.removals = PendingRemovals(self._remove)
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

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(state)`` on every session state change of every generation."""
        self.listeners.add(listener)

    def add_companion(self, companion: Companion) -> None:
        """A thread of ours that uses this backend (an election observer): its
        ``stop()`` runs when ``close()`` begins, so the thread is gone before the
        connection is. Held weakly."""
        self._companions.add(companion)

    def stop_companions(self) -> None:
        for companion in list(self._companions):
            companion.stop()

    def check_open(self) -> None:
        """Raise ``ClientClosed`` after ``close()``; in a forked child, connect first."""
        if self.closed:
            raise ClientClosed("the coordinator is closed")
        if self._inherited:
            self._connect_in_child()

    @abc.abstractmethod
    def close(self) -> None:
        """End the session (its entries are deleted at once) and free resources."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """A small dict for ``repr`` and diagnostics."""

    # --- fork (see fork.py) ------------------------------------------------------------

    @property
    def inherited(self) -> bool:
        """True in a forked child until it has connected on its own."""
        return self._inherited

    def inherit(self) -> None:
        """In a forked child, right after the fork (one thread; nothing may block): the
        parent's sessions, turns and pending removals stay the parent's."""
        self._inherited = True
        self._fork_guard = threading.RLock()
        self._reopening = False
        self.removals.disown()
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

    @abc.abstractmethod
    def names(self, kind: str, parts: frozenset[str] = frozenset()) -> list[str]:
        """The names of recipe ``kind`` (``locks``, ``queues``, ...) that have anything
        on the servers now, in no particular order; for views (``inspect``). ``parts``:
        for a key-value recipe, the names of the keys right under one's root (its
        layout), by which a driver whose names nest tells where a name ends."""

    # --- the ordered contender queue ---------------------------------------------------

    @abc.abstractmethod
    def enqueue(self, path: str, data: bytes, kind: str | None = None, rule: Rule = MUTEX,
                *, style: str | None = None, timeout: float | None = None
                ) -> tuple[Contender, list[Blocker] | None] | None:
        """Create our entry under ``path`` in the current session, exactly once even if
        a reply is lost. Returns it and, when the read that came with the create tells,
        the entries blocking it under ``rule`` as ``blockers`` would (None: unknown);
        None if ``timeout`` passed first (a driver may make local contenders take
        turns). ``withdraw`` the entry, always, once done with it.

        ``kind`` None is the plain mutex layout (etcd ``PREFIX/LEASE_HEX``, kazoo's
        ``__lock__`` nodes, or the naming ``style`` of ``node_styles``). ``"lock"``
        (exclusive) or ``"rlock"`` (shared) give a new, distinct entry marked with that
        kind, several per session."""

    @abc.abstractmethod
    def blockers(self, me: Contender, rule: Rule) -> list[Blocker]:
        """The entries before ``me`` that block it under ``rule`` (empty: ``me`` holds),
        by a linearizable read. Raises ``SessionLost`` if ``me`` is no longer on the
        server."""

    def wait_deleted(self, blockers: Sequence[Blocker], me: Contender,
                     timeout: float | None) -> bool:
        """Wait until one of ``blockers`` may be gone or ``me``'s session changes state
        (True: re-check), or ``timeout`` seconds pass (False). Watches only those."""
        return wait_armed(lambda woken: self.watch_deleted(blockers, me, woken), timeout)

    @abc.abstractmethod
    def watch_deleted(self, blockers: Sequence[Blocker], me: Contender, woken: Waker) -> Watching:
        """Arm watches that call ``woken.set()`` once one of ``blockers`` may be gone or
        ``me``'s session changes state (from any thread); watches only those. Does not
        wait: the caller waits on ``woken`` as ``Watching`` says, then cancels."""

    @abc.abstractmethod
    def head(self, path: str) -> Head:
        """The first entry under ``path`` with its value (linearizable read)."""

    def next_head(self, path: str, seen: Head, timeout: float,
                  woken: threading.Event | None = None) -> Head | None:
        """Wait for the first change of the head of ``path`` after ``seen`` (its entry
        deleted or rewritten; or, if the queue was empty, an entry arrived) and return
        the head as read after that change; None if nothing changed within ``timeout``
        or before ``woken`` was set (the watch sets it too). Watches the head only (or
        the path while it is empty), from now: the head returned is the current one,
        never a queue of past ones, so a head that came and went within the round trip
        of that read may be skipped."""
        wait_armed(lambda event: self.watch_head(path, seen, event), timeout, woken)
        head = self.head(path)
        return None if head.same_entry(seen) else head

    @abc.abstractmethod
    def watch_head(self, path: str, seen: Head, woken: Waker) -> Watching:
        """Arm watches that call ``woken.set()`` when the head of ``path`` may have
        changed from ``seen`` (see ``next_head``); ``gone`` if it changed already. Does
        not wait; the caller reads the head after the wait."""

    @abc.abstractmethod
    def contenders(self, path: str) -> list[Listed]:
        """The contender entries under the lock or election ``path``, in queue order
        (the first holds), read at once; for views (``inspect``) and tests."""

    def withdraw(self, me: Contender) -> bool | None:
        """Remove our entry and end its local turn: True if this removed it; False if it
        was gone already (its session ended on the server, or a retry of this removal
        found its own work done); None if not known now. If the servers cannot be
        reached, the removal is retried later while its session lives (``removals``)."""
        try:
            return self._remove(me)
        finally:
            if me.turn is not None:
                me.turn.end()

    def _remove(self, me: Contender) -> bool | None:
        if not me.session.alive:
            return None  # the server drops the entries of a lost session by itself
        try:
            return self._delete_entry(me)
        except SessionLost:
            return None
        except CoordinationError:
            self.removals.add(me)
            return None

    @abc.abstractmethod
    def _delete_entry(self, me: Contender) -> bool:
        """Delete ``me`` if it is still the same entry (never a newer one); False if it
        was gone already."""
