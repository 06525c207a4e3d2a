"""Counters, read-write locks and semaphores for asyncio code: the sync recipes'
requests in the request threads, their waits (the lock's steps) on the loop."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import Any

from ..backends.base import Backend
from ..errors import LockLost, LockTimeout, NotHeld
from ..recipes.counter import Counter
from ..recipes.lock import check_timeout
from ..recipes.rwlock import RWLock
from ..recipes.semaphore import Permit, Semaphore
from .driver import Driver
from .lock import AsyncLock


class AsyncCounter:
    """A named integer (see :class:`~coordination.Counter`), for asyncio code."""

    def __init__(self, counter: Counter, driver: Driver) -> None:
        self._counter = counter
        self._driver = driver

    def __repr__(self) -> str:
        return f"<AsyncCounter {self._counter.name!r}>"

    @property
    def name(self) -> str:
        return self._counter.name

    async def value(self) -> int:
        """The current value (a linearizable read)."""
        return await self._driver.call(lambda: self._counter.value)

    async def add(self, delta: int, min: int | None = None, max: int | None = None) -> int:
        """See :meth:`Counter.add`: the new value."""
        return await self._driver.call(self._counter.add, delta, min, max)

    async def set(self, value: int) -> None:
        """See :meth:`Counter.set`."""
        await self._driver.call(self._counter.set, value)


class AsyncRWLock:
    """A named read-write lock (see :class:`~coordination.RWLock`), for asyncio code:
    ``async with rw.read(timeout=5):`` / ``async with rw.write(timeout=5):``."""

    def __init__(self, rwlock: RWLock, driver: Driver) -> None:
        self._rwlock = rwlock
        self._driver = driver

    def __repr__(self) -> str:
        return f"<AsyncRWLock {self._rwlock.name!r}>"

    @property
    def name(self) -> str:
        return self._rwlock.name

    def read(self, timeout: float | None = None) -> AsyncLock:
        """A reader lock object (one holder); ``timeout`` is the default for ``async with``."""
        return AsyncLock(self._rwlock.read(timeout), self._driver, None)

    def write(self, timeout: float | None = None) -> AsyncLock:
        """A writer lock object (one holder); ``timeout`` is the default for ``async with``."""
        return AsyncLock(self._rwlock.write(timeout), self._driver, None)


class AsyncSemaphore:
    """A named semaphore (see :class:`~coordination.Semaphore`), for asyncio code:
    ``async with sem.acquire(timeout=5) as permit:``, or ``permit = await
    sem.acquire()`` then ``await permit.release()``."""

    def __init__(self, backend: Backend, name: str, permits: int, driver: Driver) -> None:
        self.name = name
        self.permits = permits
        self._backend = backend
        self._driver = driver
        self._agreed: Semaphore | None = None  # made (and its permits checked) once

    def __repr__(self) -> str:
        return f"<AsyncSemaphore {self.name!r} permits={self.permits}>"

    def acquire(self, timeout: float | None = None, blocking: bool = True) -> PermitRequest:
        """Wait for a permit, in arrival order: await it for the held permit (an
        ``AsyncLock``: release it), or use it with ``async with``. Raises ``LockTimeout``
        after ``timeout`` seconds (at once if not ``blocking``), ``PermitsMismatch``."""
        return PermitRequest(lambda: self._acquire(check_timeout(timeout), blocking))

    async def _acquire(self, timeout: float | None, blocking: bool) -> AsyncLock:
        if self._agreed is None:
            self._agreed = await self._driver.call(Semaphore, self._backend, self.name, self.permits)
        permit = AsyncLock(Permit(self._backend, self.name, self.permits), self._driver, None)
        if not await permit.acquire(timeout=timeout, blocking=blocking):
            raise LockTimeout(f"no permit of semaphore {self.name!r} within {timeout}s")
        return permit


class PermitRequest:
    """What ``AsyncSemaphore.acquire`` returns: awaitable (the held permit), and an
    async context manager that releases the permit at the end of the block."""

    def __init__(self, acquire: Callable[[], Coroutine[Any, Any, AsyncLock]]) -> None:
        self._acquire = acquire
        self._permit: AsyncLock | None = None

    def __await__(self) -> Generator[Any, None, AsyncLock]:
        return self._acquire().__await__()

    async def __aenter__(self) -> AsyncLock:
        self._permit = await self._acquire()
        return self._permit

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        permit, self._permit = self._permit, None
        if permit is None:
            return
        if exc_type is None:
            await permit.release()
        else:
            try:
                await permit.release()
            except (LockLost, NotHeld):
                pass


__all__ = ["AsyncCounter", "AsyncRWLock", "AsyncSemaphore", "PermitRequest"]
