"""Scale: a queue with 100,000 waiting tasks works, and ``get`` costs about what it
costs on an almost empty queue (1,000,000 is in the benchmark)."""

from __future__ import annotations

import statistics
import time

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEPTH = 100_000


def _get_ack_latency(queue, rounds: int = 30) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        task = queue.get(timeout=5)
        samples.append(time.perf_counter() - started)
        assert task is not None
        task.ack()
    return statistics.median(samples)


def test_get_does_not_slow_down_with_100k_waiting(coord) -> None:
    shallow = coord.queue("shallow")
    shallow.put_many([b"x"] * 40)
    base = _get_ack_latency(shallow)
    deep = coord.queue("deep")
    batch = [b"order"] * 4000
    for _ in range(DEPTH // len(batch)):
        deep.put_many(batch)
    assert deep.stats()["pending"] == DEPTH
    first = deep.get(timeout=5)
    assert first is not None and first.data == b"order"
    first.ack()
    deep_latency = _get_ack_latency(deep)
    # Generous bound for a noisy 2-core machine; O(n) behaviour would be 100x.
    assert deep_latency <= max(3 * base, base + 0.05), (base, deep_latency)
    assert len(deep) == DEPTH - 31
