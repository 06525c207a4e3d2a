"""Lock scenarios under every fault, on both backends: fenced writes, non-overlapping
holds, typed errors, no orphans, exact inventory; and the negative control."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordination.lab import checkers, nemesis
from coordination.lab.cluster import LocalCluster
from coordination.lab.linearizability import Op, is_linearizable
from coordination.lab.scenario import run_lock_scenario

from . import skip_unless_possible

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

FAULTS = [*nemesis.SERVER_FAULTS, *nemesis.NETWORK_FAULTS, *nemesis.LOCK_CLIENT_FAULTS]


@pytest.mark.parametrize("fault", FAULTS)
def test_lock_survives(fault_cluster: LocalCluster, fault: str, tmp_path: Path) -> None:
    skip_unless_possible(fault, fault_cluster.backend)
    verdict = run_lock_scenario(fault_cluster, fault, [nemesis.ALL_FAULTS[fault]], tmp_path)
    assert verdict.ok, verdict.report()


def test_negative_control_unfenced_resource_shows_the_pause_violation(
    fault_cluster: LocalCluster, tmp_path: Path
) -> None:
    """The same GC-pause scenario against a resource that ignores tokens must break: the
    checkers can fail, and fencing is what saves the fenced runs."""
    verdict = run_lock_scenario(fault_cluster, "holder-pause (unfenced)", [nemesis.holder_pause],
                                tmp_path, fenced=False, hold=0.05)
    assert not verdict.ok, verdict.report()
    assert verdict.checks["fenced writes"], verdict.report()
    assert not verdict.checks["typed errors"] and not verdict.checks["no orphans"]


def test_lock_history_is_linearizable_through_a_leader_kill(
    fault_cluster: LocalCluster, tmp_path: Path
) -> None:
    verdict = run_lock_scenario(fault_cluster, "leader-kill", [nemesis.leader_kill], tmp_path)
    assert verdict.ok, verdict.report()
    events = checkers.load(sorted(tmp_path.glob("buyer*.jsonl")))
    ops, acquired = [], {}
    for event in events:
        if event["op"] == "acquire" and event.get("ok"):
            ops.append(Op(event["pid"], "acquire", event["t0"], event["t1"]))
            acquired[event["pid"]] = event["t1"]
        elif event["op"] == "release":
            # A hold lost with its session ended at some time after it began: the release
            # took effect between the acquire's completion and the release's.
            start = event["t0"] if event["result"] == "ok" else acquired[event["pid"]]
            ops.append(Op(event["pid"], "release", start, event["t1"]))
    ops.sort(key=lambda op: op.invoke)
    assert len(ops) >= 8
    # A window of the history cut at time T: what completed later is pending at T.
    cut = ops[min(len(ops), 60) - 1].invoke
    window = [op if op.complete is not None and op.complete <= cut
              else Op(op.process, op.kind, op.invoke, None) for op in ops if op.invoke <= cut]
    assert is_linearizable(window), "\n".join(map(str, window)) + "\n" + verdict.report()
    # The checker can fail on the same history: two more holders, nobody releasing.
    end = max(op.invoke for op in window)
    forged = [*window, Op(-1, "acquire", end + 1, end + 2), Op(-2, "acquire", end + 3, end + 4)]
    assert not is_linearizable(forged)
