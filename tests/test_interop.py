"""Interop with the locks the ecosystem already runs: the real ``etcdctl lock`` (etcd's
Go ``concurrency.Mutex``), kazoo's ``Lock`` and Curator's ``InterProcessMutex`` (Java,
Debian's Curator 5.4.0, ``tests/interop/CuratorLock.java``) exclude ours on the same
name, in both directions, and a killed holder is taken over within one TTL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import coordination

from .conftest import TTL
from .helpers import wait_for

pytestmark = pytest.mark.integration

#: Run by the foreign lock holder: one holding interval on CLOCK_MONOTONIC (system-wide).
HOLD = "import time,sys; s=time.monotonic(); time.sleep(0.02); print('theirs', s, time.monotonic())"


def _no_overlap(lines: list[str]) -> None:
    intervals = sorted((float(s), float(e), who) for who, s, e in (l.split() for l in lines))
    assert {who for *_x, who in intervals} == {"ours", "theirs"}
    for (start, end, who), (next_start, _e, next_who) in zip(intervals, intervals[1:]):
        assert end <= next_start, f"{who} and {next_who} held the lock at once"


def _ours(coord: coordination.Coordinator, name: str, rounds: int, out: list[str]) -> None:
    lock = coord.lock(name, raw_prefix=True)
    for _ in range(rounds):
        with lock:
            start = time.monotonic()
            time.sleep(0.02)
            out.append(f"ours {start} {time.monotonic()}")


def _etcdctl(endpoints: str, name: str, *command: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        ["etcdctl", f"--endpoints={endpoints}", "lock", name, f"--ttl={int(TTL)}", "--", *command],
        **popen,
    )


def test_etcdctl_lock_and_ours_exclude_each_other(backend: str, cluster, coord) -> None:
    if backend != "etcd":
        pytest.skip("etcd interop")
    name = f"interop-{uuid.uuid4().hex[:8]}"
    endpoints = ",".join(cluster.endpoints)
    lines: list[str] = []

    def theirs() -> None:
        for _ in range(8):
            proc = _etcdctl(endpoints, name, sys.executable, "-c", HOLD,
                            stdout=subprocess.PIPE, text=True)
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            lines.extend(out.split("\n")[-2:-1] if out.strip() else [])

    threads = [threading.Thread(target=theirs) for _ in range(2)]
    threads += [threading.Thread(target=_ours, args=(coord, name, 8, lines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    lines = [l for l in lines if l.strip()]
    assert len(lines) == 24
    _no_overlap(lines)


def test_killed_etcdctl_holder_is_taken_over_within_one_ttl(backend: str, cluster, coord) -> None:
    if backend != "etcd":
        pytest.skip("etcd interop")
    name = f"interop-{uuid.uuid4().hex[:8]}"
    holder = _etcdctl(",".join(cluster.endpoints), name, "sh", "-c", "echo held; sleep 60",
                      stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # type: ignore[union-attr]
        lock = coord.lock(name, raw_prefix=True)
        assert lock.acquire(blocking=False) is False  # theirs excludes ours
        os.killpg(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert lock.acquire(timeout=TTL * 3)
        assert time.monotonic() - killed <= TTL + 0.8
        # And ours excludes theirs.
        waiter = _etcdctl(",".join(cluster.endpoints), name, "echo", "got",
                          stdout=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=1.0)
        lock.release()
        assert waiter.communicate(timeout=10)[0].strip() == "got"
    finally:
        holder.kill()
        holder.wait()


KAZOO_HOLDER = """
import sys, time
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1], timeout=float(sys.argv[3])); zk.start()
lock = zk.Lock(sys.argv[2])
rounds = int(sys.argv[4])
if rounds == 0:
    lock.acquire(); print("held", flush=True); time.sleep(600)
for _ in range(rounds):
    with lock:
        s = time.monotonic(); time.sleep(0.02); print("theirs", s, time.monotonic(), flush=True)
zk.stop()
"""


def test_kazoo_lock_and_ours_exclude_each_other(backend: str, cluster, coord, tmp_path: Path) -> None:
    if backend != "zookeeper":
        pytest.skip("ZooKeeper interop")
    path = f"/interop/{uuid.uuid4().hex[:8]}"
    hosts = ",".join(cluster.endpoints)
    procs = [
        subprocess.Popen([sys.executable, "-c", KAZOO_HOLDER, hosts, path, str(TTL), "8"],
                         stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    lines: list[str] = []
    _ours(coord, path, 8, lines)
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        lines.extend(l for l in out.splitlines() if l.startswith("theirs"))
    assert len(lines) == 24
    _no_overlap(lines)


def test_killed_kazoo_holder_is_taken_over_within_one_ttl(backend: str, cluster, coord) -> None:
    if backend != "zookeeper":
        pytest.skip("ZooKeeper interop")
    path = f"/interop/{uuid.uuid4().hex[:8]}"
    holder = subprocess.Popen(
        [sys.executable, "-c", KAZOO_HOLDER, ",".join(cluster.endpoints), path, str(TTL), "0"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"  # type: ignore[union-attr]
        lock = coord.lock(path, raw_prefix=True)
        assert lock.acquire(blocking=False) is False
        holder.kill()
        killed = time.monotonic()
        assert lock.acquire(timeout=TTL * 3)
        assert time.monotonic() - killed <= TTL + 0.8
        # Ours excludes theirs while held.
        from kazoo.client import KazooClient
        from kazoo.exceptions import LockTimeout

        zk = KazooClient(hosts=",".join(cluster.endpoints))
        zk.start()
        try:
            with pytest.raises(LockTimeout):
                zk.Lock(path).acquire(timeout=0.5)
            lock.release()
            kazoo_lock = zk.Lock(path)
            assert kazoo_lock.acquire(timeout=5)
            kazoo_lock.release()
        finally:
            zk.stop()
            zk.close()
    finally:
        holder.kill()
        holder.wait()


#: Debian's jars for tests/interop/CuratorLock.java (package libcurator-recipes-java).
CURATOR_CLASSPATH = os.pathsep.join(
    f"/usr/share/java/{jar}.jar" for jar in
    ("curator-client", "curator-framework", "curator-recipes", "zookeeper", "guava", "slf4j-api"))


@pytest.fixture(scope="module")
def curator_lock(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs Curator's ``InterProcessMutex``: ``+ [hosts, path, timeout_s]``;
    prints ``acquired`` (releases on a line of stdin, prints ``released``) or ``timeout``."""
    javac, java = shutil.which("javac"), shutil.which("java")
    missing = [jar for jar in CURATOR_CLASSPATH.split(os.pathsep) if not Path(jar).is_file()]
    if javac is None or java is None or missing:
        pytest.fail(f"Curator interop needs javac and {missing or 'the Curator jars'}: "
                    "bash scripts/setup.sh installs them")
    out = tmp_path_factory.mktemp("curator")
    source = Path(__file__).parent / "interop" / "CuratorLock.java"
    subprocess.run([javac, "-cp", CURATOR_CLASSPATH, "-d", str(out), str(source)], check=True)
    return [java, "-cp", f"{out}{os.pathsep}{CURATOR_CLASSPATH}", "CuratorLock"]


def test_curator_mutex_and_ours_exclude_each_other(backend: str, cluster, coord,
                                                   curator_lock: list[str]) -> None:
    """A Curator holder keeps ours out (either naming of ours: we wait for Curator's
    ``-lock-`` nodes), ours waiting behind it gets the lock when it releases, and a
    holder of ours named as Curator names its nodes (``node_style="curator"``; Curator
    orders children by the text after ``lock-``) keeps Curator out."""
    if backend != "zookeeper":
        pytest.skip("ZooKeeper interop")
    path = f"/interop/{uuid.uuid4().hex[:8]}"
    hosts = ",".join(cluster.endpoints)
    holder = subprocess.Popen([*curator_lock, hosts, path, "30"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "acquired"  # type: ignore[union-attr]
        for style in ("curator", "kazoo"):
            assert not coord.lock(path, raw_prefix=True, node_style=style).acquire(timeout=0.5)
        ours = coord.lock(path, raw_prefix=True, node_style="curator")
        got: list[bool] = []
        waiter = threading.Thread(target=lambda: got.append(ours.acquire(timeout=30)))
        waiter.start()
        wait_for(lambda: len(coord.driver.client.get_children(path)) == 2, 10,
                 message="ours queued behind Curator's node")
        assert not got
        holder.stdin.write("\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]
        assert holder.stdout.readline().strip() == "released"  # type: ignore[union-attr]
        waiter.join(30)
        assert got == [True] and ours.held
        blocked = subprocess.run([*curator_lock, hosts, path, "1"], capture_output=True,
                                 text=True, timeout=60)
        assert blocked.stdout.split() == ["timeout"], blocked.stderr[-500:]
        ours.release()
        after = subprocess.run([*curator_lock, hosts, path, "10"], input="\n",
                               capture_output=True, text=True, timeout=60)
        assert after.stdout.split() == ["acquired", "released"], after.stderr[-500:]
    finally:
        holder.kill()
        holder.wait()
