"""Locks while servers fail, on a 3-node cluster of their own (the shared one is never
disturbed): the holder learns of a partition before anyone else can take the lock, and
a leader kill changes nothing for mutual exclusion."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

import coordination
from coordination.lab.cluster import LocalCluster

from .conftest import TTL
from .helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


@pytest.fixture
def own_url(fault_cluster: LocalCluster) -> str:
    return f"{fault_cluster.url}/f{uuid.uuid4().hex[:10]}?session_ttl={TTL}"


def test_holder_cut_off_knows_before_anyone_else_can_hold(fault_cluster, own_url) -> None:
    """All servers frozen (SIGSTOP): the holder's client cannot reach any. It must
    declare the lock lost by its local deadline, before the servers could give the lock
    to another client."""
    holder = coordination.connect(own_url)
    other = coordination.connect(own_url)
    try:
        lock = holder.lock("sku")
        assert lock.acquire()
        lost = threading.Event()
        lock.on_lost(lambda _l: lost.set())
        for i in range(fault_cluster.size):
            fault_cluster.pause(i)
        frozen = time.monotonic()
        wait_for(lambda: not lock.held, TTL * 1.5, message="holder declares the lock lost")
        noticed = time.monotonic() - frozen
        # The servers are frozen, so nobody can take the lock yet: the holder noticed
        # within one TTL, i.e. no later than the server could expire its session.
        assert noticed <= TTL, noticed
        assert lost.wait(TTL)
        for i in range(fault_cluster.size):
            fault_cluster.resume(i)
        theirs = other.lock("sku")
        assert theirs.acquire(timeout=TTL * 10)
        assert theirs.token > lock.token  # type: ignore[operator]
        assert not lock.held
        theirs.release()
        # The holder's coordinator recovers with a new session.
        assert lock.acquire(timeout=TTL * 10) and lock.held
        lock.release()
    finally:
        holder.close()
        other.close()


def test_leader_kill_keeps_mutual_exclusion(fault_cluster, own_url) -> None:
    coords = [coordination.connect(own_url, request_timeout=20) for _ in range(3)]
    holds: list[tuple[float, float, int]] = []
    guard = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def contend(coord: coordination.Coordinator) -> None:
        lock = coord.lock("sku")
        while not stop.is_set():
            try:
                if not lock.acquire(timeout=TTL * 5):
                    continue
                start = time.monotonic()
                time.sleep(0.005)
                end = time.monotonic()
                held_throughout = lock.held
                lock.release()
                if held_throughout:
                    with guard:
                        holds.append((start, end, lock.token))  # type: ignore[arg-type]
            except coordination.errors.LockLost:
                pass  # lost during the fault and told so: not counted as a hold
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=contend, args=(c,)) for c in coords]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(holds) >= 10, 20, message="holds before the fault")
        leader = fault_cluster.wait_for_leader()
        fault_cluster.kill(leader)
        count = len(holds)
        wait_for(lambda: len(holds) >= count + 10, 30, message="holds after the leader kill")
        fault_cluster.restart(leader)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        for coord in coords:
            coord.close()
    assert not errors, errors
    holds.sort()
    for (start, end, token), (next_start, _e, next_token) in zip(holds, holds[1:]):
        assert end <= next_start and next_token > token
