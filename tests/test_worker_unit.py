"""The worker loop's own logic (acks, retries, dead letters, stops) over the in-memory
backend; ``test_worker.py`` runs it on real clusters and through the CLI."""

from __future__ import annotations

import threading

import pytest

from coordination import errors
from coordination.recipes.queue import Queue, Retry, Task, Worker

from .fake_backend import FakeBackend
from .helpers import wait_for


@pytest.fixture
def queue() -> Queue:
    return Queue(FakeBackend(), "orders", max_attempts=3)


def test_handled_tasks_are_acked_on_concurrent_threads(queue: Queue) -> None:
    queue.put_many([f"order {i}" for i in range(8)])
    meet = threading.Barrier(4, timeout=10)  # passes only if 4 handlers run at once
    seen: list[bytes] = []

    def handle(task: Task) -> None:
        meet.wait()
        seen.append(task.data)

    with queue.worker(handle, concurrency=4) as worker:
        wait_for(lambda: worker.stats.processed == 8, 10)
    assert sorted(seen) == sorted(f"order {i}".encode() for i in range(8))
    assert queue.stats() == {"pending": 0, "delayed": 0, "blocked": 0, "in_flight": 0, "dead": 0}


def test_a_failing_task_backs_off_and_is_dead_after_its_attempts(queue: Queue) -> None:
    task_id = queue.put(b"card declined")
    calls = []

    def handle(task: Task) -> None:
        calls.append(task.attempts)
        raise ValueError("payment service down")

    with queue.worker(handle, concurrency=2, retry=Retry(base=0.05, jitter=0)) as worker:
        wait_for(lambda: worker.stats.dead == 1, 10)
    assert calls == [0, 1, 2]
    assert worker.stats.retried == 2 and worker.stats.processed == 0
    [dead] = queue.dead_letters()
    assert dead.id == task_id and dead.error == "ValueError: payment service down"


def test_an_exception_that_does_not_retry_goes_to_the_dead_letters_at_once(queue: Queue) -> None:
    queue.put(b"malformed order")

    def handle(task: Task) -> None:
        raise KeyError("sku")

    retry = Retry(base=0.01, on=(ConnectionError,))
    with queue.worker(handle, retry=retry) as worker:
        wait_for(lambda: worker.stats.dead == 1, 10)
    assert worker.stats.retried == 0
    assert queue.dead_letters()[0].attempts == 1


def test_the_policy_may_allow_fewer_attempts_than_the_queue(queue: Queue) -> None:
    queue.put(b"x")

    def handle(task: Task) -> None:
        raise ConnectionError("down")

    with queue.worker(handle, retry=Retry(base=0.01, max_attempts=2)) as worker:
        wait_for(lambda: worker.stats.dead == 1, 10)
    assert worker.stats.retried == 1


def test_stop_lets_running_handlers_finish_within_the_grace(queue: Queue) -> None:
    queue.put(b"slow order")
    started, release = threading.Event(), threading.Event()

    def handle(task: Task) -> None:
        started.set()
        release.wait(10)

    worker = queue.worker(handle, concurrency=1, grace=10).start()
    assert started.wait(10)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    wait_for(lambda: worker.stopping, 5)
    queue.put(b"late order")  # not claimed any more: the worker is stopping
    release.set()
    stopper.join(10)
    assert worker.wait(0) and worker.stats.processed == 1 and worker.stats.abandoned == 0
    assert queue.stats()["pending"] == 1


def test_a_handler_past_the_grace_has_its_task_given_back(queue: Queue) -> None:
    task_id = queue.put(b"stuck order")
    started, release = threading.Event(), threading.Event()

    def handle(task: Task) -> None:
        started.set()
        release.wait(10)

    worker = queue.worker(handle).start()
    assert started.wait(10)
    stats = worker.stop(grace=0.1)
    assert stats.abandoned == 1 and stats.processed == 0
    again = queue.get(timeout=5)
    assert again is not None and again.id == task_id and again.attempts == 1
    assert "stopped before the handler finished" in (again.error or "")
    release.set()  # the abandoned handler returns; its ack is refused, not counted
    wait_for(lambda: worker.stats.in_flight == 0, 10)
    assert worker.stats.processed == 0 and worker.stats.lost == 0
    again.ack()


@pytest.mark.parametrize("kwargs", [
    {"concurrency": 0}, {"concurrency": True}, {"grace": -1}, {"handler": "not callable"},
])
def test_bad_worker_arguments_are_typed_errors(queue: Queue, kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"handler": print, **kwargs}
    with pytest.raises(errors.InvalidArgument):
        Worker(queue, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [
    {"base": -1}, {"max": float("inf")}, {"jitter": 2}, {"max_attempts": 0}, {"on": ValueError},
])
def test_bad_retry_policies_are_typed_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidArgument):
        Retry(**kwargs)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_its_max_with_bounded_jitter() -> None:
    retry = Retry(base=1.0, max=10.0, jitter=0.5)
    for attempts, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (100, 10.0)]:
        delays = [retry.delay(attempts) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert Retry(base=1.0, jitter=0).delay(3) == 8.0


def test_a_batching_worker_handles_each_task_once_and_settles_failures_apart(
        queue: Queue) -> None:
    ids = queue.put_many([f"order {i}" for i in range(50)])
    handled: list[str] = []
    guard = threading.Lock()

    def handle(task: Task) -> None:
        if task.data.endswith(b"7") and task.attempts == 0:
            raise ConnectionError("blip")
        with guard:
            handled.append(task.id)

    with queue.worker(handle, concurrency=3, batch=6, retry=Retry(base=0.01)) as worker:
        wait_for(lambda: worker.stats.processed == 50, 10)
    assert sorted(handled) == sorted(ids) and worker.stats.retried == 5
    assert worker.stats.in_flight == 0 and len(queue) == 0


def test_a_hard_stop_gives_back_the_whole_batch_of_a_stuck_thread(queue: Queue) -> None:
    ids = set(queue.put_many([f"order {i}" for i in range(4)]))
    started, release = threading.Event(), threading.Event()
    calls = []

    def handle(task: Task) -> None:
        calls.append(task.id)
        started.set()
        release.wait(10)

    worker = queue.worker(handle, concurrency=1, batch=4).start()
    assert started.wait(10)
    stats = worker.stop(grace=0)
    assert stats.abandoned == 4  # the running one and the three waiting their turn
    back = queue.get_many(10, timeout=5)
    assert {task.id for task in back} == ids and {task.attempts for task in back} == {1}
    release.set()
    wait_for(lambda: worker.stats.in_flight == 0, 10)
    assert worker.stats.processed == 0 and worker.stats.lost == 0
    assert len(calls) == 1  # the given-back rest of the batch was not run
    assert queue.ack_many(back) == []


def test_on_settled_tells_each_outcome(queue: Queue) -> None:
    queue.put_many(["ok", "fails", "ok too"])
    outcomes: list[tuple[bytes, str]] = []

    def handle(task: Task) -> None:
        if task.data == b"fails":
            raise ValueError("no")

    def settled(task: Task, outcome: str) -> None:
        outcomes.append((task.data, outcome))
        raise RuntimeError("a callback's bug")  # logged, not the worker's end

    with queue.worker(handle, concurrency=1, batch=3, on_settled=settled,
                      retry=Retry(base=0.01, max_attempts=2)) as worker:
        wait_for(lambda: worker.stats.dead == 1, 10)
    assert sorted(outcomes) == [(b"fails", "dead"), (b"fails", "retried"), (b"ok", "acked"),
                                (b"ok too", "acked")]


def test_run_returns_when_the_coordinator_is_closed_under_it() -> None:
    fake = FakeBackend()
    worker = Queue(fake, "orders").worker(lambda task: None, concurrency=2)
    runner = threading.Thread(target=worker.run)
    runner.start()
    fake.close()  # what Coordinator.close() does
    runner.join(10)
    assert not runner.is_alive() and worker.wait(0)
