"""The recipes' own logic over the in-memory backend (``fake_backend.py``): no servers,
so these run in a second. That the backends keep these promises under real servers and
faults is what the contract and chaos tests prove; these catch a recipe's mistake fast."""

from __future__ import annotations

import threading

import pytest

from coordination import errors
from coordination.recipes.lock import Lock
from coordination.recipes.queue import Queue
from coordination.recipes.semaphore import Semaphore

from .fake_backend import FakeBackend
from .helpers import wait_for


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


def test_waiters_get_the_lock_in_arrival_order_with_growing_tokens(fake: FakeBackend) -> None:
    holder = Lock(fake, "sku")
    assert holder.acquire()
    order: list[tuple[int, int | None]] = []
    waiters = [Lock(fake, "sku") for _ in range(4)]
    threads = []
    for index, waiter in enumerate(waiters):
        def run(index: int = index, waiter: Lock = waiter) -> None:
            assert waiter.acquire(timeout=5)
            order.append((index, waiter.token))
            waiter.release()
        threads.append(threading.Thread(target=run))
        threads[-1].start()
        wait_for(lambda n=index + 2: len(fake.contenders(holder.path)) == n, 5,
                 message="the waiter queued")
    holder.release()
    for thread in threads:
        thread.join(5)
    assert [index for index, _token in order] == [0, 1, 2, 3]
    tokens = [token for _index, token in order]
    assert tokens == sorted(tokens) and holder.token is not None and holder.token < tokens[0]
    assert fake.contenders(holder.path) == []


def test_a_timed_out_acquire_leaves_no_entry(fake: FakeBackend) -> None:
    holder = Lock(fake, "sku")
    assert holder.acquire()
    assert not Lock(fake, "sku").acquire(timeout=0.05)
    assert len(fake.contenders(holder.path)) == 1


def test_a_lost_session_ends_the_hold_and_tells_the_holder(fake: FakeBackend) -> None:
    holder = Lock(fake, "sku")
    told = threading.Event()
    holder.on_lost(lambda _lock: told.set())
    assert holder.acquire()
    fake.expire()
    assert told.is_set() and not holder.held
    with pytest.raises(errors.LockLost):
        holder.release()
    assert Lock(fake, "sku").acquire(timeout=1)  # in a new session


def test_a_semaphore_never_lets_more_than_its_permits_in(fake: FakeBackend) -> None:
    semaphore = Semaphore(fake, "pool", permits=2)
    first, second = semaphore.acquire(timeout=1), semaphore.acquire(timeout=1)
    with pytest.raises(errors.LockTimeout):
        semaphore.acquire(timeout=0.05)
    first.release()
    third = semaphore.acquire(timeout=1)
    second.release()
    third.release()


def test_a_task_is_claimed_once_acked_once_and_dead_after_its_attempts(fake: FakeBackend) -> None:
    queue = Queue(fake, "orders", max_attempts=2)
    task_id = queue.put(b"order 1")
    assert queue.put(b"order 1 again", id=task_id) == task_id  # idempotent put
    task = queue.get(timeout=1)
    assert task is not None and task.data == b"order 1"
    assert queue.get(timeout=0) is None  # claimed: no one else gets it
    task.nack(error="payment down")
    again = queue.get(timeout=1)
    assert again is not None and again.attempts == 1 and again.token > task.token
    with pytest.raises(errors.AlreadyAcknowledged):
        task.ack()  # that claim was settled by its nack
    again.nack(error="payment down")
    assert queue.get(timeout=0) is None
    assert [dead.id for dead in queue.dead_letters()] == [task_id]
    assert queue.stats()["dead"] == 1


def test_tasks_of_one_key_come_one_at_a_time_in_order(fake: FakeBackend) -> None:
    queue = Queue(fake, "steps")
    for step in ("pay", "pack", "ship"):
        queue.put(step, key="order-7")
    seen = []
    for _ in range(3):
        task = queue.get(timeout=1)
        assert task is not None
        assert queue.get(timeout=0) is None  # the next step waits for this one
        seen.append(task.data.decode())
        task.ack()
    assert seen == ["pay", "pack", "ship"]
