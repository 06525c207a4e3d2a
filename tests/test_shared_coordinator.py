"""One coordinator shared by many threads, the way services use it: every recipe keeps
its promises between the threads of one session (issue 14: a queue task was handed to
several threads of one coordinator at once)."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

import pytest

import coordination
from coordination import errors

pytestmark = pytest.mark.integration


def run_threads(count: int, body: Callable[[int], None], timeout: float = 120.0) -> None:
    """Run ``body(i)`` on ``count`` threads started together; re-raise the first error."""
    failures: list[BaseException] = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            start.wait()
            body(i)
        except BaseException as exc:  # reported below, with the thread's traceback
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if failures:
        raise failures[0]


class Occupancy:
    """How many threads are inside a critical section at once, and the most ever seen."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.inside = 0
        self.most = 0

    def __enter__(self) -> None:
        with self._guard:
            self.inside += 1
            self.most = max(self.most, self.inside)

    def __exit__(self, *exc: object) -> None:
        with self._guard:
            self.inside -= 1


def test_queue_threads_never_share_a_task(coord: coordination.Coordinator) -> None:
    """The issue's trial: 16 threads, each put / get / ack 40 times, one coordinator."""
    threads, rounds = 16, 40
    shared = coord.queue("orders")
    delivered: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    holding: dict[str, int] = {}
    overlaps: list[str] = []
    guard = threading.Lock()

    def worker(i: int) -> None:
        q = shared if i % 2 else coord.queue("orders")  # shared object and one each
        for _ in range(rounds):
            q.put(f"from {i}")
            task = q.get(timeout=30)
            assert task is not None, "no task within 30 s"
            with guard:
                if task.id in holding:
                    overlaps.append(f"{task.id} held by {holding[task.id]} and {i}")
                holding[task.id] = i
                delivered[task.id].append((i, task.token))
            task.ack()  # ClaimLost here fails the test
            with guard:
                if holding.get(task.id) == i:
                    del holding[task.id]

    run_threads(threads, worker)
    assert not overlaps
    twice = {tid: d for tid, d in delivered.items() if len(d) > 1}
    assert not twice, f"{len(twice)} tasks delivered more than once: {list(twice.items())[:3]}"
    assert len(delivered) == threads * rounds
    assert shared.stats() == {"pending": 0, "delayed": 0, "blocked": 0, "in_flight": 0, "dead": 0}


def test_lock_threads_exclude_each_other(coord: coordination.Coordinator) -> None:
    room, tokens = Occupancy(), []

    def worker(_i: int) -> None:
        lock = coord.lock("cart")
        for _ in range(15):
            with lock, room:
                tokens.append(lock.token)
                time.sleep(0.001)  # widen the window an overlap would show in

    run_threads(8, worker)
    assert room.most == 1
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens) == 120


def test_reentrant_lock_shared_by_threads(coord: coordination.Coordinator) -> None:
    lock, room = coord.lock("cart", reentrant=True), Occupancy()

    def worker(_i: int) -> None:
        for _ in range(10):
            with lock, lock, room:  # the holding thread enters twice
                time.sleep(0.001)

    run_threads(6, worker)
    assert room.most == 1 and not lock.held


def test_rwlock_threads(coord: coordination.Coordinator) -> None:
    writers, readers = Occupancy(), Occupancy()
    mixed: list[str] = []

    def worker(i: int) -> None:
        rw = coord.rwlock("prices")
        for _ in range(10):
            if i % 3 == 0:
                with rw.write(timeout=60), writers:
                    if readers.inside:
                        mixed.append("reader inside while writing")
                    time.sleep(0.001)
            else:
                with rw.read(timeout=60), readers:
                    if writers.inside:
                        mixed.append("writer inside while reading")
                    time.sleep(0.002)

    run_threads(9, worker)
    assert writers.most == 1 and not mixed
    assert readers.most >= 2  # readers did share: the test can tell the two apart


def test_semaphore_threads(coord: coordination.Coordinator) -> None:
    room = Occupancy()

    def worker(_i: int) -> None:
        sem = coord.semaphore("gateway", permits=3)
        for _ in range(10):
            with sem.acquire(timeout=60), room:
                time.sleep(0.003)

    run_threads(9, worker)
    assert 2 <= room.most <= 3


def test_counter_threads_exact(coord: coordination.Coordinator) -> None:
    stock = coord.counter("stock")
    stock.set(150)
    sold: list[int] = []

    def worker(_i: int) -> None:
        while True:
            try:
                sold.append(stock.add(-1, min=0))
            except errors.BoundExceeded:
                return

    run_threads(8, worker)
    assert sorted(sold) == list(range(150)) and stock.value == 0


def test_election_threads_one_leader(coord: coordination.Coordinator) -> None:
    room, tokens = Occupancy(), []

    def worker(i: int) -> None:
        election = coord.election("scheduler")
        for _ in range(5):
            assert election.campaign(f"w{i}", timeout=60)
            with room:
                assert election.is_leader
                tokens.append(election.token)
                time.sleep(0.002)
            election.resign()

    run_threads(6, worker)
    assert room.most == 1
    assert tokens == sorted(tokens) and len(set(tokens)) == 30
