"""All of several locks, or none: ``coord.multi_lock(["sku-1", "sku-7"])``.

The algorithm, over single fair locks:

1. take the locks one at a time, in one global order (the sorted names), each with what
   is left of the timeout;
2. if one is not taken (timeout, error, lost session), release the ones taken.

Every client takes overlapping names in the same order, so two multi-locks never wait
for each other in a cycle: whoever holds the lowest name they share goes first. A failed
acquire leaves nothing behind, and each name keeps its own fencing token, as a single
lock of that name would give (the same lock: a multi-lock over ``sku-1`` excludes
``coord.lock("sku-1")``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from types import TracebackType

from ..errors import InvalidArgument, LockLost, LockTimeout, NotHeld
from .lock import Lock, check_timeout


class MultiLock:
    """All the locks of ``names`` or none; one object is one holder (not reentrant)."""

    def __init__(self, make_lock: Callable[[str], Lock], names: Iterable[str],
                 timeout: float | None = None) -> None:
        if isinstance(names, str | bytes):
            raise InvalidArgument("names must be a list of lock names, not one name")
        listed = list(names)
        if not listed:
            raise InvalidArgument("a multi-lock needs at least one name")
        if not all(isinstance(name, str) for name in listed):
            raise InvalidArgument(f"lock names must be strings, got {listed!r}")
        if len(set(listed)) != len(listed):
            raise InvalidArgument(f"lock names must be distinct, got {listed!r}")
        self.timeout = check_timeout(timeout)
        #: The names, in the order every client takes them.
        self.names = tuple(sorted(listed))
        self._locks = [make_lock(name) for name in self.names]

    def __repr__(self) -> str:
        return f"<MultiLock {list(self.names)!r} held={self.held}>"

    @property
    def held(self) -> bool:
        """True while every lock is held (False as soon as one's session is lost)."""
        return all(lock.held for lock in self._locks)

    @property
    def tokens(self) -> dict[str, int | None]:
        """The fencing token of each name's current (or most recent) hold."""
        return {lock.name: lock.token for lock in self._locks}

    def ensure_held(self) -> None:
        """Raise ``LockLost`` (or ``NotHeld``) unless every lock is held now."""
        for lock in self._locks:
            lock.ensure_held()

    def acquire(self, timeout: float | None = None, blocking: bool = True) -> bool:
        """Take every lock, in name order; True when all are held. False on timeout (or,
        not ``blocking``, if one is taken): then none is held. Raises what ``Lock``
        raises, also holding none."""
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        taken: list[Lock] = []
        try:
            for lock in self._locks:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not lock.acquire(timeout=left, blocking=blocking):
                    self._release_quietly(taken)
                    return False
                taken.append(lock)
        except BaseException:
            self._release_quietly(taken)
            raise
        return True

    def release(self) -> None:
        """Release every lock (all of them, even if one fails). ``NotHeld`` if none was
        held; ``LockLost`` naming the locks whose holds were lost before (others may
        have held those since)."""
        lost, not_held = [], []
        for lock in reversed(self._locks):
            try:
                lock.release()
            except LockLost:
                lost.append(lock.name)
            except NotHeld:
                not_held.append(lock.name)
        if len(not_held) == len(self._locks):
            raise NotHeld(f"multi-lock {list(self.names)!r} is not held")
        if lost:
            raise LockLost(f"locks {sorted(lost)!r} were lost with their session before release")

    @staticmethod
    def _release_quietly(taken: list[Lock]) -> None:
        for lock in reversed(taken):
            with contextlib.suppress(LockLost, NotHeld):
                lock.release()

    def __enter__(self) -> MultiLock:
        if not self.acquire(timeout=self.timeout):
            raise LockTimeout(f"multi-lock {list(self.names)!r} not acquired within {self.timeout}s")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.release()
        else:
            with contextlib.suppress(LockLost, NotHeld):
                self.release()
