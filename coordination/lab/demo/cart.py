"""Cart mode (``stock_store="cart"``, the default): the stock is the inventory recipe
(:mod:`coordination.recipes.inventory`) and a buyer buys a cart of 1-3 SKUs at a time.

A checkout reserves the whole cart (all lines or none, ``OutOfStock`` otherwise), then
confirms it (most buyers), releases it (some change their mind) or walks away (the hold
expires after :data:`~.settings.HOLD_TTL` by itself, returned by whichever client sweeps
first). A buyer frozen by the chaos monkey freezes between its reserve and its confirm,
so its hold expires meanwhile and its confirm is refused (``HoldExpired``).

The ledger side (:class:`Holds`): every hold a buyer got is recorded with its plan,
then with the outcome the buyer was told; a confirmed hold becomes an order (with its
lines) in the same SQLite transaction. A hold whose outcome the buyer did not learn (it
was killed, or ``UncertainOutcome``) is settled at the close by asking the inventory
(:func:`settle_unknown`), as the counter mode reconciles its intents. The verdict
(:func:`audit`) compares every hold's final state in the inventory with what its buyer
was told, and every SKU's levels with the orders.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterable

import coordination
from coordination.errors import HoldExpired, OutOfStock, UncertainOutcome

from . import store
from .failover import retry
from .settings import HOLD_TTL, inventory_name

_SCHEMA = """
CREATE TABLE IF NOT EXISTS holds (
    id TEXT PRIMARY KEY, buyer INTEGER NOT NULL, lines TEXT NOT NULL, plan TEXT NOT NULL,
    outcome TEXT, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS order_lines (
    order_id TEXT NOT NULL, sku TEXT NOT NULL, units INTEGER NOT NULL,
    PRIMARY KEY (order_id, sku));
"""
#: What a buyer does with a reserved cart, and how often.
PLANS = {"confirm": 8, "release": 1, "abandon": 1}
#: The final states of a hold.
ENDS = ("confirmed", "released", "expired")


def order_id(hold_id: str) -> str:
    return f"o-{hold_id}"


class Holds:
    """The holds the buyers got, in the sale's SQLite store."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def add(self, hold: coordination.Hold, buyer: int, plan: str) -> None:
        with store.txn(self.db):
            self.db.execute("INSERT INTO holds (id, buyer, lines, plan, at) VALUES (?, ?, ?, ?, ?)",
                            (hold.id, buyer, json.dumps(hold.lines), plan, time.time()))

    def told(self, hold_id: str, outcome: str) -> None:
        """The buyer was told ``outcome`` (or, ``"confirming"``: is about to confirm)."""
        with store.txn(self.db):
            self.db.execute("UPDATE holds SET outcome = ? WHERE id = ?", (outcome, hold_id))

    def confirmed(self, hold_id: str, checkout_ms: float) -> str:
        """The hold is a sale: record its order and lines, in one transaction; the
        order's id."""
        with store.txn(self.db):
            buyer, lines = self.db.execute("SELECT buyer, lines FROM holds WHERE id = ?",
                                           (hold_id,)).fetchone()
            lines = json.loads(lines)
            self.db.execute("UPDATE holds SET outcome = 'confirmed' WHERE id = ?", (hold_id,))
            self.db.execute(
                "INSERT INTO orders (id, sku, units, buyer, token, lock_wait_ms, sold_at) "
                "VALUES (?, ?, ?, ?, 0, ?, ?)", (order_id(hold_id), "+".join(lines),
                                                 sum(lines.values()), buyer, checkout_ms,
                                                 time.time()))
            self.db.executemany("INSERT INTO order_lines (order_id, sku, units) VALUES (?, ?, ?)",
                                [(order_id(hold_id), sku, n) for sku, n in lines.items()])
        return order_id(hold_id)

    def unknown(self) -> list[str]:
        """Holds whose buyer never learnt their end."""
        return [row[0] for row in self.db.execute(
            "SELECT id FROM holds WHERE outcome IS NULL OR outcome = 'confirming'")]

    def all(self) -> list[tuple[str, str, str | None]]:
        """``(id, plan, outcome)`` of every hold."""
        return [(str(a), str(b), c) for a, b, c in
                self.db.execute("SELECT id, plan, outcome FROM holds ORDER BY at")]

    def sold_by_sku(self) -> dict[str, int]:
        return {str(sku): int(n) for sku, n in self.db.execute(
            "SELECT sku, SUM(units) FROM order_lines GROUP BY sku")}


class CartStock:
    """A buyer's side of cart mode."""

    def __init__(self, inventory: coordination.Inventory, db: sqlite3.Connection,
                 buyer: int, rng: random.Random) -> None:
        self.inventory, self.holds, self.buyer, self.rng = inventory, Holds(db), buyer, rng

    def checkout(self, open_skus: list[str], frozen: Callable[[], None]) -> str | None:
        """Reserve a cart of 1-3 of ``open_skus`` and carry out a random plan; the id of
        the order it became, or None. A SKU found sold out for good (nothing available
        or reserved) is removed from ``open_skus``."""
        size = self.rng.randint(1, min(3, len(open_skus)))
        cart = {sku: 1 for sku in self.rng.sample(open_skus, size)}
        started = time.monotonic()
        try:
            hold = self.inventory.reserve(cart, ttl=HOLD_TTL)
        except OutOfStock as exc:
            for sku in exc.short:
                available, reserved, _sold = self.inventory.levels(sku)
                if available == reserved == 0:
                    open_skus.remove(sku)
            if open_skus:
                time.sleep(0.05)  # held carts may give stock back: look again soon
            return None
        plan = self.rng.choices(list(PLANS), weights=list(PLANS.values()))[0]
        self.holds.add(hold, self.buyer, plan)
        frozen()  # a chaos freeze: past the hold's ttl
        if plan == "abandon":
            return None  # it expires by itself
        if plan == "release":
            try:
                hold.release()
                self.holds.told(hold.id, "released")
            except HoldExpired:
                self.holds.told(hold.id, "expired")
            return None
        self.holds.told(hold.id, "confirming")
        try:
            hold.confirm()
        except HoldExpired:
            self.holds.told(hold.id, "expired")
            return None
        except UncertainOutcome:
            return None  # settled at the close, by asking the inventory
        return self.holds.confirmed(hold.id, (time.monotonic() - started) * 1000)


def create_inventory(coord: coordination.Coordinator, db: sqlite3.Connection, run: str,
                     skus: dict[str, int]) -> coordination.Inventory:
    """Before the sale: the cart tables in ``db`` and the inventory, stocked."""
    db.executescript(_SCHEMA)
    inventory = coord.inventory(inventory_name(run))
    retry(lambda: inventory.set(skus), 30.0)
    return inventory


def settle_unknown(inventory: coordination.Inventory, db: sqlite3.Connection) -> dict[str, int]:
    """The buyers stopped and every hold ended: record the end of each hold whose buyer
    did not learn it, as the inventory says (a confirmed one becomes an order, put on
    the queue by the outbox). How many ended each way (``unresolved``: not ended)."""
    holds = Holds(db)
    result = dict.fromkeys((*ENDS, "unresolved"), 0)
    for hold_id in holds.unknown():
        state = inventory.hold_state(hold_id)
        if state == "confirmed":
            holds.confirmed(hold_id, 0.0)
        elif state in ENDS:
            holds.told(hold_id, state)
        else:
            result["unresolved"] += 1
            continue
        result[str(state)] += 1
    return result


def audit(inventory: coordination.Inventory, db: sqlite3.Connection,
          skus: Iterable[str], initial: dict[str, int]) -> dict[str, object]:
    """What the verdict checks in cart mode: each hold's end in the inventory against
    what its buyer was told (``disagree``), the ends by count, and per SKU its levels
    against the stock set and the units of its orders (``bad_levels``)."""
    holds = Holds(db)
    rows = holds.all()
    ends = dict.fromkeys(ENDS, 0)
    disagree: list[str] = []
    for hold_id, plan, told in rows:
        state = inventory.hold_state(hold_id)
        if state in ends:
            ends[str(state)] += 1
        if state not in ENDS or told != state or (plan == "abandon" and state != "expired"):
            disagree.append(f"{hold_id}: {plan}, told {told}, inventory says {state}")
    sold = holds.sold_by_sku()
    levels = {sku: inventory.levels(sku) for sku in skus}
    bad = [f"{sku}: {a} available, {r} reserved, {s} sold of {initial[sku]}, orders "
           f"{sold.get(sku, 0)}" for sku, (a, r, s) in levels.items()
           if min(a, r, s) < 0 or r != 0 or a + s != initial[sku] or s != sold.get(sku, 0)]
    return {"holds": len(rows), "ends": ends, "disagree": disagree, "levels": levels,
            "bad_levels": bad,
            "late": sum(1 for _id, plan, told in rows if plan != "abandon" and told == "expired")}
