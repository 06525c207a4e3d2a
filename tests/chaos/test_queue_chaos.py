"""Queue scenarios under server, network and worker faults, on both backends: Jepsen's
total-queue check plus per-key order, no double ack, nothing left in flight."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coordination.cluster import LocalCluster
from coordination.testing import nemesis
from coordination.testing.scenario import run_queue_scenario

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

FAULTS = ["worker-kill", "leader-kill", "follower-pause", "leader-pause", "quorum-loss",
          "full-restart", "client-partition", "lost-replies"]


@pytest.fixture(scope="module")
def chaos_cluster(backend: str) -> Iterator[LocalCluster]:
    cluster = LocalCluster(backend, nodes=3).start()
    yield cluster
    cluster.stop()


@pytest.mark.parametrize("fault", FAULTS)
def test_queue_survives(chaos_cluster: LocalCluster, fault: str, tmp_path: Path) -> None:
    chaos_cluster.wait_healthy()
    try:
        verdict = run_queue_scenario(chaos_cluster, fault, [nemesis.ALL_FAULTS[fault]], tmp_path)
    finally:
        for i in range(chaos_cluster.size):
            if chaos_cluster.is_paused(i):
                chaos_cluster.resume(i)
            if not chaos_cluster.is_running(i):
                chaos_cluster.restart(i)
    assert verdict.ok, verdict.report()
