"""The async API under the faults that matter most to it, on both backends, judged by
the same checkers as the thread workloads: a leader killed and a holder frozen past its
session under buyers on ``coordination.aio``; a worker killed under async consumers
(hand-written ``get`` loops and the async worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordination.lab import nemesis
from coordination.lab.cluster import LocalCluster
from coordination.lab.scenario import run_lock_scenario, run_queue_scenario

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


@pytest.mark.parametrize("fault", ["leader-kill", "holder-pause"])
def test_async_lock_survives(fault_cluster: LocalCluster, fault: str, tmp_path: Path) -> None:
    verdict = run_lock_scenario(fault_cluster, f"{fault} (aio)", [nemesis.ALL_FAULTS[fault]],
                                tmp_path, aio=True)
    assert verdict.ok, verdict.report()


@pytest.mark.parametrize("fault", ["worker-kill"])
def test_async_queue_survives(fault_cluster: LocalCluster, fault: str, tmp_path: Path) -> None:
    verdict = run_queue_scenario(fault_cluster, f"{fault} (aio)", [nemesis.ALL_FAULTS[fault]],
                                 tmp_path, aio=True)
    assert verdict.ok, verdict.report()
