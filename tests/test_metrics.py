"""Prometheus metrics (coordination/metrics.py), against every backend: a lock, a queue
and a counter used, then the real HTTP endpoint scraped and parsed with
prometheus_client's own parser: the names, units, labels and values are there."""

from __future__ import annotations

import socket
import threading
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import coordination
from coordination.metrics import Metrics, expose

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_a_scrape_shows_locks_queues_counters_and_depths(coord: coordination.Coordinator,
                                                         connect) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, depth_every=0.0)
    metrics.instrument(coord)
    queue = coord.queue("orders")
    metrics.watch_queue(queue)
    server = expose(port := _free_port(), registry=registry)
    try:
        rival = connect().lock("sku-1")
        assert rival.acquire()
        lock = coord.lock("sku-1")
        assert not lock.acquire(timeout=0.1)
        rival.release()
        with lock:
            pass
        queue.put_many([b"a", b"b", b"c"])
        task = queue.get(timeout=5)
        assert task is not None
        task.ack()
        counters = [coord.counter("stock") for _ in range(4)]
        threads = [threading.Thread(target=lambda c=c: [c.add(1) for _ in range(15)])
                   for c in counters]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seen = _scrape(port)
    finally:
        server.shutdown()

    def value(name: str, **labels: str) -> float:
        return seen.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("coordination_lock_wait_seconds_count", lock="sku-1", outcome="acquired") == 1
    assert value("coordination_lock_wait_seconds_count", lock="sku-1", outcome="timeout") == 1
    assert value("coordination_lock_hold_seconds_count", lock="sku-1", outcome="released") == 1
    assert value("coordination_lock_wait_seconds_bucket", lock="sku-1", outcome="timeout",
                 le="0.05") == 0  # it waited its 0.1 s
    assert value("coordination_queue_tasks_total", queue="orders", event="put") == 3
    assert value("coordination_queue_tasks_total", queue="orders", event="delivered") == 1
    assert value("coordination_queue_tasks_total", queue="orders", event="acked") == 1
    assert value("coordination_queue_claim_seconds_count", queue="orders", outcome="acked") == 1
    assert value("coordination_queue_depth", queue="orders", state="pending") == 2
    assert value("coordination_queue_depth", queue="orders", state="in_flight") == 0
    assert 0 <= value("coordination_queue_oldest_pending_age_seconds", queue="orders") < 60
    assert value("coordination_counter_conflicts_total", counter="stock") >= 1
    # Bounded labels only: no task id anywhere.
    assert not [key for key in seen if task.id in str(key)]
