"""The flash sale's own storage: one SQLite file shared by every demo process.

Two parts:

* :class:`FencedStock`, the resource the SKU locks protect: per SKU a quantity and the
  largest fencing token it has accepted. Every access carries the caller's token; one
  smaller than the largest accepted for that SKU is refused (:class:`StaleToken`), so a
  buyer that lost its lock (paused, cut off) cannot overwrite what a newer holder wrote.
  The read and the write of one hold share its token.
* :class:`Ledger`, the record the verdict is computed from: the orders (written in the
  same transaction as the stock decrement, with an outbox flag for their queue tasks;
  in cart mode an order has several units, see :mod:`.cart`),
  the completed order steps keyed by (order, step) so a redelivered step is counted and
  absorbed instead of done twice, and any step done before its predecessor.

SQLite in WAL mode: transactions are atomic and survive a SIGKILLed writer.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STEPS = ("created", "paid", "shipped")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    sku TEXT PRIMARY KEY, initial INTEGER NOT NULL, qty INTEGER NOT NULL,
    fence INTEGER NOT NULL, min_qty INTEGER NOT NULL,
    writes INTEGER NOT NULL DEFAULT 0, fenced_off INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, sku TEXT NOT NULL, units INTEGER NOT NULL DEFAULT 1,
    buyer INTEGER NOT NULL, token INTEGER NOT NULL, lock_wait_ms REAL NOT NULL,
    sold_at REAL NOT NULL, enqueued INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS orders_outbox ON orders (enqueued, buyer);
CREATE TABLE IF NOT EXISTS steps (
    order_id TEXT NOT NULL, step TEXT NOT NULL, seq INTEGER NOT NULL, done_at REAL NOT NULL,
    worker TEXT NOT NULL, deliveries INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (order_id, step));
CREATE TABLE IF NOT EXISTS repeats (order_id TEXT NOT NULL, step TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS violations (
    kind TEXT NOT NULL, order_id TEXT, detail TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS errors (who TEXT NOT NULL, text TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ready (role TEXT NOT NULL, slot INTEGER NOT NULL,
    PRIMARY KEY (role, slot));
"""


class StaleToken(Exception):
    """The store refused an access: a newer lock holder has used this SKU since."""


def open_db(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit, see :func:`txn`)."""
    db = sqlite3.connect(str(path), timeout=60.0, isolation_level=None)
    db.execute("PRAGMA busy_timeout=60000")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL: still atomic across a SIGKILL
    return db


@contextlib.contextmanager
def txn(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (taking SQLite's write lock at the start)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def create(path: str | Path, skus: dict[str, int]) -> None:
    """A new store with ``skus`` (name -> units)."""
    db = open_db(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        with txn(db):
            for sku, units in skus.items():
                # ZooKeeper tokens start at 0, so the first accepted one must be > -1.
                db.execute("INSERT INTO stock (sku, initial, qty, fence, min_qty) "
                           "VALUES (?, ?, ?, -1, ?)", (sku, units, units, units))
    finally:
        db.close()


@dataclass(frozen=True)
class Order:
    id: str
    sku: str
    buyer: int
    token: int
    lock_wait_ms: float


class FencedStock:
    """Per-SKU stock that checks fencing tokens (see the module docstring).

    The buyer's purchase is ``qty = read(sku, token)`` then ``sell(sku, token, qty,
    order)`` while holding the SKU's lock: a read-modify-write that only the lock makes
    safe, and the tokens make safe even when a lock hold is lost.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def _admit(self, sku: str, token: int) -> bool:
        """Inside a transaction: True and remember ``token`` if it is not older than
        every token accepted for ``sku``; else count the refusal and return False."""
        (fence,) = self.db.execute("SELECT fence FROM stock WHERE sku = ?", (sku,)).fetchone()
        if token < fence:
            self.db.execute("UPDATE stock SET fenced_off = fenced_off + 1 WHERE sku = ?", (sku,))
            return False
        self.db.execute("UPDATE stock SET fence = ? WHERE sku = ?", (token, sku))
        return True

    def read(self, sku: str, token: int) -> int:
        """Units left of ``sku``. ``StaleToken`` if a newer holder has been here."""
        with txn(self.db):
            admitted = self._admit(sku, token)
            (qty,) = self.db.execute("SELECT qty FROM stock WHERE sku = ?", (sku,)).fetchone()
        if not admitted:
            raise StaleToken(f"token {token} for {sku} is older than the last accepted")
        return int(qty)

    def sell(self, sku: str, token: int, seen_qty: int, order: Order) -> None:
        """Write ``seen_qty - 1`` and record ``order``, atomically. ``StaleToken`` (and
        nothing written) if a newer holder has been here since our read."""
        with txn(self.db):
            admitted = self._admit(sku, token)
            if admitted:
                new = seen_qty - 1
                self.db.execute(
                    "UPDATE stock SET qty = ?, min_qty = MIN(min_qty, ?), writes = writes + 1 "
                    "WHERE sku = ?", (new, new, sku))
                self.db.execute(
                    "INSERT INTO orders (id, sku, buyer, token, lock_wait_ms, sold_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (order.id, sku, order.buyer, token, order.lock_wait_ms, time.time()))
        if not admitted:
            raise StaleToken(f"token {token} for {sku} is older than the last accepted")

    def remaining(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT sku, qty FROM stock ORDER BY sku").fetchall())


class Ledger:
    """Orders, their outbox flag, step completions and violations."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    # --- meta: the sale's schedule, readiness -------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        with txn(self.db):
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def mark_ready(self, role: str, slot: int) -> None:
        with txn(self.db):
            self.db.execute("INSERT OR IGNORE INTO ready (role, slot) VALUES (?, ?)", (role, slot))

    def ready_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM ready").fetchone()[0])

    def record_error(self, who: str, text: str) -> None:
        """An unexpected exception in a demo process (it retried and went on)."""
        with txn(self.db):
            self.db.execute("INSERT INTO errors (who, text, at) VALUES (?, ?, ?)",
                            (who, text[:2000], time.time()))

    def errors(self) -> list[tuple[str, str]]:
        return [(str(a), str(b)) for a, b in
                self.db.execute("SELECT who, text FROM errors ORDER BY at").fetchall()]

    # --- the outbox: orders whose queue tasks may not be stored yet ---------------------

    def unenqueued(self, buyer: int | None = None) -> list[tuple[str, str]]:
        """``(order id, sku)`` of orders not yet marked enqueued (of one buyer slot)."""
        if buyer is None:
            rows = self.db.execute("SELECT id, sku FROM orders WHERE enqueued = 0 ORDER BY sold_at")
        else:
            rows = self.db.execute("SELECT id, sku FROM orders WHERE enqueued = 0 AND buyer = ? "
                                   "ORDER BY sold_at", (buyer,))
        return [(str(a), str(b)) for a, b in rows.fetchall()]

    def mark_enqueued(self, order_id: str) -> None:
        with txn(self.db):
            self.db.execute("UPDATE orders SET enqueued = 1 WHERE id = ?", (order_id,))

    # --- steps ---------------------------------------------------------------------------

    def complete(self, order_id: str, step: str, worker: str) -> str:
        """Record that ``step`` of ``order_id`` was done: ``"done"``, or
        ``"redelivery"`` if it was recorded before (nothing is done twice), or
        ``"out-of-order"`` if its predecessor was not done yet (recorded as a
        violation)."""
        with txn(self.db):
            row = self.db.execute("SELECT 1 FROM steps WHERE order_id = ? AND step = ?",
                                  (order_id, step)).fetchone()
            if row is not None:
                self.db.execute("UPDATE steps SET deliveries = deliveries + 1 "
                                "WHERE order_id = ? AND step = ?", (order_id, step))
                return "redelivery"
            result = "done"
            index = STEPS.index(step)
            if index > 0 and self.db.execute(
                "SELECT 1 FROM steps WHERE order_id = ? AND step = ?", (order_id, STEPS[index - 1])
            ).fetchone() is None:
                result = "out-of-order"
                self.db.execute("INSERT INTO violations (kind, order_id, detail, at) "
                                "VALUES ('out-of-order', ?, ?, ?)",
                                (order_id, f"{step} before {STEPS[index - 1]}", time.time()))
            if self.db.execute("SELECT 1 FROM orders WHERE id = ?", (order_id,)).fetchone() is None:
                result = "unknown-order"
                self.db.execute("INSERT INTO violations (kind, order_id, detail, at) "
                                "VALUES ('unknown-order', ?, ?, ?)", (order_id, step, time.time()))
            (seq,) = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM steps").fetchone()
            self.db.execute("INSERT INTO steps (order_id, step, seq, done_at, worker) "
                            "VALUES (?, ?, ?, ?, ?)", (order_id, step, seq, time.time(), worker))
            return result

    def repeated(self, order_id: str, step: str) -> None:
        """The order's record refused ``step``: it was past it already (a redelivery)."""
        with txn(self.db):
            self.db.execute("INSERT INTO repeats (order_id, step, at) VALUES (?, ?, ?)",
                            (order_id, step, time.time()))

    # --- reading it all back --------------------------------------------------------------

    def order_ids(self) -> list[str]:
        return [str(row[0]) for row in self.db.execute("SELECT id FROM orders ORDER BY sold_at")]

    def counts(self) -> dict[str, int]:
        """Live counters for the progress display (cheap queries)."""
        q = self.db.execute
        stock = q("SELECT COALESCE(SUM(initial), 0), COALESCE(SUM(qty), 0), "
                  "COALESCE(SUM(fenced_off), 0) FROM stock").fetchone()
        steps = q("SELECT COUNT(*), COALESCE(SUM(deliveries - 1), 0) FROM steps").fetchone()
        return {
            "stock": int(stock[0]),
            "left": int(stock[1]),
            "fenced_off": int(stock[2]),
            "sold": int(q("SELECT COALESCE(SUM(units), 0) FROM orders").fetchone()[0]),
            "orders": int(q("SELECT COUNT(*) FROM orders").fetchone()[0]),
            "steps_done": int(steps[0]),
            "redeliveries": int(steps[1]),
            "orders_done": int(q("SELECT COUNT(*) FROM steps WHERE step = ?",
                                 (STEPS[-1],)).fetchone()[0]),
        }

    def audit(self) -> dict[str, object]:
        """Everything the verdict needs, from the store's point of view (``sold``:
        units, ``orders``: orders)."""
        q = self.db.execute
        initial, left, min_qty, fenced_off = q(
            "SELECT COALESCE(SUM(initial), 0), COALESCE(SUM(qty), 0), COALESCE(MIN(min_qty), 0), "
            "COALESCE(SUM(fenced_off), 0) FROM stock").fetchone()
        orders, sold = (int(n) for n in q(
            "SELECT COUNT(*), COALESCE(SUM(units), 0) FROM orders").fetchone())
        complete = int(q(
            "SELECT COUNT(*) FROM (SELECT order_id FROM steps WHERE order_id IN "
            "(SELECT id FROM orders) GROUP BY order_id HAVING COUNT(*) = ?)", (len(STEPS),)
        ).fetchone()[0])
        steps_done, redeliveries = q(
            "SELECT COUNT(*), COALESCE(SUM(deliveries - 1), 0) FROM steps").fetchone()
        # Per order, the first completions must come in step order (seq is global).
        disorder = int(q(
            "SELECT COUNT(*) FROM steps a JOIN steps b ON a.order_id = b.order_id "
            "WHERE a.step = ? AND b.step = ? AND a.seq > b.seq", (STEPS[0], STEPS[1])
        ).fetchone()[0]) + int(q(
            "SELECT COUNT(*) FROM steps a JOIN steps b ON a.order_id = b.order_id "
            "WHERE a.step = ? AND b.step = ? AND a.seq > b.seq", (STEPS[1], STEPS[2])
        ).fetchone()[0])
        violations = dict(q("SELECT kind, COUNT(*) FROM violations GROUP BY kind").fetchall())
        waits = [float(w) for (w,) in q("SELECT lock_wait_ms FROM orders ORDER BY lock_wait_ms")]
        first_sale, last_sale = q("SELECT MIN(sold_at), MAX(sold_at) FROM orders").fetchone()
        return {
            "initial": int(initial), "left": int(left), "min_qty": int(min_qty),
            "fenced_off": int(fenced_off), "sold": sold, "orders": orders, "complete": complete,
            "repeats": int(q("SELECT COUNT(*) FROM repeats").fetchone()[0]),
            "steps_done": int(steps_done), "redeliveries": int(redeliveries),
            "disorder": disorder, "out_of_order": int(violations.get("out-of-order", 0)),
            "unknown_orders": int(violations.get("unknown-order", 0)),
            "lock_waits_ms": waits, "first_sale": first_sale, "last_sale": last_sale,
        }
