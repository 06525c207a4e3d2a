"""All of several locks, or none, for asyncio code: ``coordination.MultiLock``'s
algorithm (one global order, the sorted names; a failure releases what was taken)
over async locks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from types import TracebackType

from ..errors import LockLost, LockTimeout, NotHeld
from ..recipes.lock import check_timeout
from ..recipes.multilock import MultiLock
from .lock import AsyncLock


class AsyncMultiLock:
    """All the locks of ``names`` or none (see :class:`~coordination.MultiLock`): the
    same locks as ``coord.lock(name)``; one object is one holder. A cancelled
    ``acquire`` holds none of them."""

    def __init__(self, checked: MultiLock, make_lock: Callable[[str], AsyncLock]) -> None:
        self.names = checked.names  # sorted: the order every client takes them in
        self.timeout = checked.timeout
        self._locks = [make_lock(name) for name in self.names]

    def __repr__(self) -> str:
        return f"<AsyncMultiLock {list(self.names)!r} held={self.held}>"

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

    async def acquire(self, timeout: float | None = None, blocking: bool = True) -> bool:
        """Take every lock, in name order; True when all are held, False on timeout
        (then none is held). Raises what ``AsyncLock`` raises, also holding none."""
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        taken: list[AsyncLock] = []
        try:
            for lock in self._locks:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not await lock.acquire(timeout=left, blocking=blocking):
                    await _release_quietly(taken)
                    return False
                taken.append(lock)
        except BaseException:
            await asyncio.shield(_release_quietly(taken))
            raise
        return True

    async def release(self) -> None:
        """Release every lock (all of them, even if one fails); as ``MultiLock.release``."""
        lost, not_held = [], []
        for lock in reversed(self._locks):
            try:
                await lock.release()
            except LockLost:
                lost.append(lock.name)
            except NotHeld:
                not_held.append(lock.name)
        if len(not_held) == len(self._locks):
            raise NotHeld(f"multi-lock {list(self.names)!r} is not held")
        if lost:
            raise LockLost(f"locks {sorted(lost)!r} were lost with their session before release")

    async def __aenter__(self) -> AsyncMultiLock:
        if not await self.acquire(timeout=self.timeout):
            raise LockTimeout(f"multi-lock {list(self.names)!r} not acquired within {self.timeout}s")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc_type is None:
            await self.release()
        else:
            with contextlib.suppress(LockLost, NotHeld):
                await self.release()


async def _release_quietly(taken: list[AsyncLock]) -> None:
    for lock in reversed(taken):
        with contextlib.suppress(LockLost, NotHeld):
            await lock.release()
