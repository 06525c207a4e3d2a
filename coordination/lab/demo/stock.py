"""The stock of a sale, the only place that knows how it is stored (``stock_store``).

* ``"counter"`` (the default): per SKU an atomic counter ``stock/<sku>``
  (:mod:`coordination.recipes.counter`); a purchase is ``add(-1, min=0)``, no lock
  (``BoundExceeded``: sold out). The decrement and the order's SQLite row cannot be one
  transaction, so the buyer first writes an *intent*, and replaces it by the order once
  ``add`` returned. An intent left behind (the buyer was killed in between, or ``add``
  raised ``UncertainOutcome``) is in doubt: at the close :func:`reconcile` settles each
  SKU against its counter (the counter applies an update at most once, so
  ``initial - value - orders`` of the SKU's intents applied) and records that many of
  them as orders; the rest never applied.
* ``"fenced"``: take the SKU's lock, read the stock with the lock's fencing token, write
  ``stock - 1`` with the same token and record the order in the same transaction
  (:class:`~.store.FencedStock`), release.

Buyers use :func:`make_stock` and :func:`take_one`; the orchestrator
:func:`create_counters` before the sale and :func:`reconcile` after it.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable

import coordination
from coordination.errors import BackendUnavailable, BoundExceeded, ClientClosed, UncertainOutcome

from . import store
from .failover import retry
from .settings import counter_name
from .store import FencedStock, Order

_INTENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    id TEXT PRIMARY KEY, sku TEXT NOT NULL, buyer INTEGER NOT NULL, at REAL NOT NULL,
    uncertain INTEGER NOT NULL DEFAULT 0);
"""


class CounterStock:
    """Per-SKU stock in atomic counters (see the module docstring): each purchase is
    recorded as an intent first, replaced by the order once the decrement returned."""

    def __init__(self, coord: coordination.Coordinator, db: sqlite3.Connection) -> None:
        self.db = db
        self.counters = {sku: coord.counter(counter_name(sku))
                         for sku in FencedStock(db).remaining()}

    def take(self, sku: str, order: Order) -> bool:
        with store.txn(self.db):
            self.db.execute("INSERT INTO intents (id, sku, buyer, at) VALUES (?, ?, ?, ?)",
                            (order.id, sku, order.buyer, time.time()))
        started = time.monotonic()
        try:
            self.counters[sku].add(-1, min=0)
        except UncertainOutcome:
            with store.txn(self.db):  # in doubt: reconciled at the close
                self.db.execute("UPDATE intents SET uncertain = 1 WHERE id = ?", (order.id,))
            raise
        except (BoundExceeded, BackendUnavailable, ClientClosed) as exc:
            with store.txn(self.db):  # documented: not applied
                self.db.execute("DELETE FROM intents WHERE id = ?", (order.id,))
            if isinstance(exc, BoundExceeded):
                return False  # sold out
            raise
        latency_ms = (time.monotonic() - started) * 1000
        with store.txn(self.db):
            self.db.execute("DELETE FROM intents WHERE id = ?", (order.id,))
            self.db.execute(
                "INSERT INTO orders (id, sku, buyer, token, lock_wait_ms, sold_at) "
                "VALUES (?, ?, ?, 0, ?, ?)", (order.id, sku, order.buyer, latency_ms, time.time()))
        return True


def make_stock(coord: coordination.Coordinator, db: sqlite3.Connection,
               kind: str = "counter") -> FencedStock | CounterStock:
    """The stock store every buyer uses: atomic counters, or the fenced SQLite table."""
    return CounterStock(coord, db) if kind == "counter" else FencedStock(db)


def take_one(stock: FencedStock | CounterStock, sku: str, lock: coordination.Lock | None,
             order: Order, before_write: Callable[[], None] = lambda: None) -> bool:
    """Sell one unit of ``sku`` as ``order``; False if sold out. Counter: no lock (pass
    None); ``UncertainOutcome`` if the decrement's outcome is unknown (the intent stays).
    Fenced: while holding ``lock``; ``StaleToken`` if the store refused our token (a
    newer holder has been there)."""
    if isinstance(stock, CounterStock):
        return stock.take(sku, order)
    assert lock is not None and lock.token is not None
    qty = stock.read(sku, lock.token)
    if qty <= 0:
        return False
    before_write()
    stock.sell(sku, lock.token, qty, order)
    return True


def create_counters(coord: coordination.Coordinator, db: sqlite3.Connection,
                    skus: dict[str, int]) -> dict[str, coordination.Counter]:
    """Counter mode, before the sale: the intents table in ``db``, and per SKU its
    counter set to its units (retrying through a failover); the counters."""
    db.executescript(_INTENTS_SCHEMA)
    counters = {}
    for sku, units in skus.items():
        counters[sku] = coord.counter(counter_name(sku))
        retry(functools.partial(counters[sku].set, units), 30.0)
    return counters


def reconcile(db: sqlite3.Connection, finals: dict[str, int]) -> dict[str, int]:
    """Counter mode, the buyers stopped: settle the intents left in doubt (a buyer
    killed between the decrement and recording the order, or ``UncertainOutcome``).
    Per SKU, ``initial - final - orders`` of them applied (each at most once): record
    that many as orders, drop the rest. A count out of range is left for the verdict
    to flag. ``finals``: each SKU's final counter value. How many were ``in_doubt``,
    ``uncertain``, ``applied`` and ``unresolved``."""
    initial = dict(db.execute("SELECT sku, initial FROM stock").fetchall())
    result = {"in_doubt": 0, "uncertain": 0, "applied": 0, "unresolved": 0}
    for sku, value in finals.items():
        with store.txn(db):
            orders = int(db.execute("SELECT COUNT(*) FROM orders WHERE sku = ?",
                                    (sku,)).fetchone()[0])
            doubt = db.execute("SELECT id, buyer, at, uncertain FROM intents WHERE sku = ? "
                               "ORDER BY at", (sku,)).fetchall()
            missing = initial[sku] - value - orders
            result["in_doubt"] += len(doubt)
            result["uncertain"] += sum(int(row[3]) for row in doubt)
            if not 0 <= missing <= len(doubt):
                result["unresolved"] += len(doubt)
                continue
            for order_id, buyer, at, _uncertain in doubt[:missing]:
                db.execute("INSERT INTO orders (id, sku, buyer, token, lock_wait_ms, sold_at) "
                           "VALUES (?, ?, ?, 0, 0, ?)", (order_id, sku, buyer, at))
            db.execute("DELETE FROM intents WHERE sku = ?", (sku,))
            result["applied"] += missing
    return result
