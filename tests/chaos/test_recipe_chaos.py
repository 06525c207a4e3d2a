"""Counter, semaphore, election and inventory reservations under a leader kill and a
client pause past the session TTL (election also under etcd compaction, reservations
under a client SIGKILL while holding them and lost replies), on both backends: no update lost or doubled,
never more than ``permits`` holders, one leader at a time, observers that keep
reporting, nothing left of dead sessions, no unit oversold or lost and no hold ended
twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordination.lab import nemesis
from coordination.lab.cluster import LocalCluster
from coordination.lab.scenario import run_recipe_scenario

from . import skip_unless_possible

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

#: The client pause aims at a holder inside its critical section where there is one.
CASES = [("counter", "leader-kill"), ("counter", "worker-pause"),
         ("semaphore", "leader-kill"), ("semaphore", "holder-pause"),
         ("election", "leader-kill"), ("election", "holder-pause"), ("election", "compaction"),
         ("inventory", "leader-kill"), ("inventory", "worker-kill"),
         ("inventory", "worker-pause"), ("inventory", "lost-replies")]


@pytest.mark.parametrize(("recipe", "fault"), CASES)
def test_recipe_survives(fault_cluster: LocalCluster, recipe: str, fault: str,
                         tmp_path: Path) -> None:
    skip_unless_possible(fault, fault_cluster.backend)
    verdict = run_recipe_scenario(fault_cluster, recipe, fault, [nemesis.ALL_FAULTS[fault]],
                                  tmp_path)
    assert verdict.ok, verdict.report()
