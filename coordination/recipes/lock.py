"""A fair, fenced mutual-exclusion lock.

The algorithm, over the backend's ordered contender queue:

1. enqueue our entry (ZooKeeper: ephemeral sequential znode; etcd: key on our lease);
2. ask the backend which earlier entries block ours under the lock's *rule*; if none,
   we hold the lock: our entry's order is the token;
3. else watch only those entries, wait for one of them to go, and go to 2.

For this mutex the rule (``MUTEX``) is "the entry just before ours". Read-write locks
and semaphores are this same loop with another rule (see ``backends.contenders.Rule``):
subclasses set ``_recipe`` (server path), ``_kind`` (entry kind) and ``_rule()``.

Waiters are served in arrival order and a release wakes one waiter. A failed,
cancelled or timed-out acquire removes its entry. The token (ZooKeeper sequence number,
etcd create revision) of every holder of a name is larger than that of every earlier
holder: pass it to the resource you protect and have it reject smaller tokens (see the
README, "Fencing tokens").
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from types import TracebackType

from ..backends.base import Backend
from ..backends.contenders import MUTEX, Contender, Rule
from ..errors import (
    AlreadyHeld,
    InvalidArgument,
    LockLost,
    LockTimeout,
    NotHeld,
    SessionLost,
)
from ..names import validate_name, validate_raw_path
from ..session import Session, SessionState
from .steps import Steps, WaitDeleted, call, run

log = logging.getLogger(__name__)

LostCallback = Callable[["Lock"], None]


def check_timeout(timeout: float | None) -> float | None:
    """``None`` or a finite number >= 0; else ``InvalidArgument``."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidArgument(f"timeout must be a number of seconds or None, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise InvalidArgument(f"timeout must be >= 0, got {timeout!r}")
    return None if math.isinf(timeout) else float(timeout)


class Lock:
    """A named lock; the same name is the same lock in every process.

    One object is one holder: create one per thread or task. With ``reentrant=True``
    the thread holding it may acquire it again (same hold, same token) and must release
    it as many times; other threads wait for its last release. Use
    ``with coord.lock(name, timeout=5) as lock:`` (raises ``LockTimeout``) or
    ``acquire()``/``release()``.
    """

    #: Server path segment of this recipe, and how its names are called in errors.
    _recipe = "locks"
    _what = "lock"
    #: Kind of our contender entries (None: the plain mutex layout, see Backend.enqueue).
    _kind: str | None = None

    def __init__(
        self,
        backend: Backend,
        name: str,
        timeout: float | None = None,
        *,
        raw_prefix: bool = False,
        identifier: str | bytes = b"",
        node_style: str | None = None,
        reentrant: bool = False,
    ) -> None:
        if raw_prefix:
            self._path = backend.raw_path(validate_raw_path(name))
        else:
            self._path = backend.recipe_path(self._recipe, validate_name(name, f"{self._what} name"))
        if node_style is not None and node_style not in backend.node_styles:
            raise InvalidArgument(
                f"node_style {node_style!r}: the {backend.name} backend names its lock "
                f"entries {' or '.join(map(repr, backend.node_styles)) or 'one way only'}")
        if not isinstance(reentrant, bool):
            raise InvalidArgument(f"reentrant must be a bool, got {reentrant!r}")
        self.name = name
        self.timeout = check_timeout(timeout)
        self._backend = backend
        self._data = identifier.encode() if isinstance(identifier, str) else bytes(identifier)
        self._style = node_style
        self._entry: Contender | None = None
        self._token: int | None = None
        self._held_at = 0.0  # time.monotonic() of the current hold's start
        self._state_guard = threading.Lock()
        self._callbacks: list[LostCallback] = []
        self._listener: Callable[[SessionState], None] | None = None
        self._reentrant = reentrant
        self._local = threading.Lock()  # reentrant: held by the owner thread
        self._owner: int | None = None
        self._depth = 0

    def __repr__(self) -> str:
        state = f"held token={self._token}" if self.held else "not held"
        return f"<{type(self).__name__} {self.name!r} {state}>"

    def _rule(self) -> Rule:
        """Which earlier entries block ours: for a mutex, the one just before ours."""
        return MUTEX

    # --- state -------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The server path (ZooKeeper) or key prefix (etcd) of this lock."""
        return self._path

    @property
    def held(self) -> bool:
        """True while we hold the lock; False as soon as its session is known lost."""
        entry = self._entry
        return entry is not None and entry.session.alive

    @property
    def token(self) -> int | None:
        """The fencing token of the current (or most recent) hold."""
        return self._token

    @property
    def session(self) -> Session | None:
        """The session generation of the current hold (None if not held): the hold
        ends with it."""
        entry = self._entry
        return None if entry is None else entry.session

    def ensure_held(self) -> None:
        """Raise ``LockLost`` (or ``NotHeld`` if never acquired) unless held now."""
        if self._entry is None:
            raise NotHeld(f"lock {self.name!r} is not held")
        if not self._entry.session.alive:
            raise LockLost(f"lock {self.name!r} was lost with its session")

    def on_lost(self, callback: LostCallback) -> None:
        """Run ``callback(lock)`` once when a hold of this lock is lost to session loss."""
        self._callbacks.append(callback)

    # --- acquire / release -------------------------------------------------------------

    def acquire(self, timeout: float | None = None, blocking: bool = True) -> bool:
        """Wait for the lock; True when held, False on timeout or if not ``blocking``
        and taken. Raises ``AlreadyHeld``, ``BackendUnavailable``, ``ClientClosed``."""
        timeout = check_timeout(timeout)
        if not blocking:
            timeout = 0.0
        if self._reentrant:
            return self._acquire_reentrant(timeout)
        return self._acquire(timeout)

    def _acquire_reentrant(self, timeout: float | None) -> bool:
        me = threading.get_ident()
        with self._state_guard:
            if self._owner == me and self._entry is not None:
                if not self._entry.session.alive:
                    raise LockLost(f"lock {self.name!r} was lost with its session; release it")
                self._depth += 1
                return True
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._local.acquire(timeout=-1 if timeout is None else timeout):
            return False  # another thread holds this object
        try:
            got = self._acquire(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except BaseException:
            self._local.release()
            raise
        if not got:
            self._local.release()
            return False
        with self._state_guard:
            self._owner, self._depth = me, 1
        return True

    def _acquire(self, timeout: float | None) -> bool:
        return run(self.acquire_steps(timeout))

    def acquire_steps(self, timeout: float | None) -> Steps[bool]:
        """``acquire`` (not reentrant; ``timeout`` checked) as steps for a driver
        (``recipes.steps``): True when held."""
        with self._state_guard:
            if self._entry is not None and self._entry.session.alive:
                raise AlreadyHeld(f"{self._what} {self.name!r} is already held by this object")
        lost = self._forget()  # a hold lost earlier and never released
        if lost is not None:
            yield call(self._backend.withdraw, lost)
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        events = self._backend.events
        try:
            entry = yield from self._contention(deadline)
        except Exception as exc:
            events.emit("lock.failed", self.name, time.monotonic() - started,
                        detail=type(exc).__name__)
            raise
        if entry is None:
            events.emit("lock.timeout", self.name, time.monotonic() - started)
            return False
        self._hold(entry)
        events.emit("lock.acquired", self.name, self._held_at - started)
        return True

    def _contention(self, deadline: float | None) -> Steps[Contender | None]:
        """Steps 1-3 of the algorithm; retried in a new session if ours is lost while
        we wait (we had not got the lock, so nothing was promised)."""
        rule = self._rule()
        backend = self._backend
        while True:
            entry = None
            try:
                enqueued = yield call(lambda: backend.enqueue(
                    self._path, self._data, self._kind, rule, style=self._style,
                    timeout=_left(deadline)))
                if enqueued is None:
                    return None  # the time ran out before our entry was made
                entry, blockers = enqueued  # blockers known from the same reply, or None
                while True:
                    if blockers is None:
                        blockers = yield call(backend.blockers, entry, rule)
                    if not blockers:
                        break
                    remaining = _left(deadline)
                    if remaining is not None and remaining <= 0:
                        yield call(backend.withdraw, entry)
                        return None
                    yield WaitDeleted(backend, blockers, entry, remaining)
                    blockers = None
                entry.session.check()
                return entry
            except SessionLost:
                if entry is not None:
                    yield call(backend.withdraw, entry)
                if deadline is not None and time.monotonic() >= deadline:
                    return None
            except BaseException:
                if entry is not None:
                    yield call(backend.withdraw, entry)
                raise

    def _hold(self, entry: Contender) -> None:
        self._entry = entry
        self._token = entry.token
        self._held_at = held_at = time.monotonic()

        def on_state(state: SessionState) -> None:
            if state == SessionState.LOST and self._entry is entry:
                self._backend.events.emit("lock.lost", self.name, time.monotonic() - held_at)
                log.info("lock %r lost with its session (token %s)", self.name, entry.token)
                for callback in list(self._callbacks):
                    try:
                        callback(self)
                    except Exception:  # one failing callback must not stop the others
                        log.exception("on_lost callback %r of %r failed", callback, self)

        entry.session.add_listener(on_state)
        self._listener = on_state

    def release(self) -> None:
        """Release the lock. Raises ``NotHeld`` if this object does not hold it (or,
        reentrant, another thread does), and ``LockLost`` if the hold was lost before
        (others may have held it since)."""
        if not self._reentrant:
            self._release()
            return
        with self._state_guard:
            if self._entry is None or self._owner != threading.get_ident():
                raise NotHeld(f"lock {self.name!r} is not held by this thread")
            if self._depth > 1 and self._entry.session.alive:
                self._depth -= 1
                return
            self._owner, self._depth = None, 0
        try:
            self._release()
        finally:
            self._local.release()

    def _release(self) -> None:
        run(self.release_steps())

    def release_steps(self) -> Steps[None]:
        """``release`` (not reentrant) as steps for a driver (``recipes.steps``)."""
        entry = self._forget()
        if entry is None:
            raise NotHeld(f"lock {self.name!r} is not held")
        alive = entry.session.alive
        # Always: it also ends the entry's local turn. On etcd the next local holder
        # reuses our key, so this comes before anything else may acquire.
        removed = yield call(self._backend.withdraw, entry)
        # Our entry already gone means the server ended our session before we knew
        # (others may have held the lock since); so does a session lost meanwhile.
        if not alive or removed is False or not entry.session.alive:
            raise LockLost(f"lock {self.name!r} was lost with its session before release")
        self._backend.events.emit("lock.released", self.name, time.monotonic() - self._held_at)

    def _forget(self) -> Contender | None:
        """Drop the local state of the current hold; return its entry (to withdraw)."""
        with self._state_guard:
            entry, self._entry = self._entry, None
            listener, self._listener = self._listener, None
        if entry is not None and listener is not None:
            entry.session.remove_listener(listener)
        return entry

    # --- context manager ---------------------------------------------------------------

    def __enter__(self) -> Lock:
        if not self.acquire(timeout=self.timeout):
            raise LockTimeout(f"lock {self.name!r} not acquired within {self.timeout}s")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.release()
        else:
            with contextlib.suppress(LockLost, NotHeld):
                self.release()


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
