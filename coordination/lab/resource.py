"""The protected resource of the lock scenarios: an inventory in SQLite, shared by all
worker processes, that records every write it receives.

``fenced=True`` is how a resource should use fencing tokens: it remembers the largest
token it has seen for a SKU, on reads and writes, and refuses older ones. ``fenced=False`` applies
every write: the negative control, which must show the violation a paused holder causes.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


class Inventory:
    def __init__(self, path: str | Path, fenced: bool = True) -> None:
        self.path = str(path)
        self.fenced = fenced
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, qty INTEGER, token INTEGER);
            CREATE TABLE IF NOT EXISTS writes (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, sku TEXT, pid INTEGER, token INTEGER,
                qty INTEGER, applied INTEGER, at REAL);
            """
        )

    def close(self) -> None:
        self._db.close()

    def create(self, sku: str, qty: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO stock VALUES (?, ?, -1)", (sku, qty))

    def read(self, sku: str, token: int | None = None) -> int | None:
        """The stock of ``sku``. Fenced, a read registers its token, and a token smaller
        than one already seen gets None: a holder that lost its lock while it was
        between its read and its write must not act on what it read."""
        if not self.fenced or token is None:
            row = self._db.execute("SELECT qty FROM stock WHERE sku = ?", (sku,)).fetchone()
            return int(row[0])
        self._db.execute("BEGIN IMMEDIATE")
        try:
            qty, last = self._db.execute(
                "SELECT qty, token FROM stock WHERE sku = ?", (sku,)).fetchone()
            if token < last:
                self._db.execute("COMMIT")
                return None
            self._db.execute("UPDATE stock SET token = ? WHERE sku = ?", (token, sku))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return int(qty)

    def write(self, sku: str, qty: int, token: int, pid: int) -> bool:
        """Set the stock of ``sku`` to ``qty``; True if applied. Fenced, only a token at
        least as large as every token seen (by reads and writes) is applied."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            (last,) = self._db.execute("SELECT token FROM stock WHERE sku = ?", (sku,)).fetchone()
            applied = not self.fenced or token >= last
            if applied:
                self._db.execute("UPDATE stock SET qty = ?, token = MAX(token, ?) WHERE sku = ?",
                                 (qty, token, sku))
            self._db.execute(
                "INSERT INTO writes (sku, pid, token, qty, applied, at) VALUES (?, ?, ?, ?, ?, ?)",
                (sku, pid, token, qty, int(applied), time.monotonic()),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return applied

    def writes(self, sku: str) -> list[tuple[int, int, int, bool]]:
        """``(pid, token, qty, applied)`` of every write to ``sku``, in arrival order."""
        rows = self._db.execute(
            "SELECT pid, token, qty, applied FROM writes WHERE sku = ? ORDER BY seq", (sku,)
        ).fetchall()
        return [(pid, token, qty, bool(applied)) for pid, token, qty, applied in rows]
