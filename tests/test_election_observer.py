"""Election observers under churn and etcd compaction: after many short leaderships,
and after the history they happened in was compacted away, an observer reports the
next leader within a second and goes on reporting (issue 14: observers went silent
after ``etcdctl compact``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import coordination
from coordination.lab.cluster import LocalCluster
from coordination.lab.nemesis import compact_history
from coordination.recipes.election import Observer

pytestmark = pytest.mark.integration

#: How soon an observer must report a change once the campaign or resign returned.
PROMPT = 1.0


class Reports:
    """What an observer reported, and when (monotonic)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.values: list[tuple[float, bytes | None]] = []

    def __call__(self, value: bytes | None) -> None:
        with self._changed:
            self.values.append((time.monotonic(), value))
            self._changed.notify_all()

    def mark(self) -> int:
        """A point in the reports: ``wait_for(..., after=mark)`` counts only later ones."""
        with self._changed:
            return len(self.values)

    def wait_for(self, value: bytes | None, after: int, timeout: float) -> None:
        """Wait until a report made after ``after`` is ``value`` and still the latest
        one; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (len(self.values) > after and self.values[-1][1] == value):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"observer did not report {value!r} within {timeout}s "
                                         f"(reports after the mark: {self.values[after:]})")
                self._changed.wait(left)


def _churn(candidates: coordination.Coordinator, name: str, leaders: int = 20) -> None:
    """``leaders`` leaderships in a row, each its own Election object: campaign, resign."""
    for i in range(leaders):
        election = candidates.election(name)
        assert election.campaign(f"L{i}", timeout=10)
        election.resign()


def _observe(coord: coordination.Coordinator, name: str) -> tuple[Observer, Reports]:
    reports = Reports()
    observer = coord.election(name).observe(reports)
    reports.wait_for(None, 0, 10)  # started: no leader yet
    return observer, reports


def test_observer_reports_the_leader_after_a_churn(
        connect: Callable[..., coordination.Coordinator]) -> None:
    observer, reports = _observe(connect(), "churn")
    candidates = connect()
    try:
        _churn(candidates, "churn")
        final = candidates.election("churn")
        mark = reports.mark()
        assert final.campaign("FINAL", timeout=10)
        reports.wait_for(b"FINAL", mark, PROMPT)
        final.resign()
    finally:
        observer.stop()


def test_observer_survives_a_compaction_of_the_history(
        backend: str, cluster: LocalCluster,
        connect: Callable[..., coordination.Coordinator]) -> None:
    if backend != "etcd":
        pytest.skip("ZooKeeper keeps no history to compact")
    observer, reports = _observe(connect(), "compacted")
    candidates = connect()
    try:
        mark = reports.mark()
        _churn(candidates, "compacted")
        reports.wait_for(None, mark, 10)  # a resignation, most likely the last
        # Writes elsewhere move the revision past the observer's last change, so the
        # compaction removes the revision right after it ...
        noise = candidates.counter("noise")
        for _ in range(3):
            noise.add(1)
        compact_history(cluster)
        # ... and its watch window running out makes it watch again after the compaction.
        time.sleep(observer._wait + 0.5)
        final = candidates.election("compacted")
        mark = reports.mark()
        assert final.campaign("FINAL", timeout=10)
        reports.wait_for(b"FINAL", mark, PROMPT)
        mark = reports.mark()
        final.resign()
        reports.wait_for(None, mark, PROMPT)
    finally:
        observer.stop()
