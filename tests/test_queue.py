"""Queue contract: one test body per point, against every backend."""

from __future__ import annotations

import threading
import time

import pytest

import coordination
from coordination import errors
from coordination.recipes.queue import limits as queue_module

from .conftest import TTL
from .helpers import wait_for
from .test_session_loss import expire_session

pytestmark = pytest.mark.integration


def drain(queue: coordination.Queue, timeout: float = 0.5) -> list[coordination.Task]:
    tasks = []
    while (task := queue.get(timeout=timeout)) is not None:
        tasks.append(task)
    return tasks


def test_put_get_ack_and_stats(coord) -> None:
    q = coord.queue("orders")
    tid = q.put(b"payload")
    assert isinstance(tid, str) and len(q) == 1
    assert q.stats() == {"pending": 1, "delayed": 0, "blocked": 0, "in_flight": 0, "dead": 0}
    task = q.get(timeout=5)
    assert task is not None and task.id == tid and task.data == b"payload"
    assert task.attempts == 0 and task.priority == 0 and task.key is None
    assert q.stats()["in_flight"] == 1 and len(q) == 0
    task.ack()
    assert q.stats() == {"pending": 0, "delayed": 0, "blocked": 0, "in_flight": 0, "dead": 0}
    with pytest.raises(errors.AlreadyAcknowledged):
        task.ack()
    assert q.get(timeout=0.2) is None


def test_str_payloads_and_bad_input_change_nothing(coord) -> None:
    q = coord.queue("orders")
    assert q.get(timeout=0) is None
    tid = q.put("prix: 5 €")
    with pytest.raises(errors.InvalidPayload):
        q.put(123)  # type: ignore[arg-type]
    with pytest.raises(errors.PayloadTooLarge):
        q.put(b"x" * (2 * 1024 * 1024))
    for kwargs in ({"priority": 101}, {"priority": -101}, {"priority": 1.5},
                   {"delay": -1}, {"delay": float("nan")}, {"key": ""}, {"id": "bad id/"}):
        with pytest.raises(errors.InvalidArgument):
            q.put(b"x", **kwargs)
    for bad in (0, -1, 1.5):
        with pytest.raises(errors.InvalidArgument):
            coord.queue("orders", max_attempts=bad)
    with pytest.raises(errors.InvalidName):
        coord.queue("../orders")
    assert len(q) == 1
    task = q.get(timeout=5)
    assert task.data == "prix: 5 €".encode() and task.id == tid
    other = coord.queue("other")
    with pytest.raises(errors.WrongQueue):
        other.ack(task)
    task.ack()


def test_priority_then_fifo(coord) -> None:
    q = coord.queue("orders")
    for i in range(3):
        q.put(f"low-{i}", priority=-5)
    for i in range(3):
        q.put(f"mid-{i}")
    q.put_many([f"high-{i}" for i in range(3)], priority=7)
    got = [t.data.decode() for t in drain(q)]
    assert got == [f"{p}-{i}" for p in ("high", "mid", "low") for i in range(3)]


def test_delay_is_respected(coord) -> None:
    q = coord.queue("orders")
    start = time.monotonic()
    q.put(b"later", delay=1.0)
    q.put(b"now")
    assert q.stats()["delayed"] == 1
    first = q.get(timeout=5)
    assert first.data == b"now"
    first.ack()
    later = q.get(timeout=5)
    assert later.data == b"later" and time.monotonic() - start >= 1.0
    later.ack()


def test_nack_retries_then_dead_letters_then_requeue(coord) -> None:
    q = coord.queue("orders", max_attempts=2)
    tid = q.put(b"flaky")
    first = q.get(timeout=5)
    first.nack(error="timeout talking to the payment gateway")
    second = q.get(timeout=5)
    assert second.id == tid and second.attempts == 1 and second.token > first.token
    with pytest.raises(errors.AlreadyAcknowledged):
        first.ack()  # settled once: changes nothing
    second.nack(error="still down")
    assert q.get(timeout=0.3) is None
    dead = q.dead_letters()
    assert [(t.id, t.error) for t in dead] == [(tid, "still down")]
    assert q.stats()["dead"] == 1 and len(q) == 0
    q.requeue_dead(tid)
    third = q.get(timeout=5)
    assert third.id == tid and third.attempts == 0
    third.ack()
    with pytest.raises(errors.TaskNotFound):
        q.requeue_dead(tid)


def test_context_manager_acks_or_nacks(coord) -> None:
    q = coord.queue("orders")
    q.put(b"ok")
    with q.get(timeout=5) as task:
        assert task.data == b"ok"
    assert len(q) == 0 and q.stats()["in_flight"] == 0
    q.put(b"boom")
    with pytest.raises(RuntimeError), q.get(timeout=5):
        raise RuntimeError("handler failed")
    again = q.get(timeout=5)
    assert again.attempts == 1 and "handler failed" in (again.error or "")
    again.ack()


def test_ordering_keys_one_at_a_time_in_put_order(coord) -> None:
    q = coord.queue("orders")
    for step in ("created", "paid", "shipped"):
        q.put(f"order-1 {step}", key="order-1")
    q.put(b"order-2 created", key="order-2")
    first = q.get(timeout=5)
    second = q.get(timeout=5)
    assert {first.data, second.data} == {b"order-1 created", b"order-2 created"}
    assert q.get(timeout=0.3) is None  # order-1 paid waits for order-1 created
    for task in (first, second):
        task.ack()
    paid = q.get(timeout=5)
    assert paid.data == b"order-1 paid"
    paid.nack()  # a retry keeps its turn: shipped still waits
    again = q.get(timeout=5)
    assert again.data == b"order-1 paid"
    assert q.get(timeout=0.3) is None
    again.ack()
    shipped = q.get(timeout=5)
    assert shipped.data == b"order-1 shipped"
    shipped.ack()


def test_idempotent_put(coord) -> None:
    q = coord.queue("orders")
    assert q.put(b"pay", id="order-42-paid") == "order-42-paid"
    assert q.put(b"pay", id="order-42-paid") == "order-42-paid"
    assert q.put(b"pay", id="order-42-paid", key="order-42") == "order-42-paid"
    assert len(q) == 1
    task = q.get(timeout=5)
    task.ack()
    assert q.get(timeout=0.2) is None
    # A producer retrying after a lost reply, once the task was handled: still a no-op.
    assert q.put(b"pay", id="order-42-paid") == "order-42-paid"
    assert q.put(b"pay", id="order-42-paid", key="order-42") == "order-42-paid"
    assert len(q) == 0 and q.get(timeout=0.2) is None


def test_acked_ids_are_forgotten_after_the_dedupe_window(coord, monkeypatch) -> None:
    q = coord.queue("orders")
    q.put(b"pay", id="order-7-paid")
    q.get(timeout=5).ack()
    monkeypatch.setattr(queue_module, "DEDUPE_WINDOW", 0.0)
    assert q.stats() == {"pending": 0, "delayed": 0, "blocked": 0, "in_flight": 0, "dead": 0}

    def forgotten() -> bool:
        assert q.get(timeout=0.1) is None  # an idle consumer's maintenance forgets acked ids
        q.put(b"pay again", id="order-7-paid")
        return len(q) == 1

    wait_for(forgotten, timeout=TTL * 3, message="the acked id forgotten")
    task = q.get(timeout=5)
    assert task is not None and task.data == b"pay again" and task.attempts == 0
    task.ack()


def test_lost_claim_is_redelivered_and_fenced(connect) -> None:
    worker, other = connect(), connect()
    q = worker.queue("orders")
    tid = q.put(b"work")
    task = q.get(timeout=5)
    expire_session(worker)
    theirs = other.queue("orders").get(timeout=TTL * 3)
    assert theirs is not None and theirs.id == tid
    assert theirs.attempts == 1 and theirs.token > task.token
    with pytest.raises(errors.ClaimLost):
        task.ack()
    with pytest.raises(errors.ClaimLost):
        task.nack()
    theirs.ack()
    assert other.queue("orders").stats()["in_flight"] == 0


def test_many_consumers_share_without_duplicates(connect) -> None:
    producer = connect().queue("orders")
    ids = set(producer.put_many([f"t{i}" for i in range(120)]))
    seen: list[str] = []
    guard = threading.Lock()

    def consume(queue: coordination.Queue) -> None:
        while (task := queue.get(timeout=1.0)) is not None:
            with guard:
                seen.append(task.id)
            task.ack()

    threads = [threading.Thread(target=consume, args=(connect().queue("orders"),))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(seen) == sorted(ids)


def test_stats_count_a_task_moving_between_states_once(connect) -> None:
    # One task goes back and forth between pending and in flight while stats are read:
    # every reading must see it exactly once (separate reads saw it twice, or as blocked).
    mover = connect().queue("orders", max_attempts=10_000)
    reader = connect().queue("orders")
    mover.put(b"x")
    stop = threading.Event()
    moves = 0

    def move() -> None:
        nonlocal moves
        while not stop.is_set():
            task = mover.get(timeout=5)
            assert task is not None
            stop.wait(0.03)  # paced, so ZooKeeper's confirmed passes succeed
            task.nack()
            moves += 1
            stop.wait(0.03)

    thread = threading.Thread(target=move)
    thread.start()
    try:
        readings = [reader.stats() for _ in range(300)]
    finally:
        stop.set()
        thread.join(10)
    assert moves >= 10
    wrong = [s for s in readings if (s["pending"], s["in_flight"]) not in ((1, 0), (0, 1))
             or s["blocked"] or s["delayed"] or s["dead"]]
    assert not wrong, f"{len(wrong)} of {len(readings)} readings miscounted: {wrong[:3]}"


def test_gets_follow_priority_then_put_order_as_the_head_moves(coord, monkeypatch) -> None:
    # Millisecond buckets: tasks spread over many. A consumer remembers where the head
    # was; a more urgent task, or a nacked one going back to its old bucket, lands
    # before that place and must still come first.
    monkeypatch.setattr(queue_module, "INNER_NS", 1_000_000)
    monkeypatch.setattr(queue_module, "OUTER_NS", 100_000_000)
    queue = coord.queue("orders")
    for i in range(6):
        queue.put(f"low-{i}")
    first = queue.get(timeout=1)
    assert first is not None and first.data == b"low-0"
    queue.put("urgent", priority=5)
    first.nack()
    order = []
    while (task := queue.get(timeout=0)) is not None:
        order.append(task.data.decode())
        task.ack()
    assert order == ["urgent", "low-0", "low-1", "low-2", "low-3", "low-4", "low-5"]
