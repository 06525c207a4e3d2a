"""A fair, fenced mutual-exclusion lock.

The algorithm, over the backend's ordered contender queue:

1. enqueue our entry (ZooKeeper: ephemeral sequential znode; etcd: key on our lease);
2. if no entry is before ours, we hold the lock: our entry's order is the token;
3. else watch only the entry just before ours, wait for it to go, and go to 2.

Waiters are served in arrival order and a release wakes one waiter. A failed,
cancelled or timed-out acquire removes its entry. The token (ZooKeeper sequence number,
etcd create revision) of every holder of a name is larger than that of every earlier
holder: pass it to the resource you protect and have it reject smaller tokens (see the
README, "Fencing tokens").
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from types import TracebackType

from ..backends.base import Backend, Contender
from ..errors import (
    AlreadyHeld,
    InvalidArgument,
    LockLost,
    LockTimeout,
    NotHeld,
    SessionLost,
)
from ..names import validate_name, validate_raw_path
from ..session import SessionState

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

    One object is one holder (not reentrant): create one per thread or task. Use
    ``with coord.lock(name, timeout=5) as lock:`` (raises ``LockTimeout``) or
    ``acquire()``/``release()``.
    """

    def __init__(
        self,
        backend: Backend,
        name: str,
        timeout: float | None = None,
        *,
        raw_prefix: bool = False,
        identifier: str | bytes = b"",
        node_style: str = "kazoo",
    ) -> None:
        if raw_prefix:
            self._path = backend.raw_path(validate_raw_path(name))
        else:
            self._path = backend.recipe_path("locks", validate_name(name, "lock name"))
        if node_style not in ("kazoo", "curator"):
            raise InvalidArgument("node_style must be 'kazoo' or 'curator'")
        self.name = name
        self.timeout = check_timeout(timeout)
        self._backend = backend
        self._data = identifier.encode() if isinstance(identifier, str) else bytes(identifier)
        self._style = node_style
        self._entry: Contender | None = None
        self._token: int | None = None
        self._state_guard = threading.Lock()
        self._callbacks: list[LostCallback] = []
        self._gate: threading.Lock | None = None
        self._listener: Callable[[SessionState], None] | None = None

    def __repr__(self) -> str:
        state = f"held token={self._token}" if self.held else "not held"
        return f"<Lock {self.name!r} {state}>"

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
        with self._state_guard:
            if self._entry is not None and self._entry.session.alive:
                raise AlreadyHeld(f"lock {self.name!r} is already held by this object")
        self._forget()  # a hold lost earlier and never released
        deadline = None if timeout is None else time.monotonic() + timeout
        gate = self._backend.gate(self._path) if self._backend.one_entry_per_session else None
        if gate is not None and not gate.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            entry = self._contend(deadline)
        except BaseException:
            if gate is not None:
                gate.release()
            raise
        if entry is None:
            if gate is not None:
                gate.release()
            return False
        self._hold(entry, gate)
        return True

    def _contend(self, deadline: float | None) -> Contender | None:
        """Steps 1-3 of the algorithm; retried in a new session if ours is lost while
        we wait (we had not got the lock, so nothing was promised)."""
        while True:
            entry = None
            try:
                entry, first = self._enqueue()
                while not first:
                    blocker = self._backend.predecessor(entry)
                    if blocker is None:
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        self._backend.withdraw(entry)
                        return None
                    self._backend.wait_deleted(blocker, entry, remaining)
                    first = False
                entry.session.check()
                return entry
            except SessionLost:
                if deadline is not None and time.monotonic() >= deadline:
                    return None
            except BaseException:
                if entry is not None:
                    self._backend.withdraw(entry)
                raise

    def _enqueue(self) -> tuple[Contender, bool | None]:
        if self._style == "kazoo":
            return self._backend.enqueue(self._path, self._data)
        return self._backend.enqueue(self._path, self._data, style=self._style)  # type: ignore[call-arg]

    def _hold(self, entry: Contender, gate: threading.Lock | None) -> None:
        self._gate = gate
        self._entry = entry
        self._token = entry.token

        def on_state(state: SessionState) -> None:
            if state == SessionState.LOST and self._entry is entry:
                for callback in list(self._callbacks):
                    with contextlib.suppress(Exception):
                        callback(self)

        entry.session.add_listener(on_state)
        self._listener = on_state

    def release(self) -> None:
        """Release the lock. Raises ``NotHeld`` if this object does not hold it, and
        ``LockLost`` if the hold was lost before (others may have held it since)."""
        entry = self._entry
        if entry is None:
            raise NotHeld(f"lock {self.name!r} is not held")
        try:
            if not entry.session.alive:
                raise LockLost(f"lock {self.name!r} was lost with its session before release")
            # Before the local gate opens: on etcd the next local holder reuses our key.
            self._backend.withdraw(entry)
        finally:
            self._forget()

    def _forget(self) -> Contender | None:
        """Drop the local state of the current hold; return its entry."""
        with self._state_guard:
            entry, self._entry = self._entry, None
            listener, self._listener = self._listener, None
            gate, self._gate = self._gate, None
        if entry is not None and listener is not None:
            entry.session.remove_listener(listener)
        if gate is not None:
            gate.release()
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
