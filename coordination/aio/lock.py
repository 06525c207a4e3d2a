"""The lock for asyncio tasks: ``coordination.Lock``'s algorithm (its steps), driven on
the loop. Same entries, tokens and fairness as the sync lock: sync and async holders
of one name exclude each other, as do foreign clients (etcdctl, kazoo).

On etcd the contenders of one process share one key per lease (``Backend.local_turns``):
the tasks of one async coordinator take turns at it through an ``asyncio.Lock`` per
name (FIFO), so that no request thread ever waits for a turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ..errors import AlreadyHeld, LockLost, LockTimeout, NotHeld
from ..recipes.lock import Lock, check_timeout
from ..session import Session
from .driver import Driver


class AsyncLock:
    """A named, fair, fenced lock for asyncio tasks; one object is one holder (create
    one per task). ``async with coord.lock(name, timeout=5) as held:`` (raises
    ``LockTimeout``), or ``await acquire()`` / ``await release()``.

    A cancelled ``acquire`` (``task.cancel()``, ``asyncio.timeout``) removes its entry
    and never leaves a hold behind; ``lost`` resolves when a hold is lost with its
    session.
    """

    def __init__(self, lock: Lock, driver: Driver, gate: asyncio.Lock | None) -> None:
        self._lock = lock
        self._driver = driver
        self._gate = gate  # this process's turn at the name (etcd's mutex), or None
        self._gated = False
        self._lost: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        lock.on_lost(self._on_lost)

    def __repr__(self) -> str:
        return repr(self._lock).replace("<Lock", "<AsyncLock", 1)

    @property
    def name(self) -> str:
        return self._lock.name

    @property
    def path(self) -> str:
        """The server path (ZooKeeper) or key prefix (etcd) of this lock."""
        return self._lock.path

    @property
    def timeout(self) -> float | None:
        """The default timeout of ``async with``."""
        return self._lock.timeout

    @property
    def held(self) -> bool:
        """True while we hold the lock; False as soon as its session is known lost."""
        return self._lock.held

    @property
    def token(self) -> int | None:
        """The fencing token of the current (or most recent) hold."""
        return self._lock.token

    @property
    def session(self) -> Session | None:
        """The session generation of the current hold (None if not held)."""
        return self._lock.session

    @property
    def lost(self) -> asyncio.Future[None]:
        """A future that resolves (to None) when the hold is lost with its session;
        pending while it holds, and after a release. A new one with each ``acquire``.
        Await it, or ``asyncio.wait`` on it beside
        the work the lock protects, and stop that work when it is done. Raises
        ``NotHeld`` before the first hold."""
        if self._lost is None:
            raise NotHeld(f"lock {self.name!r} was never acquired")
        return self._lost

    def on_lost(self, callback: Callable[[AsyncLock], None]) -> None:
        """Run ``callback(lock)`` once, in the backend's thread, when a hold of this lock
        is lost to session loss (``lost`` is the way on the loop)."""
        self._lock.on_lost(lambda _lock: callback(self))

    def ensure_held(self) -> None:
        """Raise ``LockLost`` (or ``NotHeld`` if never acquired) unless held now."""
        self._lock.ensure_held()

    async def acquire(self, timeout: float | None = None, blocking: bool = True) -> bool:
        """Wait for the lock; True when held, False on timeout or if not ``blocking``
        and taken. Raises ``AlreadyHeld``, ``BackendUnavailable``, ``ClientClosed``."""
        timeout = check_timeout(timeout)
        if not blocking:
            timeout = 0.0
        if self.held:
            raise AlreadyHeld(f"lock {self.name!r} is already held by this object")
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._gate is not None and not self._gated:
            if not await _take(self._gate, timeout):
                return False
            self._gated = True
        self._loop = asyncio.get_running_loop()
        self._lost = self._loop.create_future()  # before the hold: a loss may come at once
        try:
            got = await self._driver.drive(
                self._lock.acquire_steps(_left(deadline)),
                undo=lambda held: self._lock.release_steps() if held else None)
        except BaseException:
            self._ungate()
            raise
        if not got:
            self._ungate()
        return got

    async def release(self) -> None:
        """Release the lock. Raises ``NotHeld`` if this object does not hold it, and
        ``LockLost`` if the hold was lost before (others may have held it since). A
        cancelled release still removes the entry."""
        try:
            await self._driver.drive(self._lock.release_steps())
        finally:
            if self._lock.session is None:
                self._ungate()

    def _ungate(self) -> None:
        if self._gated:
            self._gated = False
            assert self._gate is not None
            self._gate.release()

    def _on_lost(self, _lock: Lock) -> None:
        """In the backend's thread: resolve ``lost`` on the loop."""
        lost, loop = self._lost, self._loop
        if lost is None or loop is None:
            return
        try:
            loop.call_soon_threadsafe(_resolve, lost)
        except RuntimeError:
            pass  # the loop is closed

    async def __aenter__(self) -> AsyncLock:
        if not await self.acquire(timeout=self.timeout):
            raise LockTimeout(f"lock {self.name!r} not acquired within {self.timeout}s")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc_type is None:
            await self.release()
        else:
            try:
                await self.release()
            except (LockLost, NotHeld):
                pass


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _take(gate: asyncio.Lock, timeout: float | None) -> bool:
    """Take ``gate`` within ``timeout`` seconds (None: however long); False if not."""
    if timeout is None:
        await gate.acquire()
        return True
    taking = asyncio.ensure_future(gate.acquire())
    try:
        await asyncio.sleep(0)  # a free gate is taken in the task's first step
        if not taking.done() and timeout > 0:
            await asyncio.wait({taking}, timeout=timeout)
    except BaseException:
        _drop(taking, gate)
        raise
    if taking.done():
        return True
    _drop(taking, gate)
    return False


def _drop(taking: asyncio.Future[Any], gate: asyncio.Lock) -> None:
    """Give up a take of ``gate``: cancel it, and give the gate back if it got it."""
    taking.cancel()

    def give_back(done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            gate.release()

    taking.add_done_callback(give_back)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
