"""No watch is left on the servers by a wait whose blocker was already gone: a creation
watch on a contender's name would stay for the whole session (that name is never made
again), and a long-lived service churning locks would pile them up."""

from __future__ import annotations

import pytest

import coordination
from coordination.backends.contenders import MUTEX, Blocker, Head
from coordination.lab.cluster import LocalCluster

from .helpers import wait_for

pytestmark = pytest.mark.integration

ROUNDS = 40


def test_waits_on_gone_entries_leave_no_watch(cluster: LocalCluster,
                                              coord: coordination.Coordinator) -> None:
    backend = coord.driver
    path = backend.recipe_path("locks", "churn")
    me, _blockers = backend.enqueue(path, b"", None, MUTEX)
    before = cluster.watches()
    for i in range(ROUNDS):
        gone = f"{path}/gone-{i}__lock__0000000{i:03d}"
        assert backend.wait_deleted([Blocker(gone, created=1)], me, timeout=5)  # made, gone
        assert backend.next_head(path, Head(gone, b"", i), timeout=0.01) is not None
    # Waits that return leave nothing behind; allow a few for the client's own watches.
    wait_for(lambda: cluster.watches() - before < 5, 5,
             message=f"watches left after {ROUNDS} waits on gone entries: "
                     f"{cluster.watches() - before:.0f}")
