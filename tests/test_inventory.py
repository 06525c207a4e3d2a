"""Inventory with reservations (coordination/recipes/inventory.py), against every backend:
a cart gets all its lines or none, holds end exactly once (confirmed, released or
expired, whoever notices first, even with their maker gone), no SKU is ever oversold,
and available + reserved + sold always equals the stock set."""

from __future__ import annotations

import contextlib
import random
import threading
import time

import pytest

import coordination
from coordination import errors
from coordination.backends.kv import OutcomeUnknown

from .helpers import wait_for

pytestmark = pytest.mark.integration


def _total(inv: coordination.Inventory, sku: str) -> int:
    return sum(inv.levels(sku))


def test_a_cart_reserves_every_line_or_none(coord: coordination.Coordinator) -> None:
    inv = coord.inventory("stock")
    inv.set({"sku-1": 5, "sku-7": 1})
    hold = inv.reserve({"sku-1": 2, "sku-7": 1}, ttl=60)
    assert inv.levels("sku-1") == (3, 2, 0) and inv.levels("sku-7") == (0, 1, 0)
    with pytest.raises(errors.OutOfStock) as short:
        inv.reserve({"sku-1": 2, "sku-7": 1, "sku-9": 1})
    assert short.value.short == {"sku-7": (1, 0), "sku-9": (1, 0)}  # named, and why
    assert inv.levels("sku-1") == (3, 2, 0)  # its line was not taken either
    hold.confirm()
    assert inv.levels("sku-1") == (3, 0, 2) and inv.levels("sku-7") == (0, 0, 1)
    with pytest.raises(errors.Conflict):
        hold.release()  # confirmed already: nothing changes
    again = inv.reserve({"sku-1": 3})
    again.release()
    assert inv.levels("sku-1") == (3, 0, 2)
    inv.set({"sku-1": 10})  # restock: the total, whatever is reserved or sold
    assert inv.levels("sku-1") == (8, 0, 2)
    with pytest.raises(errors.InvalidArgument):
        inv.set({"sku-1": 1})  # less than sold


def test_an_abandoned_hold_gives_its_stock_back_once_without_its_maker(
        coord: coordination.Coordinator, connect) -> None:
    maker = connect()
    inv = maker.inventory("stock")
    inv.set({"sku-1": 2})
    hold = inv.reserve({"sku-1": 2}, ttl=0.5)
    maker.close()  # the process that made it is gone
    others = [connect().inventory("stock") for _ in range(3)]
    wait_for(lambda: others[0].available("sku-1") == 2, timeout=10)
    assert sum(other.sweep() for other in others) == 0  # returned once, not again
    assert others[1].levels("sku-1") == (2, 0, 0)
    with pytest.raises(errors.HoldExpired):
        coord.inventory("stock").settle(hold.id, "confirmed")
    assert coord.inventory("stock").hold_state(hold.id) == "expired"


def test_a_confirm_after_expiry_is_refused_even_before_any_sweep(
        coord: coordination.Coordinator) -> None:
    """Expiry is the time, not the sweep: a confirm that comes late finds the hold
    unswept, expires it itself and says so; the stock goes back once."""
    inv = coord.inventory("stock")
    inv.set({"sku-1": 1})
    hold = inv.reserve({"sku-1": 1}, ttl=0.3)
    wait_for(lambda: time.time() > hold.expires_at, timeout=5)
    with pytest.raises(errors.HoldExpired):
        hold.confirm()
    assert inv.levels("sku-1") == (1, 0, 0) and inv.hold_state(hold.id) == "expired"
    assert inv.sweep() == 0


def test_hold_state_says_what_became_of_a_hold(coord: coordination.Coordinator) -> None:
    inv = coord.inventory("stock")
    inv.set({"sku-1": 3})
    kept, given_back = inv.reserve({"sku-1": 1}), inv.reserve({"sku-1": 1})
    assert inv.hold_state(kept.id) == "held"
    kept.confirm()
    given_back.release()
    assert (inv.hold_state(kept.id), inv.hold_state(given_back.id)) == ("confirmed", "released")
    assert inv.hold_state("0123456789abcdef") is None  # never made
    with pytest.raises(errors.InvalidArgument):
        inv.hold_state("../s/sku-1")


def test_concurrent_carts_never_oversell_and_every_unit_is_accounted_for(
        coord: coordination.Coordinator, connect) -> None:
    skus = {"a": 6, "b": 4, "c": 3}
    coord.inventory("flash").set(skus)
    outcomes: list[str] = []
    guard = threading.Lock()

    def buyer(seed: int) -> None:
        rng = random.Random(seed)
        inv = connect().inventory("flash")
        for _ in range(6):
            cart = {sku: rng.randint(1, 2) for sku in rng.sample(sorted(skus), rng.randint(1, 3))}
            try:
                hold = inv.reserve(cart, ttl=30)
            except errors.OutOfStock:
                outcome = "short"
            else:
                if rng.random() < 0.7:
                    hold.confirm()
                    outcome = "sold " + ",".join(f"{s}={n}" for s, n in cart.items())
                else:
                    hold.release()
                    outcome = "released"
            with guard:
                outcomes.append(outcome)

    threads = [threading.Thread(target=buyer, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(outcomes) == 36
    inv = coord.inventory("flash")
    sold = {sku: 0 for sku in skus}
    for outcome in outcomes:
        if outcome.startswith("sold "):
            for line in outcome[5:].split(","):
                sku, units = line.split("=")
                sold[sku] += int(units)
    for sku, stock in skus.items():
        available, reserved, units_sold = inv.levels(sku)
        assert reserved == 0 and units_sold == sold[sku] <= stock
        assert available + units_sold == stock
    assert "short" in outcomes  # the stock did run out


def test_a_reserve_and_a_confirm_whose_replies_were_lost_apply_once(
        coord: coordination.Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    inv = coord.inventory("lost")
    inv.set({"sku-1": 4})
    kv = coord.driver.kv
    real = kv.commit

    def applied_but_reply_lost(checks, ops, session=None):
        real(checks, ops, session)
        raise OutcomeUnknown("reply lost (injected)")

    monkeypatch.setattr(kv, "commit", applied_but_reply_lost)
    hold = inv.reserve({"sku-1": 1})
    hold.confirm()
    monkeypatch.undo()
    assert inv.levels("sku-1") == (3, 0, 1)


def test_threads_sharing_an_inventory_share_commits_and_never_oversell(
        coord: coordination.Coordinator, connect, monkeypatch: pytest.MonkeyPatch) -> None:
    """32 threads reserving one hot SKU through one Inventory object: their concurrent
    reserves are served in shared commits (fewer commits than holds), each gets a hold
    of its own or OutOfStock, and the stock is exact; another process competing on the
    same SKU meanwhile takes its share and nothing more."""
    inv, rival = coord.inventory("hot"), connect().inventory("hot")
    inv.set({"sku-1": 150, "sku-2": 1000})
    kv = coord.driver.kv
    real, commits = kv.commit, []

    def counted(checks, ops, session=None):
        commits.append(len(ops))
        return real(checks, ops, session)

    monkeypatch.setattr(kv, "commit", counted)
    holds: list[coordination.Hold] = []
    refused: list[errors.OutOfStock] = []
    bought: list[int] = []
    start = threading.Barrier(33)

    def buyer(n: int) -> None:
        start.wait()
        while True:
            try:
                holds.append(inv.reserve({"sku-1": 1, "sku-2": 1 + n % 3}, ttl=60))
            except errors.OutOfStock as exc:
                refused.append(exc)
                return

    def rival_buyer() -> None:
        start.wait()
        with contextlib.suppress(errors.OutOfStock):
            for _ in range(20):
                rival.reserve({"sku-1": 1}, ttl=60).confirm()
                bought.append(1)

    threads = [threading.Thread(target=buyer, args=(n,)) for n in range(32)]
    threads.append(threading.Thread(target=rival_buyer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    monkeypatch.undo()
    held = 150 - len(bought)
    assert len(holds) == held and len({hold.id for hold in holds}) == held
    assert len(refused) == 32 and all("sku-1" in exc.short for exc in refused)
    assert len(commits) < held / 2, len(commits)  # shared: several holds a commit
    taken = sum(hold.lines["sku-2"] for hold in holds)
    assert inv.levels("sku-1") == (0, held, len(bought))
    assert inv.levels("sku-2") == (1000 - taken, taken, 0)
    for hold in holds[:5]:
        hold.confirm()
    assert inv.levels("sku-1") == (0, held - 5, len(bought) + 5)


def test_bad_input_is_refused_before_anything_is_sent(coord: coordination.Coordinator) -> None:
    inv = coord.inventory("stock")
    for lines in ({}, {"sku-1": 0}, {"sku-1": True}, {"": 1}, ["sku-1"]):
        with pytest.raises(errors.InvalidArgument):
            inv.reserve(lines)  # type: ignore[arg-type]
    for ttl in (0, -1, float("nan"), "60"):
        with pytest.raises(errors.InvalidArgument):
            inv.reserve({"sku-1": 1}, ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        inv.set({"sku-1": -1})


def test_settled_holds_are_forgotten_after_a_while(
        coord: coordination.Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    from coordination.recipes import inventory as module

    inv = coord.inventory("forget")
    inv.set({"sku-1": 3})
    hold = inv.reserve({"sku-1": 1})
    hold.confirm()
    with pytest.raises(errors.Conflict):
        hold.confirm()  # remembered: says what became of it
    monkeypatch.setattr(module, "KEEP_SETTLED", 0.0)
    inv.sweep()
    with pytest.raises(errors.HoldExpired, match="not known"):
        hold.confirm()
    assert inv.levels("sku-1") == (2, 0, 1)
