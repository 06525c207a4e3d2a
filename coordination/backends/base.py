"""The small primitive interface every backend implements.

Recipes are written once over these primitives. The central one is the *ordered
contender queue* behind locks: ``enqueue`` our entry under a path, find the
``predecessor`` that blocks us (linearizable read), ``wait_deleted`` on it alone (no
herd), and ``withdraw`` our entry when done. Entries belong to one session generation
(:class:`~coordination.session.Session`) and vanish with it on the server.

Each backend keeps its retry and session-loss handling in one place (its ``_call``):
recipes see only :mod:`coordination.errors`.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

from ..config import Config
from ..errors import ClientClosed, CoordinationError, SessionLost
from ..session import Session, SessionState
from .kv import Check, Entry, Op

log = logging.getLogger(__name__)


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
class Blocker:
    """The entry just before ours, as seen by a read at ``revision`` (etcd) or 0."""

    key: str
    revision: int = 0


class Backend(abc.ABC):
    """A connection to one cluster: sessions, paths, and the contender primitives."""

    name: ClassVar[str]
    #: True where every entry of a session under one path has the same key (etcd's
    #: ``PREFIX/LEASE_ID`` layout): two local contenders must then take turns locally.
    one_entry_per_session: ClassVar[bool] = False

    def __init__(self, config: Config) -> None:
        self.config = config
        self.closed = False
        self._gates: dict[str, threading.Lock] = {}
        self._gates_guard = threading.Lock()
        self._orphans: list[Contender] = []
        self._orphans_guard = threading.Lock()
        self._listeners: list[Any] = []

    # --- sessions ----------------------------------------------------------------------

    @abc.abstractmethod
    def session(self) -> Session:
        """The current session generation, opening a new one if the last was lost.

        Raises ``ClientClosed`` after :meth:`close`, ``BackendUnavailable`` if no new
        session can be opened within the request timeout.
        """

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

    def _check_open(self) -> None:
        if self.closed:
            raise ClientClosed("the coordinator is closed")

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

    @abc.abstractmethod
    def enqueue(self, path: str, data: bytes) -> tuple[Contender, bool | None]:
        """Create our entry under ``path`` in the current session, exactly once even if
        a reply is lost. Returns it and ``True``/``False`` when the same server reply
        already tells whether it is first, ``None`` when unknown."""

    @abc.abstractmethod
    def predecessor(self, me: Contender) -> Blocker | None:
        """The entry right before ``me`` (None if ``me`` is first), by a linearizable
        read. Raises ``SessionLost`` if ``me`` is no longer on the server."""

    @abc.abstractmethod
    def wait_deleted(self, blocker: Blocker, me: Contender, timeout: float | None) -> bool:
        """Wait until ``blocker`` may be gone or ``me``'s session changes state (True:
        re-check), or ``timeout`` seconds pass (False). Watches only ``blocker``."""

    @abc.abstractmethod
    def _delete_entry(self, me: Contender) -> None:
        """Delete ``me`` if it is still the same entry (never a newer one)."""

    def withdraw(self, me: Contender) -> None:
        """Remove our entry. If the servers cannot be reached, remember it and retry
        later while its session lives, so that a failed or timed-out acquire never
        leaves an entry that would block others."""
        if not me.session.alive:
            return  # the server drops the entries of a lost session by itself
        try:
            self._delete_entry(me)
        except SessionLost:
            return
        except CoordinationError:
            log.warning("could not remove %s now; will retry", me.key)
            with self._orphans_guard:
                self._orphans.append(me)

    def adopt(self, key: str) -> None:
        """Our entry ``key`` is in use again (etcd reuses ``PREFIX/LEASE``): never let a
        pending removal of its earlier use delete it."""
        with self._orphans_guard:
            self._orphans = [o for o in self._orphans if o.key != key]

    def sweep_orphans(self) -> None:
        """Retry the removals that failed before (called by the backend when it is
        connected again)."""
        with self._orphans_guard:
            pending, self._orphans = self._orphans, []
        for me in pending:
            self.withdraw(me)

    # --- transactional key-value (see kv.py), for the queue ----------------------------

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
    def kv_leaves(self, root: str, depth: int, limit: int) -> list[str]:
        """Up to ``limit`` keys ``depth`` levels below ``root``, in key order."""

    @abc.abstractmethod
    def kv_count(self, root: str, depth: int) -> int:
        """How many keys lie ``depth`` levels below ``root``."""

    @abc.abstractmethod
    def kv_wait(self, key: str, seen: Entry | None, timeout: float) -> None:
        """Return when ``key`` changed since ``seen`` was read, or after ``timeout``."""

    # --- lifecycle ---------------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None:
        """End the session (its entries are deleted at once) and free resources."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """A small dict for ``repr`` and diagnostics."""
