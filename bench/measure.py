"""Measurement primitives: run callables in threads for a while, repeat, summarise.

Every figure is the median of ``reps`` repetitions with their min and max; latencies are
percentiles over all samples of all repetitions.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Figure:
    median: float
    low: float
    high: float
    samples: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Figure:
        return cls(statistics.median(values), min(values), max(values), len(values))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by the nearest-rank method; nan if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run_threads(loops: Sequence[Callable[[Callable[[], bool]], None]], duration: float) -> float:
    """Start one thread per loop, let them run ``duration`` seconds, then tell them to
    stop (the callable they get returns True while they should go on) and join them.
    The measured time: from the start signal to the stop signal."""
    start, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def body(loop: Callable[[Callable[[], bool]], None]) -> None:
        start.wait()
        try:
            loop(lambda: not stop.is_set())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=body, args=(loop,), daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    start.set()
    stop.wait(duration)
    stop.set()
    elapsed = time.monotonic() - began
    for thread in threads:
        thread.join(timeout=180)
    if errors:
        raise errors[0]
    return elapsed
