"""Queue scenarios under server, network and worker faults and etcd compaction, on both
backends: Jepsen's total-queue check plus per-key order, no double ack, nothing left in
flight, and exclusive delivery between the threads and processes of the consumers."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordination.lab import nemesis
from coordination.lab.cluster import LocalCluster
from coordination.lab.scenario import run_queue_scenario

from . import skip_unless_possible

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

FAULTS = ["worker-kill", "leader-kill", "follower-pause", "leader-pause", "quorum-loss",
          "full-restart", "client-partition", "lost-replies", "leader-partition", "compaction"]


@pytest.mark.parametrize("fault", FAULTS)
def test_queue_survives(fault_cluster: LocalCluster, fault: str, tmp_path: Path) -> None:
    skip_unless_possible(fault, fault_cluster.backend)
    verdict = run_queue_scenario(fault_cluster, fault, [nemesis.ALL_FAULTS[fault]], tmp_path)
    assert verdict.ok, verdict.report()
