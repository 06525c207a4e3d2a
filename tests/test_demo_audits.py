"""The flash-sale demo's cart mode and order records (coordination/lab/demo/cart.py,
orders.py), against every backend: a checkout ends every hold once and records what
its buyer was told, a repeated order step is refused by the record, and the audits the
verdict is built on catch a hold that ended otherwise than recorded, a SKU whose levels
do not add up and a record that skipped a state."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import coordination
from coordination.lab.demo import cart, orders, store
from coordination.lab.demo.store import Ledger
from coordination.lab.demo.verdict import Outcome, _holds_check, _levels_check, _records_check

pytestmark = pytest.mark.integration

SKUS = {"sku-1": 3, "sku-2": 2}


@pytest.fixture
def db(tmp_path: Path):
    store.create(tmp_path / "store.sqlite", SKUS)
    connection = store.open_db(tmp_path / "store.sqlite")
    yield connection
    connection.close()


def _outcome(**kwargs: object) -> Outcome:
    return Outcome(None, Path("."), 0, 0, 0, None, {}, [], 0, True, 0,  # type: ignore[arg-type]
                   **kwargs)  # type: ignore[arg-type]


def test_checkouts_end_every_hold_once_and_the_audit_agrees(
        coord: coordination.Coordinator, db) -> None:
    inventory = cart.create_inventory(coord, db, "run1", SKUS)
    buyer = cart.CartStock(inventory, db, 0, random.Random(7))
    open_skus = sorted(SKUS)
    orders_made = []
    for _ in range(50):
        if not open_skus:
            break
        made = buyer.checkout(open_skus, frozen=lambda: None)
        if made is not None:
            orders_made.append(made)
        for hold_id, plan, told in cart.Holds(db).all():  # abandoned: expire them now
            if plan == "abandon" and told is None:
                inventory.settle(hold_id, "expired")
    assert not open_skus  # it bought until every SKU was gone for good
    settled = cart.settle_unknown(inventory, db)
    assert settled["unresolved"] == 0 and settled["confirmed"] == 0
    result = cart.audit(inventory, db, SKUS, SKUS)
    assert result["disagree"] == [] and result["bad_levels"] == []
    assert result["ends"]["confirmed"] == len(orders_made) >= 1  # type: ignore[index]
    assert Ledger(db).counts()["sold"] == sum(SKUS.values())
    assert _holds_check(_outcome(carts=result)).ok and _levels_check(_outcome(carts=result)).ok


def test_the_cart_audit_catches_a_hold_that_ended_otherwise_than_told(
        coord: coordination.Coordinator, db) -> None:
    inventory = cart.create_inventory(coord, db, "run2", SKUS)
    hold = inventory.reserve({"sku-1": 1})
    holds = cart.Holds(db)
    holds.add(hold, 0, "confirm")
    holds.told(hold.id, "confirmed")  # the ledger says confirmed; the inventory: released
    hold.release()
    result = cart.audit(inventory, db, SKUS, SKUS)
    assert len(result["disagree"]) == 1  # type: ignore[arg-type]
    assert not _holds_check(_outcome(carts=result)).ok
    inventory.set({"sku-2": 2})
    held = inventory.reserve({"sku-2": 1})  # still reserved at the end: a level is wrong
    result = cart.audit(inventory, db, SKUS, SKUS)
    assert any(line.startswith("sku-2:") for line in result["bad_levels"])  # type: ignore[union-attr]
    assert not _levels_check(_outcome(carts=result)).ok
    held.release()


def test_an_order_step_delivered_again_is_refused_by_its_record(
        coord: coordination.Coordinator) -> None:
    order = orders.record(coord, "run3", "o-1")
    assert orders.advance(order, "created") and orders.advance(order, "paid")
    assert not orders.advance(order, "created") and not orders.advance(order, "paid")
    with pytest.raises(coordination.errors.Conflict):
        orders.advance(orders.record(coord, "run3", "o-2"), "paid")  # not created yet
    assert orders.advance(order, "shipped")
    skipped = orders.record(coord, "run3", "o-3")
    skipped.create("paid")  # a record that never was "created"
    result = orders.audit(coord, "run3", ["o-1", "o-3"])
    assert result["walked"] == 1 and result["bad"] == ["o-3: paid"]
    assert not _records_check(_outcome(records=result), 2, 0).ok
    assert _records_check(_outcome(records=orders.audit(coord, "run3", ["o-1"])), 1, 2).ok
