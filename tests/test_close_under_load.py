"""``close()`` while other threads of the process use the coordinator (campaigns,
observers) and the cluster fails over: the process must not crash. On etcd it did
(SIGSEGV: a watch cancelled on a gRPC channel that ``close()`` had closed; found by the
election chaos scenario)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from coordination.lab.cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHILD = r"""
import sys, threading
import coordination
coord = coordination.connect(sys.argv[1])

def work():
    election = coord.election("e")
    election.observe(lambda value: None)
    try:
        while True:
            if election.campaign(b"x", timeout=0.2):
                election.resign()
    except coordination.errors.CoordinationError:
        return

threads = [threading.Thread(target=work, daemon=True) for _ in range(4)]
for thread in threads:
    thread.start()
print("running", flush=True)
sys.stdin.readline()
coord.close()
for thread in threads:
    thread.join(10)
print("closed", flush=True)
"""


def test_close_while_threads_work_through_failovers(fault_cluster: LocalCluster,
                                                    python_env: dict[str, str]) -> None:
    url = f"{fault_cluster.url}/close-race?session_ttl=2&request_timeout=10"
    for round_ in range(9):
        child = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", CHILD, url],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=python_env, text=True)
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "running"
        killed = None
        if round_ % 3 == 0:
            killed = fault_cluster.leader()
            fault_cluster.kill(killed)
            time.sleep(0.3)  # the close falls inside the failover, as in the chaos run
        child.stdin.write("close\n")
        child.stdin.flush()
        try:
            out, err = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
        assert child.returncode == 0, f"round {round_}: exit {child.returncode}\n{err[-3000:]}"
        assert "closed" in out
        if killed is not None:
            fault_cluster.restart(killed)
            fault_cluster.wait_healthy()


def test_close_leaves_no_thread_behind(connect) -> None:
    """Every thread a coordinator started (keepalive, pause watch, observers, sweeps) is
    gone when ``close()`` returns; the client library's (pyetcd's watch stream ends
    after its close, unjoined) within a moment."""
    import threading

    from .helpers import wait_for

    before = {thread.ident for thread in threading.enumerate()}
    coord = connect()
    with coord.lock("l"):
        pass
    queue = coord.queue("q")
    queue.put(b"x")
    task = queue.get(timeout=5)
    assert task is not None
    task.ack()
    election = coord.election("e")
    election.observe(lambda _leader: None)
    assert election.campaign(b"me", timeout=5)
    coord.close()

    def left() -> list[str]:
        return [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]

    ours = [name for name in left() if name.startswith("coordination-")]
    assert not ours, f"threads of ours left after close(): {ours}"
    wait_for(lambda: not left(), 2, message=f"threads left after close(): {left()}")
