"""The queue through server failures, on a 3-node cluster of its own: a leader kill and
a full cluster restart (data on disk) lose no task whose put returned."""

from __future__ import annotations

import uuid

import pytest

import coordination
from coordination.lab.cluster import LocalCluster

from .conftest import TTL

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def test_leader_kill_and_full_restart_lose_nothing(fault_cluster: LocalCluster) -> None:
    url = f"{fault_cluster.url}/q{uuid.uuid4().hex[:10]}?session_ttl={TTL}&request_timeout=30"
    put: set[str] = set()
    done: set[str] = set()
    with coordination.connect(url) as producer, coordination.connect(url) as worker:
        q, w = producer.queue("orders"), worker.queue("orders")
        put.update(q.put_many([f"a{i}".encode() for i in range(30)]))
        put.update(q.put(f"k{i}", key=f"order-{i % 3}") for i in range(9))
        for _ in range(10):
            task = w.get(timeout=10)
            task.ack()
            done.add(task.id)
        fault_cluster.kill(fault_cluster.wait_for_leader())  # the leader dies
        put.update(q.put(f"b{i}") for i in range(10))
        in_hand = w.get(timeout=30)  # claimed across the fault, settled after the restart
        fault_cluster.stop_all_and_restart()  # every node down, then up from disk
        put.update(q.put(f"c{i}") for i in range(5))
        try:
            in_hand.ack()
            done.add(in_hand.id)
        except coordination.errors.ClaimLost:
            pass  # its session did not survive the restart: it is delivered again
        while (task := w.get(timeout=TTL * 3)) is not None:
            try:
                task.ack()
                done.add(task.id)
            except coordination.errors.ClaimLost:
                pass  # a 2 s session lapsed on a loaded machine: delivered again
        assert done == put
        assert q.stats() == {"pending": 0, "delayed": 0, "blocked": 0, "in_flight": 0, "dead": 0}
