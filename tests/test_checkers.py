"""The checkers can fail: each is fed a history that breaks its invariant."""

from __future__ import annotations

from coordination.lab import checkers
from coordination.lab.linearizability import Op, is_linearizable


def test_fenced_writes_checker() -> None:
    good = [(1, 5, 9, True), (2, 4, 9, False), (2, 7, 8, True)]
    assert checkers.check_fenced_writes(good, 10) == []
    stale = [(1, 5, 9, True), (2, 4, 8, True)]
    assert any("stale write" in p for p in checkers.check_fenced_writes(stale, 10))
    lost_update = [(1, 5, 9, True), (2, 6, 9, True)]
    assert any("lost update" in p for p in checkers.check_fenced_writes(lost_update, 10))


def _hold(pid: int, token: int, start: float, end: float, result: str = "ok") -> list[dict]:
    return [{"op": "acquire", "pid": pid, "ok": True, "token": token, "t0": start, "t1": start},
            {"op": "release", "pid": pid, "t0": end, "t1": end, "result": result}]


def test_lock_holds_checker() -> None:
    assert checkers.check_lock_holds(_hold(1, 1, 0, 1) + _hold(2, 2, 1.5, 2)) == []
    overlap = _hold(1, 1, 0, 1) + _hold(2, 2, 0.5, 2)
    assert any("overlap" in p for p in checkers.check_lock_holds(overlap))
    shrinking = _hold(1, 5, 0, 1) + _hold(2, 2, 1.5, 2)
    assert any("token" in p for p in checkers.check_lock_holds(shrinking))
    lost = _hold(1, 1, 0, 1, "lost") + _hold(2, 2, 0.5, 2)
    assert checkers.check_lock_holds(lost) == []  # a hold reported lost is excused


def test_capacity_checker() -> None:
    two_at_once = _hold(1, 1, 0, 2) + _hold(2, 2, 1, 3) + _hold(3, 3, 2, 4)  # 3 starts as 1 ends
    assert checkers.check_capacity(two_at_once, 2) == []
    three = _hold(1, 1, 0, 2) + _hold(2, 2, 1, 3) + _hold(3, 3, 1.5, 4)
    assert any("3 holders" in p for p in checkers.check_capacity(three, 2))
    assert checkers.check_capacity(_hold(1, 1, 0, 2, "lost") + three[2:], 2) == []


def _add(pid: int, value: int | None, t0: float, t1: float, ok: bool | None = True) -> dict:
    return {"op": "add", "pid": pid, "ok": ok, "value": value, "t0": t0, "t1": t1}


def test_counter_checker() -> None:
    good = [_add(1, 9, 0, 1), _add(2, 7, 0.5, 3), _add(3, 8, 0.5, 2)]  # 2 and 3 concurrent
    assert checkers.check_counter(good, 10, 7) == []
    assert checkers.check_counter([*good, _add(1, None, 3, 4, None)], 10, 6) == []
    lost_update = [_add(1, 9, 0, 1), _add(2, 9, 2, 3)]
    assert any("returned to 2 adds" in p for p in checkers.check_counter(lost_update, 10, 9))
    unexplained = checkers.check_counter(good, 10, 5)
    assert any("applied" in p for p in unexplained)
    stale_read = [_add(1, 8, 0, 1), _add(2, 9, 2, 3)]  # began after 8 was returned
    assert any("linearizable" in p for p in checkers.check_counter(stale_read, 10, 8))


def test_queue_checker() -> None:
    puts = [{"op": "put", "id": f"t{i}", "key": "k", "seq": i, "ok": True} for i in range(3)]
    claims = [{"op": "claim", "id": f"t{i}", "token": 10 + i} for i in range(3)]
    acks = [{"op": "ack", "id": f"t{i}", "ok": True} for i in range(3)]
    drained = {"pending": 0, "in_flight": 0, "delayed": 0}
    assert checkers.check_queue(puts + claims + acks, drained, set()) == []
    assert any("lost" in p for p in checkers.check_queue(puts + claims[:2] + acks[:2], drained, set()))
    twice = acks + [{"op": "ack", "id": "t0", "ok": True}]
    assert any("twice" in p for p in checkers.check_queue(puts + claims + twice, drained, set()))
    reordered = [{"op": "claim", "id": "t1", "token": 1}, {"op": "claim", "id": "t0", "token": 2},
                 {"op": "claim", "id": "t2", "token": 3}]
    assert any("order" in p for p in checkers.check_queue(puts + reordered + acks, drained, set()))
    ghost = [{"op": "claim", "id": "nobody", "token": 99}]
    assert any("unexpected" in p for p in checkers.check_queue(puts + claims + acks + ghost,
                                                               drained, set()))
    assert any("drained" in p for p in checkers.check_queue(puts + claims + acks,
                                                            {"in_flight": 1}, set()))


def _claim(tid: int, token: int, got: float, settled: float | None, op: str = "ack",
           error: str | None = None, task: str = "t1", pid: int = 7) -> list[dict]:
    """A claim of ``task`` by thread ``tid`` of ``pid``: its get returned at ``got``; its
    settle began at ``settled`` (None: the worker died first) and raised ``error``."""
    events = [{"op": "claim", "pid": pid, "tid": tid, "id": task, "token": token,
               "t0": got - 0.01, "t1": got}]
    if settled is not None:
        events.append({"op": op, "pid": pid, "tid": tid, "id": task, "token": token,
                       "ok": error is None, "error": error, "t0": settled, "t1": settled + 0.01})
    return events


def test_exclusive_delivery_checker() -> None:
    check = checkers.check_exclusive_delivery
    sequential = _claim(0, 10, 1.0, 2.0, "nack") + _claim(1, 11, 2.5, 3.0)
    assert check(sequential) == []
    # Two threads of one process hold the task at once, and both settle fine (issue 14).
    overlapping = _claim(0, 10, 1.0, 2.0) + _claim(1, 11, 1.5, 2.5)
    assert any("while pid 7 thread 0 held it" in p for p in check(overlapping))
    # The first claim was lost (its ack says so): the task was handed out again.
    lost = _claim(0, 10, 1.0, 2.0, error="ClaimLost") + _claim(1, 11, 1.5, 2.5)
    assert check(lost) == []
    uncertain = _claim(0, 10, 1.0, 2.0, error="UncertainOutcome") + _claim(1, 11, 1.5, 2.5)
    assert check(uncertain) == []
    killed = _claim(0, 10, 1.0, None) + _claim(0, 11, 1.5, 2.5, pid=8)
    assert check(killed) == []
    # The later claim's fate does not matter: it was handed out during a held claim.
    assert check(_claim(0, 10, 1.0, 2.0) + _claim(1, 11, 1.5, 2.5, error="ClaimLost"))
    # One claim (one token) in two hands is a violation whatever happened next.
    twice = _claim(0, 10, 1.0, 2.0, error="ClaimLost") + _claim(1, 10, 1.1, 2.5)
    assert any("delivered twice" in p for p in check(twice))
    # Other tasks, and settles matched to their own thread's claim, are independent.
    interleaved = (_claim(0, 10, 1.0, 2.0) + _claim(1, 12, 1.5, 2.5, task="t2")
                   + _claim(1, 13, 3.0, 3.5))
    interleaved.sort(key=lambda e: e["t0"])
    assert check(interleaved) == []


def test_observers_checker() -> None:
    events = [{"op": "observed", "pid": 1, "value": "worker-2", "t": 5.0},
              {"op": "observed", "pid": 2, "value": None, "t": 3.0}]
    assert checkers.check_observers(events, 4.0, [1]) == []
    assert any("silent" in p for p in checkers.check_observers(events, 4.0, [1, 2]))
    assert any("nothing" in p for p in checkers.check_observers(events, 4.0, [3]))


def test_inventory_checker() -> None:
    assert checkers.check_inventory(10, 7, 3) == []
    assert checkers.check_inventory(10, 8, 3)
    assert checkers.check_inventory(1, -1, 2)
    assert checkers.check_inventory(10, None, 0)  # the row is gone


def test_typed_errors_checker() -> None:
    assert checkers.check_errors_typed([{"op": "get", "error": "BackendUnavailable"}]) == []
    assert checkers.check_errors_typed([{"op": "get", "error": "_InactiveRpcError"}])


def test_linearizability_of_mutex_histories() -> None:
    sequential = [Op(1, "acquire", 0, 1), Op(1, "release", 2, 3),
                  Op(2, "acquire", 4, 5), Op(2, "release", 6, 7)]
    assert is_linearizable(sequential)
    # Overlapping calls may be ordered either way.
    concurrent = [Op(1, "acquire", 0, 3), Op(2, "acquire", 1, 6), Op(1, "release", 4, 5),
                  Op(2, "release", 7, 8)]
    assert is_linearizable(concurrent)
    # Two holders at once: no order explains it.
    double = [Op(1, "acquire", 0, 1), Op(2, "acquire", 2, 3), Op(1, "release", 4, 5),
              Op(2, "release", 6, 7)]
    assert not is_linearizable(double)
    # A release by a non-holder is impossible.
    assert not is_linearizable([Op(1, "acquire", 0, 1), Op(2, "release", 2, 3)])
    # An acquire that never returned may or may not have happened.
    crashed = [Op(1, "acquire", 0, None), Op(2, "acquire", 2, 3), Op(2, "release", 4, 5)]
    assert is_linearizable(crashed)


def test_exclusive_delivery_pairs_a_batching_threads_claims_with_their_own_settles() -> None:
    """A thread of a batching worker holds several claims at once, then settles them:
    each settle belongs to its own task's claim (a later claim of the same thread must
    not hide an earlier one's ack)."""
    batch = [{"op": "claim", "pid": 7, "tid": 0, "id": f"t{i}", "token": 10, "t0": 1.0,
              "t1": 1.0} for i in range(3)]
    batch += [{"op": "ack", "pid": 7, "tid": 0, "id": f"t{i}", "token": 10, "ok": True,
               "t0": 2.0, "t1": 2.1} for i in range(3)]
    claims = checkers.queue_claims(batch)
    assert [c["settle"]["id"] for c in claims] == ["t0", "t1", "t2"]
    # So a second delivery of t0 while the batch held it is caught.
    stolen = {"op": "claim", "pid": 8, "tid": 0, "id": "t0", "token": 11, "t0": 1.5, "t1": 1.5}
    assert any("t0" in p for p in checkers.check_exclusive_delivery(batch + [stolen]))


def test_reservations_checker() -> None:
    stock = {"a": 5}
    events = [{"op": "confirm", "ok": True, "hold": "h1", "lines": {"a": 2}},
              {"op": "release", "ok": True, "hold": "h2", "lines": {"a": 1}},
              {"op": "confirm", "ok": None, "hold": "h3", "lines": {"a": 1}},
              {"op": "confirm", "ok": False, "hold": "h4", "lines": {"a": 3}}]
    assert checkers.check_reservations(events, stock, {"a": (3, 0, 2)}) == []
    assert checkers.check_reservations(events, stock, {"a": (2, 0, 3)}) == []  # the doubt
    assert any("sold" in p for p in checkers.check_reservations(events, stock, {"a": (4, 0, 1)}))
    assert any("stock" in p for p in checkers.check_reservations(events, stock, {"a": (4, 0, 2)}))
    assert any("reserved" in p
               for p in checkers.check_reservations(events, stock, {"a": (2, 1, 2)}))
    twice = events + [{"op": "release", "ok": True, "hold": "h1", "lines": {"a": 2}}]
    assert any("ended 2 times" in p
               for p in checkers.check_reservations(twice, stock, {"a": (3, 0, 2)}))
    killed = [{"op": "settling", "intent": "confirm", "hold": "h5", "lines": {"a": 1}}]
    assert checkers.check_reservations(events + killed, stock, {"a": (1, 0, 4)}) == []
