"""Tests of coordination.lab.cluster.LocalCluster against real ZooKeeper and etcd processes.

The integration tests start their own 3-node clusters on 127.0.0.1 (needs
`bash backends/install.sh`), not the shared session clusters of conftest.py, because they
kill, pause and restart nodes; they write and read data with etcdctl and kazoo to check
that the nodes really serve. ``backend`` is parametrized by the pytest plugin (``--coordination-backend``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from coordination.lab import cluster as cluster_mod
from coordination.lab.cluster import BACKENDS, LocalCluster

from .helpers import contenders

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
FAILOVER_DEADLINE = 15.0  # seconds; observed: etcd ~1 s, ZooKeeper ~0.5 s


def eventually(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something other than None/False; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --- clients used to prove that the cluster really serves ---------------------------------


def etcdctl(endpoints: list[str], *args: str) -> str:
    exe = shutil.which("etcdctl")
    if exe is None:
        pytest.skip("etcdctl not installed (bash backends/install.sh)")
    proc = subprocess.run(
        [
            exe,
            f"--endpoints={','.join(endpoints)}",
            "--dial-timeout=3s",
            "--command-timeout=10s",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    assert proc.returncode == 0, f"etcdctl {args} failed: {proc.stderr}"
    return proc.stdout


def zk_call(endpoints: list[str], action: Callable[..., T]) -> T:
    kazoo_client = pytest.importorskip("kazoo.client")
    client = kazoo_client.KazooClient(hosts=",".join(endpoints), timeout=5.0)
    client.start(timeout=20)
    try:
        return action(client)
    finally:
        client.stop()
        client.close()


def write(cluster: LocalCluster, endpoints: list[str], key: str, value: str) -> None:
    if cluster.backend == "etcd":
        etcdctl(endpoints, "put", key, value)
    else:
        zk_call(endpoints, lambda zk: zk.create(f"/{key}", value.encode(), makepath=True))


def read(cluster: LocalCluster, endpoints: list[str], key: str) -> str | None:
    if cluster.backend == "etcd":
        lines = etcdctl(endpoints, "get", key, "--print-value-only").splitlines()
        return lines[0] if lines else None

    def get(zk: object) -> str | None:
        if not zk.exists(f"/{key}"):  # type: ignore[attr-defined]
            return None
        return zk.get(f"/{key}")[0].decode()  # type: ignore[attr-defined]

    return zk_call(endpoints, get)


def live_endpoints(cluster: LocalCluster) -> list[str]:
    return [
        endpoint
        for i, endpoint in enumerate(cluster.endpoints)
        if cluster.is_running(i) and not cluster.is_paused(i)
    ]


@pytest.fixture
def started() -> Iterator[Callable[..., LocalCluster]]:
    """Factory that starts clusters and always stops them at teardown."""
    clusters: list[LocalCluster] = []

    def start(backend: str, **kwargs: object) -> LocalCluster:
        cluster = LocalCluster(backend, **kwargs)  # type: ignore[arg-type]
        clusters.append(cluster)
        t0 = time.monotonic()
        cluster.start(timeout=60)
        print(f"{backend}: started 3 nodes in {time.monotonic() - t0:.2f}s")
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()


# --- no servers needed --------------------------------------------------------------------


def test_embedded_templates_match_backends() -> None:
    for name, text in cluster_mod.EMBEDDED_TEMPLATES.items():
        assert (REPO / "backends" / name).read_text(encoding="utf-8") == text, (
            f"coordination/lab/cluster/templates.py EMBEDDED_TEMPLATES[{name!r}] differs from "
            f"backends/{name}; copy the file's text into cluster.py"
        )


def test_urls_and_endpoints_from_base_port() -> None:
    zk = LocalCluster("zookeeper", nodes=3, base_port=21810)
    assert zk.endpoints == ["127.0.0.1:21810", "127.0.0.1:21811", "127.0.0.1:21812"]
    assert zk.url == "zookeeper://127.0.0.1:21810,127.0.0.1:21811,127.0.0.1:21812"
    etcd = LocalCluster("etcd", nodes=1, base_port=23790)
    assert etcd.url == "etcd://127.0.0.1:23790"
    assert zk.pid(0) is None and not zk.is_running(0) and zk.leader() is None
    zk.stop()  # stop before start is a no-op


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        LocalCluster("consul")
    with pytest.raises(ValueError):
        LocalCluster("etcd", nodes=0)
    with pytest.raises(IndexError):
        LocalCluster("etcd").kill(3)


def test_missing_binaries_raise_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    for backend in BACKENDS:
        with pytest.raises(RuntimeError, match="backends/install.sh"):
            LocalCluster(backend).start()


# --- real clusters ------------------------------------------------------------------------


@pytest.mark.integration
def test_failover_restart_pause_and_stop(
    backend: str, started: Callable[..., LocalCluster]
) -> None:
    cluster = started(backend)
    assert cluster.url.startswith(f"{backend}://127.0.0.1:")
    assert len(cluster.endpoints) == 3
    pids = [cluster.pid(i) for i in range(3)]
    assert all(pid is not None and not pid_gone(pid) for pid in pids)
    workdir = cluster.workdir
    assert workdir is not None
    for i, pid in enumerate(pids):
        assert (workdir / f"node{i}" / "server.pid").read_text().strip() == str(pid)
        assert cluster.log_path(i) == workdir / f"node{i}" / "server.log"

    old = cluster.leader()
    assert old is not None

    # kill the leader: the process is gone at once, a new leader follows within a deadline
    old_pid = cluster.pid(old)
    assert old_pid is not None
    t0 = time.monotonic()
    cluster.kill(old)
    assert not cluster.is_running(old) and cluster.pid(old) is None and pid_gone(old_pid)
    new = eventually(
        lambda: (lambda ldr: ldr if ldr not in (None, old) else None)(cluster.leader()),
        FAILOVER_DEADLINE,
        "a new leader",
    )
    print(f"{backend}: new leader {new} after {time.monotonic() - t0:.2f}s (old {old})")
    write(cluster, live_endpoints(cluster), "after-failover", "1")

    # restart the old leader from its data dir; it rejoins and serves
    t0 = time.monotonic()
    cluster.restart(old)
    print(f"{backend}: node {old} restarted and serving in {time.monotonic() - t0:.2f}s")
    assert cluster.is_running(old) and cluster.pid(old) not in (None, old_pid)
    cluster.wait_healthy(timeout=30)
    assert read(cluster, [cluster.endpoints[old]], "after-failover") == "1"

    # pause a follower: the other two keep a quorum; resume: all healthy again
    leader = eventually(cluster.leader, FAILOVER_DEADLINE, "a leader")
    follower = next(i for i in range(3) if i != leader)
    cluster.pause(follower)
    assert cluster.is_paused(follower) and cluster.is_running(follower)
    assert eventually(lambda: cluster.leader() is not None, FAILOVER_DEADLINE, "a leader")
    write(cluster, live_endpoints(cluster), "while-paused", "2")
    cluster.resume(follower)
    assert not cluster.is_paused(follower)
    cluster.wait_healthy(timeout=30)

    # stop: every process is gone, the temp workdir removed; stop again is a no-op
    pids = [cluster.pid(i) for i in range(3)]
    t0 = time.monotonic()
    cluster.stop()
    print(f"{backend}: stopped in {time.monotonic() - t0:.2f}s")
    assert all(pid is not None and pid_gone(pid) for pid in pids)
    assert all(cluster.pid(i) is None and not cluster.is_running(i) for i in range(3))
    assert not workdir.exists()
    cluster.stop()


@pytest.mark.integration
def test_full_restart_keeps_data(backend: str, tmp_path: Path) -> None:
    with LocalCluster(backend, workdir=tmp_path / "cluster") as cluster:
        write(cluster, cluster.endpoints, "durable", "kept")
        old_pids = [cluster.pid(i) for i in range(3)]
        t0 = time.monotonic()
        cluster.stop_all_and_restart()
        print(f"{backend}: full restart in {time.monotonic() - t0:.2f}s")
        assert all(pid is not None and pid_gone(pid) for pid in old_pids)
        assert cluster.leader() is not None
        assert read(cluster, cluster.endpoints, "durable") == "kept"
        pids = [cluster.pid(i) for i in range(3)]
    assert all(pid is not None and pid_gone(pid) for pid in pids)
    assert (tmp_path / "cluster" / "node0" / "server.log").is_file()  # own workdir is kept


@pytest.mark.integration
def test_quorum_loss_and_recovery(backend: str, started: Callable[..., LocalCluster]) -> None:
    cluster = started(backend)
    survivor = 0
    cluster.kill(1)
    cluster.kill(2)
    # one node of three has no quorum: no leader, wait_healthy times out with the logs
    eventually(lambda: cluster.leader() is None, FAILOVER_DEADLINE, "the leader to step down")
    with pytest.raises(TimeoutError, match="node 1 \\(down\\)"):
        cluster.wait_healthy(timeout=1)
    # restarting one more node restores a 2-of-3 quorum; restart() waits until it serves
    cluster.restart(1)
    assert eventually(cluster.leader, FAILOVER_DEADLINE, "a leader") in (survivor, 1)
    cluster.wait_healthy(timeout=30)
    # a node restarted while no quorum is possible only waits until its process answers
    cluster.kill(0)
    cluster.kill(1)
    cluster.restart(2, wait=True, timeout=30)
    assert cluster.is_running(2) and cluster.leader() is None
    cluster.restart(0)  # 2 of 3 again
    cluster.wait_healthy(timeout=30)


def test_request_counters_grow_with_client_requests(cluster: LocalCluster, coord) -> None:
    """The servers' own request counters (used by the benchmark) see client traffic."""
    before = cluster.requests()
    counter = coord.counter("hits")
    for _ in range(20):
        counter.add(1)
    assert cluster.requests() >= before + 20


def test_notification_counters_count_each_wake_up(cluster: LocalCluster, connect) -> None:
    """The servers' watch notification counters (used by the benchmark) see a waiter
    woken by a release."""
    holder, waiter = connect(), connect()
    lock = holder.lock("notified")
    assert lock.acquire(timeout=10)
    waiting = waiter.lock("notified")
    woken = threading.Thread(target=lambda: waiting.acquire(timeout=30))
    woken.start()
    eventually(lambda: len(contenders(holder, lock)) == 2, 10, "the waiter queued")
    before = cluster.notifications()
    lock.release()
    woken.join(30)
    assert waiting.held
    waiting.release()
    eventually(lambda: cluster.notifications() >= before + 1, 10, "a notification counted")


def test_an_isolated_leader_is_replaced_and_rejoins(fault_cluster: LocalCluster) -> None:
    """isolate() cuts every peer link of a node, not its clients; rejoin() undoes it."""
    from coordination.lab import peercut

    if peercut.unavailable():
        pytest.skip(peercut.unavailable())
    leader = fault_cluster.wait_for_leader()
    fault_cluster.isolate(leader)
    try:
        assert fault_cluster.is_isolated(leader)
        assert fault_cluster.wait_for_leader(exclude=leader) != leader
        eventually(lambda: not fault_cluster.status()[leader]["serving"], 30,
                   "the cut-off node to stop serving")
        assert fault_cluster.is_running(leader)  # still up, only cut off
    finally:
        fault_cluster.rejoin(leader)
    assert not fault_cluster.is_isolated(leader)
    fault_cluster.wait_healthy(60)
    assert all(row["serving"] for row in fault_cluster.status())
