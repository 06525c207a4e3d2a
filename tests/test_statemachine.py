"""State records (coordination/recipes/statemachine.py), against every backend: moves only
along declared transitions, one winner among concurrent moves out of a state, tokens
that grow, a watch that waits for a state, and a lost reply applied once."""

from __future__ import annotations

import threading

import pytest

import coordination
from coordination import errors
from coordination.backends.kv import OutcomeUnknown

pytestmark = pytest.mark.integration

ORDER = {"created": ["paid", "cancelled"], "paid": ["shipped", "refunded"],
         "shipped": [], "cancelled": [], "refunded": []}


def test_an_order_moves_along_its_transitions_with_growing_tokens(
        coord: coordination.Coordinator) -> None:
    order = coord.record("orders/42", ORDER)
    assert order.get() is None and order.state is None
    created = order.create("created", data={"items": ["sku-1"]})
    paid = order.transition("paid", expect="created")
    shipped = order.transition("shipped", data={"tracking": "T1"})
    assert created.token < paid.token < shipped.token
    assert paid.data == {"items": ["sku-1"]}  # kept when not given
    now = order.get()
    assert now is not None and now.state == "shipped" and now.data == {"tracking": "T1"}
    assert [state for state, _at in now.history] == ["shipped", "paid", "created"]
    assert now.token == shipped.token


def test_moves_that_are_not_allowed_change_nothing(coord: coordination.Coordinator) -> None:
    order = coord.record("orders/43", ORDER)
    with pytest.raises(errors.Conflict):
        order.transition("paid")  # not created yet
    order.create("created")
    with pytest.raises(errors.Conflict):
        order.create("created")
    order.transition("cancelled")
    with pytest.raises(errors.InvalidTransition):
        order.transition("paid")  # paid after cancelled
    with pytest.raises(errors.Conflict):
        order.transition("refunded", expect="paid")
    now = order.get()
    assert now is not None and now.state == "cancelled" and len(now.history) == 2


def test_of_concurrent_moves_out_of_one_state_exactly_one_applies(
        coord: coordination.Coordinator, connect) -> None:
    coord.record("orders/44", ORDER).create("created")
    outcomes: list[str] = []
    guard = threading.Lock()
    start = threading.Barrier(6)

    def pay(target: str) -> None:
        record = connect().record("orders/44", ORDER)
        start.wait()
        try:
            record.transition(target)
            outcome = f"applied {target}"
        except (errors.Conflict, errors.InvalidTransition) as exc:
            outcome = type(exc).__name__
        with guard:
            outcomes.append(outcome)

    threads = [threading.Thread(target=pay, args=(target,))
               for target in ["paid", "paid", "paid", "cancelled", "cancelled", "cancelled"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    applied = [outcome for outcome in outcomes if outcome.startswith("applied")]
    # A second "paid" is refused too: paid -> paid is not a declared transition.
    assert len(applied) == 1 and outcomes.count("InvalidTransition") == 5
    final = coord.record("orders/44", ORDER).get()
    assert final is not None and f"applied {final.state}" == applied[0]
    assert len(final.history) == 2


def test_wait_for_watches_until_the_state_comes(coord: coordination.Coordinator, connect) -> None:
    order = coord.record("orders/45", ORDER)
    order.create("created")
    assert order.wait_for("shipped", timeout=0.3) is None
    seen: list[object] = []
    waiter = threading.Thread(target=lambda: seen.append(order.wait_for("shipped", timeout=30)))
    waiter.start()
    other = connect().record("orders/45", ORDER)
    other.transition("paid")
    shipped = other.transition("shipped")
    waiter.join(30)
    assert len(seen) == 1 and seen[0] is not None
    assert seen[0].state == "shipped" and seen[0].token == shipped.token  # type: ignore[attr-defined]


def test_a_transition_whose_reply_was_lost_applies_once(
        coord: coordination.Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    order = coord.record("orders/46", ORDER)
    order.create("created")
    kv = coord.driver.kv
    real = kv.commit
    lost = []

    def applied_but_reply_lost(checks, ops, session=None):
        stamp = real(checks, ops, session)
        if not lost:
            lost.append(stamp)
            raise OutcomeUnknown("reply lost (injected)")
        return stamp

    monkeypatch.setattr(kv, "commit", applied_but_reply_lost)
    paid = order.transition("paid", expect="created")
    monkeypatch.undo()
    assert lost and paid.token == lost[0]  # found by its write id, not applied again
    now = order.get()
    assert now is not None and [state for state, _ in now.history] == ["paid", "created"]


def test_bad_input_is_refused_before_anything_is_sent(coord: coordination.Coordinator) -> None:
    for transitions in ({}, {"a": [1]}, ["a"]):
        with pytest.raises(errors.InvalidArgument):
            coord.record("orders/47", transitions)  # type: ignore[arg-type]
    order = coord.record("orders/47", ORDER)
    with pytest.raises(errors.InvalidArgument):
        order.create("lost")  # not a declared state
    with pytest.raises(errors.InvalidArgument):
        order.create("created", data={"when": object()})  # not JSON
    assert order.get() is None
