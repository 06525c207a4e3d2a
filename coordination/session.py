"""Session state shared by both backends.

A :class:`Session` is one server-side session generation: a ZooKeeper session or an
etcd lease. Everything a recipe creates (contender nodes/keys, task claims) belongs
to one generation and dies with it. When a generation is lost it never comes back;
the backend opens a new generation for later work.

States: ``CONNECTED`` (the server confirms us), ``SUSPENDED`` (we cannot reach a
server; the session may still be alive), ``LOST`` (expired on the server, or presumed
expired by a local monotonic deadline), ``CLOSED`` (ended by us).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from .errors import SessionLost

log = logging.getLogger(__name__)


class SessionState(str, enum.Enum):
    CONNECTED = "CONNECTED"
    SUSPENDED = "SUSPENDED"
    LOST = "LOST"
    CLOSED = "CLOSED"


Listener = Callable[[SessionState], None]


class Waker(Protocol):
    """What a waiting recipe is woken through: ``set()`` may be called from any thread,
    more than once (a ``threading.Event``, or an event of an asyncio loop)."""

    def set(self) -> None: ...


class Session:
    """One session generation: its id, state, ``lost`` event and listeners.

    ``lost`` is set exactly once, when the state becomes ``LOST`` or ``CLOSED``;
    listeners run on every state change, in the thread that observed it, and must not
    block. Wakers (``Waker``) are set on every change so waiting recipes can
    re-check their condition without polling.
    """

    def __init__(self, session_id: int | str, ttl: float) -> None:
        self.id = session_id
        self.ttl = ttl
        self.lost = threading.Event()
        self._state = SessionState.CONNECTED
        self._guard = threading.Lock()
        self._listeners: list[Listener] = []
        self._wakers: set[Waker] = set()
        self.lost_at: float | None = None
        #: Local monotonic time after which the server may already have dropped this
        #: session (set by the backend while it cannot confirm the session).
        self.deadline: float | None = None
        #: Local monotonic time by which the backend's watchdog thread must run again. If
        #: it has not, the process was frozen (GC, SIGSTOP, swap) long enough for the
        #: server to drop the session: not alive, even before that thread wakes up.
        self.watchdog: float | None = None
        self._expired = False  # the deadline was seen passed: dead for good

    def __repr__(self) -> str:
        return f"<Session {self.id} {self._state.value}>"

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def alive(self) -> bool:
        """False once lost, or once the local deadline or the watchdog's has passed
        (even before the backend's thread has noticed and moved the state to LOST)."""
        if self.lost.is_set() or self._expired:
            return False
        now = time.monotonic()
        deadline, watchdog = self.deadline, self.watchdog
        if deadline is not None and now >= deadline:
            # Whoever sees the generation dead may act on it (give a lock up, abandon a
            # task's ack): a late confirmation from the server must not revive it.
            self._expired = True
            return False
        return watchdog is None or now < watchdog

    def renew(self, deadline: float) -> bool:
        """Push the local deadline to ``deadline`` (the server confirmed the session);
        False, changing nothing, if the generation is dead already, even if only its
        deadline had passed: it stays dead, and the backend must end it on the server
        too, so that its keys do not outlive what the recipes were told."""
        with self._guard:
            if not self.alive:
                return False
            self.deadline = deadline
            return True

    def check(self) -> None:
        """Raise ``SessionLost`` if this generation is lost, closed or past its deadline."""
        if not self.alive:
            raise SessionLost(f"session {self.id} is lost ({self._state.value.lower()})")

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(state)`` on every later state change (immediately if lost)."""
        with self._guard:
            if not self.lost.is_set():
                self._listeners.append(listener)
                return
            state = self._state
        _safe_call(listener, state)

    def remove_listener(self, listener: Listener) -> None:
        with self._guard:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def add_waker(self, event: Waker) -> None:
        with self._guard:
            self._wakers.add(event)
            if self.lost.is_set():
                event.set()

    def remove_waker(self, event: Waker) -> None:
        with self._guard:
            self._wakers.discard(event)

    # --- called by the backend only ----------------------------------------------------

    def disown(self) -> None:
        """In a forked child: this generation is the parent's, and reads as lost here.
        No listener runs (they serve the parent's work); the guards are new, as a
        parent's thread may have held them at the fork."""
        self._guard = threading.Lock()
        self._listeners, self._wakers = [], set()
        self._state = SessionState.LOST
        self.lost_at = time.monotonic()
        self.lost = threading.Event()
        self.lost.set()

    def set_state(self, state: SessionState) -> None:
        """Move to ``state``; LOST and CLOSED are final. Runs listeners and wakers."""
        with self._guard:
            if self.lost.is_set() or state == self._state:
                return
            self._state = state
            if state in (SessionState.LOST, SessionState.CLOSED):
                self.lost_at = time.monotonic()
                self.lost.set()
            listeners = list(self._listeners)
            wakers = list(self._wakers)
        # One line per change an operator cares about; a close is ours, not news.
        log.log(logging.DEBUG if state == SessionState.CLOSED else logging.INFO,
                "session %s %s", self.id, _CHANGES[state])
        for event in wakers:
            event.set()
        for listener in listeners:
            _safe_call(listener, state)


_CHANGES = {SessionState.CONNECTED: "connected again", SessionState.SUSPENDED:
            "suspended: no server answers (the session may live on)",
            SessionState.LOST: "lost: what it held is gone", SessionState.CLOSED: "closed"}


def _safe_call(listener: Listener, state: SessionState) -> None:
    try:
        listener(state)
    except Exception:  # a user callback must not kill the backend's thread
        log.exception("session listener %r failed", listener)


class StateListeners:
    """Listeners of every session generation of one backend: ``notify`` moves a
    generation to a state and tells each listener, in the thread that observed it."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def add(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def notify(self, session: Session, state: SessionState) -> None:
        session.set_state(state)
        for listener in list(self._listeners):
            _safe_call(listener, state)
