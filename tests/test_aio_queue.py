"""The asyncio queue (``coordination.aio``) on real clusters: the same tasks as the sync
API's, a waiting ``get`` woken by a put, a cancel at any await point of ``get`` that
loses no task, and the async worker (retries, dead letters, stop with and without
grace)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import coordination
import coordination.aio
from coordination import Retry

from .test_aio_lock import CancelAtRequest, run

pytestmark = pytest.mark.integration


async def until(condition: Any, timeout: float, what: str) -> None:
    """Poll ``condition()`` on the loop until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.02)


def test_tasks_go_both_ways_between_the_sync_and_async_apis(url: str, connect: Any) -> None:
    sync_queue = connect().queue("orders", codec="json")

    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        queue = coord.queue("orders", codec="json")
        assert await queue.get(timeout=0) is None
        waiting = asyncio.ensure_future(queue.get(timeout=30))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        await loop.run_in_executor(None, sync_queue.put, {"order": 1})
        task = await waiting
        assert task is not None and task.data == {"order": 1} and task.attempts == 0
        assert time.monotonic() - started < 2  # woken by the put, not by a poll
        async with task:
            pass  # acked
        await queue.put_many([{"order": 2}, {"order": 3}], priority=1)
        assert [task.data for task in await queue.peek(5)] == [{"order": 2}, {"order": 3}]
        seen = []
        async for task in queue.tasks():
            seen.append(task.data)
            if task.data == {"order": 3}:
                await task.nack()
                break
            await task.ack()
        assert seen == [{"order": 2}, {"order": 3}]
        again = await loop.run_in_executor(None, lambda: sync_queue.get(timeout=5))
        assert again is not None and again.data == {"order": 3} and again.attempts == 1
        await loop.run_in_executor(None, again.ack)
        assert (await queue.stats())["pending"] == 0

    run(url, body)


@pytest.mark.parametrize("ready", [True, False], ids=["ready", "empty"])
def test_a_cancelled_get_loses_no_task(url: str, connect: Any, ready: bool) -> None:
    """Cancel ``get`` while its k-th request is in flight, for every k until one
    completes first (and while it waits on an empty queue): each time the task is
    claimed and returned, or left ready with no attempt counted."""
    other = connect().queue("cancel")
    if ready:
        other.put(b"only")

    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        queue = coord.queue("cancel")
        loop = asyncio.get_running_loop()
        k = 0
        while True:
            k += 1
            with CancelAtRequest(coord, k) as at:
                try:
                    got = await asyncio.wait_for(queue.get(timeout=10), None if ready else 0.3)
                except (asyncio.CancelledError, asyncio.TimeoutError):
                    got = None
            if got is not None:  # ran to its end before request k
                assert ready and got.data == b"only" and got.attempts == 0
                await got.ack()
                break
            if not ready:  # the cancel came while it waited: nothing was claimed
                await loop.run_in_executor(None, other.put, b"later")
                late = await loop.run_in_executor(None, lambda: other.get(timeout=5))
                assert late is not None and late.data == b"later" and late.attempts == 0
                await loop.run_in_executor(None, late.ack)
                if at.count < k:
                    break
                continue
            back = await loop.run_in_executor(None, lambda: other.get(timeout=5))
            assert back is not None, f"a cancel at request {k} lost the task"
            assert back.data == b"only" and back.attempts == 0
            await loop.run_in_executor(None, back.give_back)
            assert k < 30
        assert k >= 2

    run(url, body)


def test_the_async_worker_retries_dead_letters_and_acks(url: str) -> None:
    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        queue = coord.queue("work", max_attempts=2)
        await queue.put_many([b"ok-%d" % i for i in range(20)] + [b"bad"])
        handled: list[bytes] = []

        async def handler(task: coordination.aio.AsyncTask) -> None:
            await asyncio.sleep(0)
            if task.data == b"bad":
                raise ValueError("no such order")
            handled.append(task.data)

        retry = Retry(base=0.05, max=0.1)
        async with queue.worker(handler, concurrency=4, retry=retry, batch=3) as worker:
            await until(lambda: worker.stats.processed == 20 and worker.stats.dead == 1, 20,
                        "20 acked and 1 dead")
        assert sorted(handled) == sorted(b"ok-%d" % i for i in range(20))
        assert worker.stats.retried == 1 and worker.stats.in_flight == 0
        dead = await queue.dead_letters()
        assert [task.data for task in dead] == [b"bad"]
        assert "ValueError: no such order" in (dead[0].error or "")

    run(url, body)


def test_a_stop_out_of_grace_gives_the_hung_handlers_task_back(url: str, connect: Any) -> None:
    other = connect().queue("hung")

    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        queue = coord.queue("hung")
        await queue.put(b"stuck")
        started = asyncio.Event()

        async def hangs(task: coordination.aio.AsyncTask) -> None:
            started.set()
            await asyncio.Event().wait()

        worker = await queue.worker(hangs, concurrency=2).start()
        await asyncio.wait_for(started.wait(), 10)
        stats = await worker.stop(grace=0.2)
        assert stats.abandoned == 1 and stats.in_flight == 0
        loop = asyncio.get_running_loop()
        back = await loop.run_in_executor(None, lambda: other.get(timeout=5))
        assert back is not None and back.data == b"stuck" and back.attempts == 1
        await loop.run_in_executor(None, back.ack)

    run(url, body)


def test_a_cancelled_consume_gives_its_running_tasks_back(url: str, connect: Any) -> None:
    other = connect().queue("consume")

    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        queue = coord.queue("consume")
        await queue.put(b"long")
        started = asyncio.Event()

        async def slow(task: coordination.aio.AsyncTask) -> None:
            started.set()
            await asyncio.sleep(60)

        consuming = asyncio.ensure_future(queue.consume(slow, concurrency=1))
        await asyncio.wait_for(started.wait(), 10)
        consuming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consuming
        loop = asyncio.get_running_loop()
        back = await loop.run_in_executor(None, lambda: other.get(timeout=5))
        assert back is not None and back.data == b"long" and back.attempts == 1

    run(url, body)
