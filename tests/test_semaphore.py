"""Semaphore contract: never more than ``permits`` holders across processes, any release
lets the next waiter in, a killed holder's permit returns within one TTL, and clients
must agree on ``permits``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import coordination
from coordination import errors

from .conftest import TTL
from .helpers import entries, namespace_is_empty, wait_for

pytestmark = pytest.mark.integration
WORKER = [sys.executable, "-m", "tests.workers.semaphore_worker"]
ROOT = Path(__file__).resolve().parent.parent


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda e: (e[0], e[1]))  # at equal times, an end comes first
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def test_never_more_than_permits_holders_across_processes(
    url: str, tmp_path: Path, python_env: dict[str, str]
) -> None:
    log = tmp_path / "holds.log"
    procs = [
        subprocess.Popen([*WORKER, url, "gateway", "2", "15", str(log)], cwd=ROOT, env=python_env)
        for _ in range(5)
    ]
    try:
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    holds = [line.split() for line in log.read_text().splitlines()]
    assert len(holds) == 75 and len({pid for pid, *_ in holds}) == 5
    overlap = _max_overlap([(float(start), float(end)) for _p, _t, start, end in holds])
    assert overlap == 2, overlap  # two at once, never three
    tokens = [int(token) for _p, token, _s, _e in holds]
    assert len(set(tokens)) == len(tokens)


def test_any_holder_releasing_lets_the_next_waiter_in(connect) -> None:
    holders = [connect() for _ in range(3)]
    permits = [client.semaphore("pool", permits=3).acquire(timeout=5) for client in holders]
    path = holders[0].semaphore("pool", permits=3).path
    got: list[int] = []
    waiter_clients = [connect(), connect()]

    def wait_for_permit(index: int) -> None:
        permit = waiter_clients[index].semaphore("pool", permits=3).acquire(timeout=30)
        got.append(index)
        permit.release()

    first = threading.Thread(target=wait_for_permit, args=(0,))
    first.start()
    wait_for(lambda: len(entries(holders[0], path)) == 4, 10, message="first waiter queued")
    # The newest holder releases: the waiter right behind it gets in at once (well
    # within a TTL, after which an etcd waiter would re-check anyway).
    released = time.monotonic()
    permits[2].release()
    first.join(10)
    assert got == [0] and time.monotonic() - released < TTL / 2
    permits[2] = holders[2].semaphore("pool", permits=3).acquire(timeout=5)
    second = threading.Thread(target=wait_for_permit, args=(1,))
    second.start()
    wait_for(lambda: len(entries(holders[0], path)) == 4, 10, message="second waiter queued")
    released = time.monotonic()
    permits[1].release()  # a holder in the middle
    second.join(10)
    assert got == [0, 1] and time.monotonic() - released < TTL / 2
    for permit in (permits[0], permits[2]):
        permit.release()


def test_holders_behind_holders_get_in_from_the_enqueue_reply(connect, backend) -> None:
    """ZooKeeper lists the queue right behind the create: a holder that is not first
    but within the permits holds without a second read."""
    if backend != "zookeeper":
        pytest.skip("etcd's enqueue reads only the first entry")
    clients = [connect() for _ in range(3)]
    reads = []
    for client in clients:
        original = client.driver.blockers

        def counting(*args, original=original):
            reads.append(args)
            return original(*args)

        client.driver.blockers = counting  # type: ignore[method-assign]
    permits = [client.semaphore("reply", permits=3).acquire(timeout=5) for client in clients]
    assert reads == []
    for permit in permits:
        permit.release()


def test_waiters_are_served_in_arrival_order(connect) -> None:
    holder = connect()
    sem = holder.semaphore("fifo", permits=2)
    held = [sem.acquire(timeout=5), sem.acquire(timeout=5)]  # one client, two permits
    order: list[int] = []
    done = [threading.Event() for _ in range(3)]
    threads = []
    for index in range(3):
        client = connect()

        def run(index: int = index, client: coordination.Coordinator = client) -> None:
            permit = client.semaphore("fifo", permits=2).acquire(timeout=30)
            order.append(index)
            done[index].wait(30)
            permit.release()

        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)
        wait_for(lambda n=index: len(entries(holder, sem.path)) == n + 3, 10, message="queued")
    held[1].release()
    wait_for(lambda: order == [0], 10, message="first waiter in")
    held[0].release()
    wait_for(lambda: order == [0, 1], 10, message="second waiter in")
    done[0].set()
    wait_for(lambda: order == [0, 1, 2], 10, message="third waiter in")
    for event in done:
        event.set()
    for thread in threads:
        thread.join(30)
    assert order == [0, 1, 2]


def test_a_killed_holder_returns_its_permit_within_one_ttl(
    url: str, connect, python_env: dict[str, str]
) -> None:
    child = subprocess.Popen([*WORKER, url, "gateway", "2", "0", "-"], cwd=ROOT, env=python_env,
                             stdout=subprocess.PIPE, text=True)
    try:
        token = int(child.stdout.readline())  # type: ignore[union-attr]
        ours = connect().semaphore("gateway", permits=2)
        kept = ours.acquire(timeout=5)  # the second permit
        with pytest.raises(errors.LockTimeout):
            ours.acquire(blocking=False)
        os.kill(child.pid, signal.SIGKILL)
        killed = time.monotonic()
        permit = ours.acquire(timeout=TTL * 3)
        taken_after = time.monotonic() - killed
        assert permit.held and permit.token > token  # type: ignore[operator]
        assert taken_after <= TTL + 0.8, taken_after
        permit.release()
        kept.release()
    finally:
        child.kill()
        child.wait()


def test_clients_must_agree_on_permits(connect) -> None:
    a, b = connect(), connect()
    a.semaphore("gateway", permits=4)
    with pytest.raises(errors.PermitsMismatch):
        b.semaphore("gateway", permits=3)
    with pytest.raises(errors.PermitsMismatch):
        a.semaphore("gateway", permits=5)
    assert b.semaphore("gateway", permits=4).acquire(timeout=5).held
    # Two clients creating one name at once with different values: exactly one wins.
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def create(client: coordination.Coordinator, permits: int) -> None:
        start.wait()
        try:
            client.semaphore("race", permits=permits)
            outcomes.append("ok")
        except errors.PermitsMismatch:
            outcomes.append("mismatch")

    threads = [threading.Thread(target=create, args=(c, n)) for c, n in ((a, 2), (b, 3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["mismatch", "ok"]


def test_timeouts_and_with_form(connect) -> None:
    a, b = connect(), connect()
    with a.semaphore("one", permits=1).acquire(timeout=5) as permit:
        assert permit.held and isinstance(permit.token, int)
        started = time.monotonic()
        with pytest.raises(errors.LockTimeout):
            b.semaphore("one", permits=1).acquire(timeout=0.3)
        assert 0.3 <= time.monotonic() - started <= 0.3 * 1.1 + 0.1
        with pytest.raises(errors.LockTimeout):
            b.semaphore("one", permits=1).acquire(blocking=False)
        assert len(entries(a, permit.path)) == 1  # the timed-out waiters left nothing
    assert not permit.held
    assert entries(a, permit.path) == []
    with pytest.raises(errors.NotHeld):
        permit.release()


def test_bad_input_is_typed_and_changes_nothing(coord: coordination.Coordinator) -> None:
    for permits in (0, -1, True, 1.5, "4", None):
        with pytest.raises(errors.InvalidArgument):
            coord.semaphore("fine", permits=permits)  # type: ignore[arg-type]
    for name in ["", "/a", "a//b", "..", "x" * 257, None, 3]:
        with pytest.raises(errors.InvalidName):
            coord.semaphore(name, permits=2)  # type: ignore[arg-type]
    assert namespace_is_empty(coord)
    sem = coord.semaphore("fine", permits=2)
    for timeout in (-1, float("nan"), "5", True):
        with pytest.raises(errors.InvalidArgument):
            sem.acquire(timeout=timeout)  # type: ignore[arg-type]
    assert entries(coord, sem.path) == []
