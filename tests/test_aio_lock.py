"""The asyncio lock (``coordination.aio``) on real clusters: waiting holds no thread,
waiters are served in FIFO order, sync and async holders exclude each other, a cancel
at any await point leaves neither an entry nor a hold, and ``lost`` resolves."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import coordination
import coordination.aio
from coordination import errors

from .conftest import TTL
from .helpers import contenders
from .test_session_loss import expire_session

pytestmark = pytest.mark.integration

WAITERS = 1000


class CancelAtRequest:
    """Cancels the calling task while its ``k``-th request through ``coord``'s driver
    is in flight (white box: the driver's one way to the pool); ``count`` tells how many
    requests were made. Use as ``with CancelAtRequest(coord, k) as at:``."""

    def __init__(self, coord: coordination.aio.AsyncCoordinator, k: int) -> None:
        self.k = k
        self.count = 0
        self._driver = coord._driver
        self._settle = self._driver._settle

    async def _counting(self, fn: Any, *args: Any) -> Any:
        self.count += 1
        if self.count == self.k:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return await self._settle(fn, *args)

    def __enter__(self) -> CancelAtRequest:
        self._driver._settle = self._counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self._driver._settle = self._settle  # type: ignore[method-assign]


def run(url: str, body: Callable[[coordination.aio.AsyncCoordinator], Awaitable[Any]]) -> Any:
    """``body(coord)`` on a new event loop, with an async coordinator on ``url``."""
    async def main() -> Any:
        async with await coordination.aio.connect(url) as coord:
            return await body(coord)

    return asyncio.run(main())


def test_a_thousand_waiters_are_served_in_fifo_order_without_a_thread_each(url: str) -> None:
    before = threading.active_count()

    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        served: list[int] = []
        holding = 0
        most_threads = 0
        sampling = True

        async def sample() -> None:
            nonlocal most_threads
            while sampling:
                most_threads = max(most_threads, threading.active_count())
                await asyncio.sleep(0.01)

        async def contend() -> None:
            nonlocal holding
            lock = coord.lock("fifo")
            assert await lock.acquire(timeout=120)
            holding += 1
            await asyncio.sleep(0)  # let any other holder run, if there were one
            assert holding == 1, "two holders at once"
            assert lock.token is not None
            served.append(lock.token)
            holding -= 1
            await lock.release()

        sampler = asyncio.create_task(sample())
        first = coord.lock("fifo")
        assert await first.acquire()
        tasks = [asyncio.create_task(contend()) for _ in range(WAITERS)]
        if coord.backend == "zookeeper":  # an entry each (etcd: one key a lease, in turns)
            loop = asyncio.get_running_loop()
            while len(await loop.run_in_executor(None, contenders, coord.sync, first)) <= WAITERS:
                await asyncio.sleep(0.05)
        await first.release()
        await asyncio.gather(*tasks)
        sampling = False
        await sampler
        assert len(served) == WAITERS
        assert served == sorted(served), "not served in the order the entries were made"
        # The request pool (4) and the backend's own few threads, whatever the waiters.
        assert most_threads - before <= 12, f"{most_threads - before} threads for {WAITERS} waiters"

    run(url, body)


def test_sync_and_async_holders_of_one_name_exclude_each_other(url: str, connect: Any) -> None:
    sync_lock = connect().lock("shared")
    assert sync_lock.acquire()

    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        lock = coord.lock("shared")
        assert not await lock.acquire(timeout=0.3)
        assert not await lock.acquire(blocking=False)
        acquiring = asyncio.ensure_future(lock.acquire(timeout=30))
        await asyncio.sleep(0.2)
        assert not acquiring.done()
        await asyncio.get_running_loop().run_in_executor(None, sync_lock.release)
        assert await acquiring
        assert lock.token is not None and sync_lock.token is not None
        assert lock.token > sync_lock.token
        with pytest.raises(errors.AlreadyHeld):
            await lock.acquire()
        await lock.release()
        with pytest.raises(errors.NotHeld):
            await lock.release()
        async with coord.lock("shared", timeout=5) as held:
            assert held.held
        with pytest.raises(errors.LockTimeout):
            assert sync_lock.acquire()
            try:
                async with coord.lock("shared", timeout=0.2):
                    pass
            finally:
                sync_lock.release()

    run(url, body)


@pytest.mark.parametrize("busy", [False, True], ids=["free", "busy"])
def test_a_cancel_at_any_await_point_leaves_no_entry_and_no_hold(url: str, connect: Any,
                                                                  busy: bool) -> None:
    """Cancel the acquire while its k-th request is in flight, for every k until one
    completes first (and, busy, while it waits): each time, no entry of ours is left,
    nothing is held, and the lock is free for the next."""
    other = connect().lock("cancel")
    if busy:
        assert other.acquire()

    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        k = 0
        while True:
            k += 1
            lock = coord.lock("cancel")
            with CancelAtRequest(coord, k) as at:
                try:
                    got = await asyncio.wait_for(lock.acquire(), 0.3 if busy else None)
                except (asyncio.CancelledError, asyncio.TimeoutError):
                    got = None
            if got:  # ran to its end before request k
                assert not busy
                await lock.release()
                break
            assert not lock.held
            entries = contenders(coord.sync, lock)
            left = entries[1:] if busy else entries  # busy: the other holder's is first
            assert left == [], f"cancel at request {k} left {left}"
            if busy and at.count < k:  # no request was cancelled: the wait was
                break
            # The next contender of this coordinator is not held up by a lost turn.
            probe = coord.lock("cancel")
            assert await probe.acquire(timeout=0.5 if busy else 5) is (not busy)
            if not busy:
                await probe.release()
            assert k < 20
        assert k >= 2  # at least one cancel landed on a request

    run(url, body)


def test_lost_resolves_when_the_session_is_lost(url: str, connect: Any) -> None:
    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        lock = coord.lock("lost")
        with pytest.raises(errors.NotHeld):
            lock.lost  # noqa: B018 - never acquired
        assert await lock.acquire()
        work = asyncio.ensure_future(asyncio.sleep(60))
        assert not lock.lost.done()
        await asyncio.get_running_loop().run_in_executor(None, expire_session, coord.sync)
        done, _pending = await asyncio.wait({work, lock.lost}, timeout=TTL * 3,
                                            return_when=asyncio.FIRST_COMPLETED)
        assert done == {lock.lost}
        work.cancel()
        assert not lock.held
        with pytest.raises(errors.LockLost):
            await lock.release()
        assert await lock.acquire(timeout=10)  # a new session: the lock works again
        assert not lock.lost.done()
        await lock.release()

    run(url, body)
