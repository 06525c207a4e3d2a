"""Counter contract: linearizable adds with bounds, no lost or doubled update across
processes, through lost replies and a leader kill."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

import coordination
from coordination import errors
from coordination.backends.kv import OutcomeUnknown
from coordination.lab.cluster import LocalCluster
from coordination.recipes.counter import HISTORY

from .conftest import TTL
from .helpers import namespace_is_empty, wait_for

pytestmark = pytest.mark.integration
WORKER = [sys.executable, "-m", "tests.workers.counter_worker"]
ROOT = Path(__file__).resolve().parent.parent


def _raw(coord: coordination.Coordinator, name: str):
    backend = coord.driver
    return backend.kv.get(backend.kv.root("counters", name))


def test_starts_at_zero_adds_and_sets(connect) -> None:
    coord, other = connect(), connect()
    stock = coord.counter("stock/sku-42")
    assert stock.value == 0 and _raw(coord, "stock/sku-42") is None  # nothing written yet
    assert stock.add(5) == 5
    assert stock.add(-2) == 3
    stock.set(500)
    assert stock.value == 500
    assert other.counter("stock/sku-42").value == 500  # another client reads the write
    assert other.counter("stock/sku-42").add(-1) == 499
    assert stock.value == 499
    assert _raw(coord, "stock/sku-42").value.split(b":")[0] == b"499"  # a decimal string
    assert coord.counter("stock/sku-4").value == 0  # names are distinct


def test_bounds_refuse_and_change_nothing(connect) -> None:
    coord, other = connect(), connect()
    stock = coord.counter("bounded")
    stock.set(1)
    assert stock.add(-1, min=0) == 0  # bounds are inclusive
    before = _raw(coord, "bounded")
    with pytest.raises(errors.BoundExceeded):
        stock.add(-1, min=0)
    with pytest.raises(errors.BoundExceeded):
        stock.add(11, max=10)
    with pytest.raises(errors.BoundExceeded):
        stock.add(5, min=-3, max=3)
    assert _raw(coord, "bounded") == before  # not even a rewrite of the same value
    assert stock.add(10, min=0, max=10) == 10
    # A bound is checked against the latest value, not a stale one.
    other.counter("bounded").set(3)
    assert stock.add(-3, min=0) == 0
    with pytest.raises(errors.BoundExceeded):
        other.counter("bounded").add(-1, min=0)


def test_bad_input_is_typed_and_changes_nothing(coord: coordination.Coordinator) -> None:
    for name in ["", "/a", "a//b", "..", "x" * 257, None, 3]:
        with pytest.raises(errors.InvalidName):
            coord.counter(name)  # type: ignore[arg-type]
    stock = coord.counter("x")
    for delta in (1.5, True, False, "1", None, b"1"):
        with pytest.raises(errors.InvalidArgument):
            stock.add(delta)  # type: ignore[arg-type]
    for bounds in ({"min": 5, "max": 4}, {"min": 1.0}, {"max": True}, {"min": "0"}):
        with pytest.raises(errors.InvalidArgument):
            stock.add(1, **bounds)  # type: ignore[arg-type]
    for value in (2.0, True, "7", None):
        with pytest.raises(errors.InvalidArgument):
            stock.set(value)  # type: ignore[arg-type]
    assert all(issubclass(e, errors.CoordinationError)
               for e in (errors.BoundExceeded, errors.UncertainOutcome))
    assert namespace_is_empty(coord)


def test_concurrent_decrements_from_processes_sell_exactly_the_stock(
    connect, url: str, python_env: dict[str, str]
) -> None:
    name = "stock/sku-1"
    connect().counter(name).set(100)
    procs = [
        subprocess.Popen([*WORKER, url, name, "3", "25"], cwd=ROOT, env=python_env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        for proc in procs:  # 12 clients in 4 processes start at once: 300 decrements
            proc.stdin.write("go\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert all(proc.returncode == 0 for proc in procs)
    returned = [value for result in results for value in result["returned"]]
    # Exactly 100 sales, each saw a different stock level, none below 0.
    assert sorted(returned) == list(range(100))
    assert sum(result["refused"] for result in results) == 200
    assert sum(1 for result in results if result["returned"]) >= 2  # really concurrent
    assert connect().counter(name).value == 0


def _lose_reply(coord: coordination.Coordinator, apply: bool, between=None) -> dict[str, int]:
    """Make the next commit of ``coord`` lose its reply: after applying it (``apply``)
    or before it reaches the server; ``between()`` runs after the commit."""
    backend = coord.driver
    real = backend.kv.commit
    calls = {"n": 0}

    def commit(checks, ops, session=None):
        calls["n"] += 1
        if calls["n"] == 1:
            if apply:
                real(checks, ops, session)
            if between is not None:
                between()
            raise OutcomeUnknown("reply lost (injected)")
        return real(checks, ops, session)

    backend.kv.commit = commit  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("apply", [True, False], ids=["applied", "not-applied"])
def test_a_lost_reply_is_applied_exactly_once(coord: coordination.Coordinator, apply: bool) -> None:
    fresh, existing = coord.counter("fresh"), coord.counter("existing")
    existing.set(10)
    calls = _lose_reply(coord, apply)
    assert fresh.add(1) == 1  # the create of the key
    assert fresh.value == 1 and calls["n"] == (1 if apply else 2)
    calls = _lose_reply(coord, apply)
    assert existing.add(1) == 11
    assert existing.value == 11 and calls["n"] == (1 if apply else 2)


def test_a_lost_reply_is_resolved_despite_later_writes(connect) -> None:
    coord, other = connect(), connect()
    ours, theirs = coord.counter("c"), other.counter("c")
    ours.set(10)
    _lose_reply(coord, apply=True, between=lambda: [theirs.add(1) for _ in range(HISTORY - 1)])
    assert ours.add(100) == 110  # applied once, recognised among later writes
    assert ours.value == 110 + HISTORY - 1
    # Another client's write won the version we read: ours did not apply, and is retried.
    _lose_reply(coord, apply=True, between=None)
    theirs_first = threading.Event()

    def race() -> None:
        theirs.add(1)
        theirs_first.set()

    coord.driver.kv.get = _after_first_read(coord, race)  # type: ignore[method-assign]
    assert ours.add(1000) == 110 + HISTORY - 1 + 1 + 1000
    assert theirs_first.is_set() and ours.value == 1110 + HISTORY


def _after_first_read(coord: coordination.Coordinator, action):
    real = coord.driver.kv.get
    done = {"n": 0}

    def get(key):
        entry = real(key)
        done["n"] += 1
        if done["n"] == 1:
            action()  # lands between our read and our compare-and-set
        return entry

    return get


def test_an_overrun_history_is_resolved_from_etcd_history_or_reported(backend: str, connect) -> None:
    coord, other = connect(), connect()
    ours, theirs = coord.counter("c"), other.counter("c")
    ours.set(10)
    _lose_reply(coord, apply=True, between=lambda: [theirs.add(1) for _ in range(HISTORY + 1)])
    if backend == "etcd":  # the write after the version we read, from etcd's history
        assert ours.add(100) == 110
    else:  # ZooKeeper keeps no history: reported, never guessed
        with pytest.raises(errors.UncertainOutcome):
            ours.add(100)
    assert ours.value == 10 + 100 + HISTORY + 1  # applied once: never retried blindly
    if backend == "etcd":  # and another client's write on our version is told apart
        _lose_reply(coord, apply=True, between=lambda: [theirs.add(1) for _ in range(HISTORY + 1)])
        coord.driver.kv.get = _after_first_read(coord, lambda: theirs.add(1))  # type: ignore[method-assign]
        assert ours.add(1000) == 10 + 100 + 2 * (HISTORY + 1) + 1 + 1000
        assert ours.value == 1111 + 2 * (HISTORY + 1)


# --- a leader kill, on a cluster of its own ---------------------------------------------


@pytest.mark.chaos
def test_leader_kill_loses_and_doubles_no_update(fault_cluster: LocalCluster) -> None:
    url = f"{fault_cluster.url}/c{uuid.uuid4().hex[:10]}?session_ttl={TTL}&request_timeout=20"
    coords = [coordination.connect(url) for _ in range(3)]
    returned: list[int] = []
    uncertain = [0]
    failures: list[BaseException] = []
    guard = threading.Lock()
    stop = threading.Event()

    def add_forever(coord: coordination.Coordinator) -> None:
        counter = coord.counter("hits")
        while not stop.is_set():
            try:
                value = counter.add(1)
            except errors.UncertainOutcome:
                with guard:
                    uncertain[0] += 1
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
                return
            else:
                with guard:
                    returned.append(value)

    threads = [threading.Thread(target=add_forever, args=(c,)) for c in coords for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(returned) >= 50, 20, message="adds before the fault")
        leader = fault_cluster.wait_for_leader()
        fault_cluster.kill(leader)
        count = len(returned)
        wait_for(lambda: len(returned) >= count + 50 or failures, 40,
                 message="adds after the leader kill")
        fault_cluster.restart(leader)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        final = coords[0].counter("hits").value
        for coord in coords:
            coord.close()
    assert not failures, failures
    assert len(set(returned)) == len(returned), "two adds returned the same value"
    # Every returned add applied once; an uncertain one at most once.
    assert len(returned) <= final <= len(returned) + uncertain[0]
    assert max(returned) <= final


def test_next_write_gives_up_when_none_came(coord: coordination.Coordinator, backend: str) -> None:
    """The history lookup of a lost reply (``kv.next_write``) answers within its own
    timeout when nothing was written after the version asked about (it waited forever)."""
    counter = coord.counter("quiet")
    counter.set(1)
    backend_ = coord.driver
    entry = backend_.kv.get(backend_.kv.root("counters", "quiet"))
    assert entry is not None
    answer: list[object] = []
    asking = threading.Thread(
        target=lambda: answer.append(backend_.kv.next_write(entry.key, entry.version)), daemon=True)
    asking.start()
    asking.join(timeout=10)
    assert not asking.is_alive(), "kv.next_write waited for a write that never came"
    assert answer == [None]
