"""Read-write lock contract: readers share, a writer excludes everyone, and the order is
fair (a reader arriving after a waiting writer waits behind it), on both backends."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest

import coordination
from coordination import errors

from .conftest import TTL
from .helpers import entries, namespace_is_empty, wait_for

pytestmark = pytest.mark.integration


def test_readers_share_and_a_writer_excludes_everyone(connect) -> None:
    a, b, c = connect(), connect(), connect()
    first, second = a.rwlock("prices").read(), b.rwlock("prices").read()
    assert first.acquire(timeout=5) and second.acquire(timeout=5)
    same_client = a.rwlock("prices").read()  # readers of one client share too
    assert same_client.acquire(blocking=False)
    writer = c.rwlock("prices").write()
    assert writer.acquire(blocking=False) is False
    for reader in (first, second, same_client):
        reader.release()
    assert writer.acquire(timeout=5)
    assert writer.token > max(first.token, second.token, same_client.token)  # type: ignore[operator]
    assert a.rwlock("prices").read().acquire(blocking=False) is False
    assert b.rwlock("prices").write().acquire(blocking=False) is False
    writer.release()
    assert entries(a, a.rwlock("prices").path) == []  # nothing left behind
    assert c.rwlock("prices").write().acquire(blocking=False)


def test_a_reader_arriving_after_a_waiting_writer_waits_behind_it(connect) -> None:
    a, b, c, d = connect(), connect(), connect(), connect()
    path = a.rwlock("fair").path
    reader = a.rwlock("fair").read()
    assert reader.acquire()
    order: list[str] = []
    writer_may_release = threading.Event()

    def write() -> None:
        with b.rwlock("fair").write(timeout=30):
            order.append("writer")
            writer_may_release.wait(30)

    def read_later() -> None:
        with c.rwlock("fair").read(timeout=30):
            order.append("late reader")

    writer_thread = threading.Thread(target=write)
    writer_thread.start()
    wait_for(lambda: len(entries(a, path)) == 2, 10, message="writer waiting")
    # Only a reader holds, yet a new reader may not pass the waiting writer.
    assert d.rwlock("fair").read().acquire(blocking=False) is False
    reader_thread = threading.Thread(target=read_later)
    reader_thread.start()
    wait_for(lambda: len(entries(a, path)) == 3, 10, message="late reader waiting")
    reader.release()
    wait_for(lambda: order == ["writer"], 10, message="writer served first")
    writer_may_release.set()
    writer_thread.join(30)
    reader_thread.join(30)
    assert order == ["writer", "late reader"]


def test_mixed_load_never_lets_a_writer_share_and_never_starves_writers(connect) -> None:
    """Overlapping readers keep the lock read-held all the time; writers still get in,
    alone, within a bound, and readers really run together."""
    clients = [connect() for _ in range(4)]
    guard = threading.Lock()
    active = {"readers": 0, "writers": 0}
    seen = {"max_readers": 0, "violations": 0, "writes": 0}
    stop = threading.Event()
    failures: list[BaseException] = []

    def enter(kind: str) -> None:
        with guard:
            active[kind] += 1
            if active["writers"] > 1 or (active["writers"] and active["readers"]):
                seen["violations"] += 1
            seen["max_readers"] = max(seen["max_readers"], active["readers"])

    def leave(kind: str) -> None:
        with guard:
            active[kind] -= 1

    def read_forever(client: coordination.Coordinator) -> None:
        rw = client.rwlock("load")
        try:
            while not stop.is_set():
                with rw.read(timeout=10):
                    enter("readers")
                    time.sleep(random.uniform(0.01, 0.04))  # work while holding
                    leave("readers")
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    readers = [threading.Thread(target=read_forever, args=(client,))
               for client in clients[:3] for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        wait_for(lambda: seen["max_readers"] >= 2, 10, message="readers overlapping")
        rw = clients[3].rwlock("load")
        for _ in range(5):
            started = time.monotonic()
            with rw.write(timeout=5) as held:
                waited = time.monotonic() - started
                assert held.held and isinstance(held.token, int)
                enter("writers")
                time.sleep(0.02)
                leave("writers")
            seen["writes"] += 1
            # Fair order: a writer waits only for the readers ahead of it.
            assert waited < 2.0, waited
    finally:
        stop.set()
        for thread in readers:
            thread.join(30)
    assert not failures, failures
    assert seen["writes"] == 5 and seen["violations"] == 0
    assert seen["max_readers"] >= 2


def test_with_form_timeouts_and_tokens(connect) -> None:
    a, b = connect(), connect()
    tokens = []
    for client in (a, b, a):
        with client.rwlock("t").write(timeout=5) as w:
            tokens.append(w.token)
    assert tokens == sorted(tokens) and len(set(tokens)) == 3
    with a.rwlock("t").write(timeout=5):
        started = time.monotonic()
        with pytest.raises(errors.LockTimeout), b.rwlock("t").read(timeout=0.3):
            pytest.fail("read while written")
        assert 0.3 <= time.monotonic() - started <= 0.3 * 1.1 + 0.1
        with pytest.raises(errors.LockTimeout), b.rwlock("t").write(timeout=0):
            pytest.fail("two writers")
    assert entries(a, a.rwlock("t").path) == []


def test_a_lost_reader_session_lets_the_writer_in(connect) -> None:
    from .test_session_loss import expire_session

    a, b = connect(), connect()
    reader = a.rwlock("s").read()
    assert reader.acquire()
    expire_session(a)
    wait_for(lambda: not reader.held, TTL * 2, message="reader knows its hold is lost")
    writer = b.rwlock("s").write()
    assert writer.acquire(timeout=TTL * 2)
    with pytest.raises(errors.LockLost):
        reader.release()
    writer.release()


def test_bad_input_is_typed_and_changes_nothing(coord: coordination.Coordinator) -> None:
    for name in ["", "/a", "a//b", "..", "x" * 257, None, 3]:
        with pytest.raises(errors.InvalidName):
            coord.rwlock(name)  # type: ignore[arg-type]
    rw = coord.rwlock("fine")
    for timeout in (-1, float("nan"), "5", True):
        with pytest.raises(errors.InvalidArgument):
            rw.read(timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidArgument):
            rw.write().acquire(timeout=timeout)  # type: ignore[arg-type]
    assert namespace_is_empty(coord)


KAZOO_RW = """
import sys, time
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1]); zk.start()
lock = (zk.ReadLock if sys.argv[3] == "read" else zk.WriteLock)(sys.argv[2])
lock.acquire(); print("held", flush=True); sys.stdin.readline()
lock.release(); zk.stop()
"""


def test_kazoo_read_write_locks_interoperate(backend: str, cluster, coord) -> None:
    if backend != "zookeeper":
        pytest.skip("ZooKeeper interop")
    import subprocess
    import sys

    from kazoo.client import KazooClient
    from kazoo.exceptions import LockTimeout

    path = f"/interop/rw-{uuid.uuid4().hex[:8]}"
    hosts = ",".join(cluster.endpoints)
    rw = coord.rwlock(path, raw_prefix=True)

    def kazoo_holding(kind: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", KAZOO_RW, hosts, path, kind],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"  # type: ignore[union-attr]
        return proc

    def done(proc: subprocess.Popen) -> None:
        proc.communicate("\n", timeout=10)
        assert proc.returncode == 0

    theirs = kazoo_holding("read")  # their reader shares with ours, excludes our writer
    ours = rw.read()
    assert ours.acquire(blocking=False)
    assert rw.write().acquire(blocking=False) is False
    ours.release()
    done(theirs)
    theirs = kazoo_holding("write")  # their writer excludes our reader
    assert rw.read().acquire(blocking=False) is False
    done(theirs)
    zk = KazooClient(hosts=hosts)
    zk.start()
    try:
        with rw.read(timeout=5):  # our reader shares with theirs, excludes their writer
            their_reader = zk.ReadLock(path)
            assert their_reader.acquire(timeout=1)
            their_reader.release()
            with pytest.raises(LockTimeout):
                zk.WriteLock(path).acquire(timeout=0.5)
        with rw.write(timeout=5), pytest.raises(LockTimeout):  # ours excludes their reader
            zk.ReadLock(path).acquire(timeout=0.5)
    finally:
        zk.stop()
        zk.close()
