"""Election contract: one leader at a time across processes, the next candidate in order
takes over when the leader resigns or loses its session, observers see each change, and
``is_leader`` turns False as soon as the session is known lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import coordination
from coordination import errors

from .conftest import TTL
from .helpers import entries, namespace_is_empty, wait_for
from .test_session_loss import expire_session

pytestmark = pytest.mark.integration
WORKER = [sys.executable, "-m", "tests.workers.election_worker"]
ROOT = Path(__file__).resolve().parent.parent


def test_campaign_leader_and_resign(connect) -> None:
    a, b = connect(), connect()
    ours, theirs = a.election("order-scheduler"), b.election("order-scheduler")
    assert ours.leader() is None and not ours.is_leader
    assert ours.campaign(b"worker-7", timeout=5) is True
    assert ours.is_leader and theirs.leader() == b"worker-7" and ours.leader() == b"worker-7"
    with pytest.raises(errors.AlreadyHeld):
        ours.campaign(b"again", timeout=0)
    started = time.monotonic()
    assert theirs.campaign(b"worker-8", timeout=0.3) is False
    assert 0.3 <= time.monotonic() - started <= 0.3 * 1.1 + 0.1
    assert len(entries(a, ours.path)) == 1  # the timed-out candidacy was withdrawn
    won: list[bool] = []
    waiting = threading.Thread(target=lambda: won.append(theirs.campaign("worker-8", timeout=10)))
    waiting.start()
    wait_for(lambda: len(entries(a, ours.path)) == 2, 10, message="second candidate queued")
    assert ours.leader() == b"worker-7"  # a waiting candidate does not lead
    ours.resign()
    waiting.join(10)
    assert won == [True] and theirs.is_leader and not ours.is_leader
    assert ours.leader() == b"worker-8"
    assert theirs.token > ours.token  # type: ignore[operator]
    ours.resign()  # not leading: a no-op
    theirs.resign()
    assert ours.leader() is None and entries(a, ours.path) == []


def test_one_leader_at_a_time_across_processes(
    url: str, tmp_path: Path, python_env: dict[str, str]
) -> None:
    log = tmp_path / "reigns.log"
    procs = [
        subprocess.Popen([*WORKER, url, "scheduler", f"w{i}", "cycle", "10", str(log)],
                         cwd=ROOT, env=python_env)
        for i in range(4)
    ]
    try:
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    reigns = sorted(
        (float(start), float(end), int(token), pid)
        for pid, token, start, end in (line.split() for line in log.read_text().splitlines())
    )
    assert len(reigns) == 40 and len({pid for *_, pid in reigns}) == 4
    for (start, end, token, _p), (next_start, _e, next_token, _n) in zip(reigns, reigns[1:]):
        assert end <= next_start, "two leaders at once"
        assert next_token > token


def test_session_loss_elects_the_next_candidate_in_order_and_observers_see_it(
    url: str, connect, python_env: dict[str, str]
) -> None:
    watcher = connect()
    election = watcher.election("scheduler")
    observed: list[bytes | None] = []
    observer = election.observe(observed.append)
    wait_for(lambda: observed == [None], 10, message="observer started")
    procs: list[subprocess.Popen] = []
    try:
        for index, value in enumerate(("A", "B", "C")):
            procs.append(subprocess.Popen([*WORKER, url, "scheduler", value, "hold"], cwd=ROOT,
                                          env=python_env, stdout=subprocess.PIPE, text=True))
            wait_for(lambda n=index: len(entries(watcher, election.path)) == n + 1, 10,
                     message=f"candidate {value} queued")
        assert procs[0].stdout.readline().startswith("leader")  # type: ignore[union-attr]
        for index, proc in enumerate(procs):
            os.kill(proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            expected = [b"A", b"B", b"C", None][index + 1]
            if expected is not None:  # the next candidate in order says it leads
                assert procs[index + 1].stdout.readline().startswith("leader")  # type: ignore[union-attr]
            wait_for(lambda e=expected: election.leader() == e, TTL * 3, message="next leader")
            assert time.monotonic() - killed <= TTL + 1.0
        wait_for(lambda: len(observed) == 5, 10, message="observer saw every change")
        assert observed == [None, b"A", b"B", b"C", None]
    finally:
        observer.stop()
        for proc in procs:
            proc.kill()
            proc.wait()


def test_observers_see_every_change_in_order(connect) -> None:
    clients = [connect() for _ in range(4)]
    elections = [client.election("e") for client in clients]
    seen: list[bytes | None] = []
    other_seen: list[bytes | None] = []
    observer = elections[3].observe(seen.append)
    other = elections[0].observe(other_seen.append)  # an observer that also campaigns

    def both_saw(*expected: bytes | None) -> None:
        wait_for(lambda: seen == other_seen == list(expected), 10,
                 message=f"observers saw {expected} (saw {seen} and {other_seen})")

    both_saw(None)
    assert elections[0].campaign(b"A", timeout=5)
    threads = []
    for index, value in ((1, b"B"), (2, b"C")):
        thread = threading.Thread(target=elections[index].campaign, args=(value,))
        thread.start()
        threads.append(thread)
        wait_for(lambda n=index: len(entries(clients[0], elections[0].path)) == n + 1, 10,
                 message="candidate queued")
    both_saw(None, b"A")
    elections[0].resign()
    both_saw(None, b"A", b"B")
    threads[0].join(10)  # its campaign() returned: it may resign
    elections[1].resign()
    both_saw(None, b"A", b"B", b"C")
    threads[1].join(10)
    elections[2].resign()
    both_saw(None, b"A", b"B", b"C", None)
    observer.stop()
    other.stop()
    assert elections[1].campaign(b"D", timeout=5)
    assert elections[3].leader() == b"D"
    assert seen == [None, b"A", b"B", b"C", None]  # a stopped observer is not called
    elections[1].resign()


def test_short_reigns_may_be_skipped_but_never_reordered(connect) -> None:
    """Leaders resign as soon as they are elected, without waiting for the observer.
    The observer reports the current leader, not a backlog: it may skip a short reign
    but never reorders or repeats one, and ends on the current state."""
    values = [b"A", b"B", b"C", b"D", b"E"]
    clients = [connect() for _ in values]
    elections = [client.election("quick") for client in clients]
    seen: list[bytes | None] = []
    observer = connect().election("quick").observe(seen.append)
    wait_for(lambda: seen == [None], 10, message="observer started")
    won = [threading.Event() for _ in values]
    threads = []
    for index, (election, value) in enumerate(zip(elections, values)):
        thread = threading.Thread(target=lambda e=election, v=value, w=won[index]:
                                  e.campaign(v, timeout=30) and w.set())
        thread.start()
        threads.append(thread)
        wait_for(lambda n=index: len(entries(clients[0], elections[0].path)) == n + 1, 10,
                 message="candidate queued")
    for index, election in enumerate(elections):
        assert won[index].wait(10)
        election.resign()
    for thread in threads:
        thread.join(10)
    wait_for(lambda: seen[-1:] == [None], 10, message="the last resignation observed")
    observer.stop()
    assert seen[:2] == [None, b"A"] and seen[-1] is None
    inner = seen[1:-1]
    assert inner == sorted(inner) and len(set(inner)) == len(inner)


def test_is_leader_turns_false_as_soon_as_the_session_is_lost(connect) -> None:
    a, b = connect(), connect()
    ours, theirs = a.election("lead"), b.election("lead")
    assert ours.campaign(b"ours", timeout=5)
    # Presumed lost locally (e.g. cut off past the deadline): no server round trip needed.
    session = a.driver.session()
    session.deadline = time.monotonic()
    assert not ours.is_leader
    session.deadline = None  # as if the servers confirmed it late: seen lost, it stays lost
    assert not ours.is_leader and not session.alive
    won: list[bool] = []
    waiting = threading.Thread(target=lambda: won.append(theirs.campaign(b"theirs", timeout=20)))
    waiting.start()
    # Queued behind ours; or leading already, where our backend ended the session it
    # found past its deadline on the server first (etcd revokes such a lease).
    wait_for(lambda: any(value == b"theirs" for _key, value in entries(a, ours.path)), 10,
             message="second candidate queued")
    expire_session(a, session)  # lost on the server too
    wait_for(lambda: not ours.is_leader, TTL * 2, message="loss noticed")
    waiting.join(20)
    assert won == [True] and theirs.leader() == b"theirs"
    ours.resign()  # the lost leadership: nothing to do, no error
    assert ours.campaign(b"ours again", timeout=0.2) is False  # may stand again
    theirs.resign()


def test_bad_input_is_typed_and_changes_nothing(coord: coordination.Coordinator) -> None:
    for name in ["", "/a", "a//b", "..", "x" * 257, None, 3]:
        with pytest.raises(errors.InvalidName):
            coord.election(name)  # type: ignore[arg-type]
    election = coord.election("fine")
    for value in (None, 7, ["v"]):
        with pytest.raises(errors.InvalidPayload):
            election.campaign(value)  # type: ignore[arg-type]
    with pytest.raises(errors.PayloadTooLarge):
        election.campaign(b"x" * (64 * 1024 + 1))
    for timeout in (-1, float("nan"), "5", True):
        with pytest.raises(errors.InvalidArgument):
            election.campaign(b"v", timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        election.observe("not callable")  # type: ignore[arg-type]
    assert not election.is_leader
    assert namespace_is_empty(coord)


def test_foreign_candidates_are_seen(backend: str, cluster, coord) -> None:
    """The layout is kazoo's Election / etcd's ``etcdctl elect``: each sees the other."""
    if cluster.secure:
        pytest.skip("the foreign clients here speak plaintext (interop, not security)")
    name = f"interop-{uuid.uuid4().hex[:8]}"
    if backend == "zookeeper":
        from kazoo.client import KazooClient

        path = f"/interop/{name}"
        zk = KazooClient(hosts=",".join(cluster.endpoints))
        zk.start()
        try:
            ours = coord.election(path, raw_prefix=True)
            assert ours.campaign(b"ours", timeout=5)
            theirs = zk.Election(path, "theirs")
            assert theirs.contenders() == ["ours"]  # kazoo sees our leader first
            ours.resign()
            zk.Lock(path, "kazoo-leader").acquire(timeout=5)  # what kazoo's run() does
            assert ours.leader() == b"kazoo-leader"
        finally:
            zk.stop()
            zk.close()
        return
    endpoints = ",".join(cluster.endpoints)
    theirs = subprocess.Popen(["etcdctl", f"--endpoints={endpoints}", "elect", name, "theirs"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert theirs.stdout.readline().startswith(name)  # type: ignore[union-attr]
        ours = coord.election(name, raw_prefix=True)
        assert ours.leader() == b"theirs"
        assert ours.campaign(b"ours", timeout=0.3) is False
        theirs.send_signal(signal.SIGINT)  # etcdctl resigns and revokes its lease
        theirs.wait(10)
        assert ours.campaign(b"ours", timeout=10)
        listen = subprocess.Popen(["etcdctl", f"--endpoints={endpoints}", "elect", "-l", name],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert listen.stdout.readline().startswith(name)  # type: ignore[union-attr]
            assert listen.stdout.readline().strip() == "ours"  # type: ignore[union-attr]
        finally:
            listen.kill()
            listen.wait()
        ours.resign()
    finally:
        theirs.kill()
        theirs.wait()
