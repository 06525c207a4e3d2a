"""The flash-sale demo: buyers race for a limited stock, order workers process each
order's steps through the work queue, and a chaos monkey kills cluster nodes and
processes meanwhile. At the end, a verdict checks the invariants.

The parts, each a separate OS process, and where they live:

* **Buyers** (``--buyers``, :mod:`.roles`): loop until every SKU is sold out: reserve a
  cart of 1-3 SKUs in the inventory recipe and confirm, release or abandon it
  (:mod:`.cart`); or, with the other stock stores, take one unit of a random SKU
  (:mod:`.stock`: atomic counters, or a fenced SQLite table behind the SKU locks).
  Each order's three steps (``created``, ``paid``, ``shipped``) go on the queue with
  the order id as ordering key and as part of each task id. Orders whose tasks were not
  stored yet (the buyer was killed in between) sit in an outbox and are put again by
  the buyer's successor, or at the end of the sale.
* **Order workers** (``--workers``, :mod:`.roles`): claim tasks, move the order's state
  machine record one step (:mod:`.orders`), and record each step as done, keyed by
  (order, step) (:mod:`.store`): a step that is delivered again (its
  worker died before the ack) is counted as a redelivery, not done twice; a step whose
  predecessor is not done yet is a violation.
* **The orchestrator** (:class:`FlashSale` here, in the ``coordination`` process):
  starts the others and respawns what dies (:mod:`.supervisor`), opens the sale once
  they are ready, runs the chaos monkey (:mod:`.monkey`, made of
  :mod:`coordination.lab.nemesis` faults), closes the sale when the stock is gone, waits
  for the queue to drain (with a deadline) and computes the :class:`~.verdict.Report`
  (:mod:`.verdict`).

Child processes run ``python -m coordination.lab.demo.roles buyer|worker ...``
(``python -m coordination.lab.demo.flash_sale buyer|worker ...`` does the same).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import coordination
from coordination.errors import CoordinationError
from coordination.lab.cluster import LocalCluster

from . import cart, orders, store
from .failover import retry
from .monkey import ChaosMonkey
from .roles import child_main, flush_outbox
from .settings import HOLD_TTL, MAX_ATTEMPTS, SESSION_TTL, Settings, queue_name
from .stock import create_counters, reconcile
from .store import Ledger
from .supervisor import Supervisor
from .verdict import Check, Outcome, Report, judge, plural

__all__ = ["Check", "FlashSale", "Progress", "Report", "Settings"]


@dataclass
class Progress:
    phase: str
    elapsed: float
    stock: int
    sold: int
    orders_done: int
    steps_done: int
    redeliveries: int
    fenced_off: int
    faults: int
    buyers_alive: int
    workers_alive: int
    #: Per node: "leader", "up", "down" or "paused" (empty without a local cluster).
    nodes: list[str] = field(default_factory=list)
    stock_store: str = "cart"


class FlashSale:
    """Runs one sale; see the module docstring. ``cluster``: the local cluster behind
    ``settings.url`` (needed for node faults; None: only process faults).
    ``on_event(text)`` gets one line per notable event, ``on_progress(Progress)`` a
    snapshot about four times a second."""

    def __init__(self, settings: Settings, cluster: LocalCluster | None = None,
                 on_event: Callable[[str], None] = lambda _text: None,
                 on_progress: Callable[[Progress], None] = lambda _p: None) -> None:
        self.settings = settings
        self.cluster = cluster
        self.on_event = on_event
        self.on_progress = on_progress
        self.run = uuid.uuid4().hex[:8]
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"flash-sale-{self.run}-"))
        self.db_path = self.run_dir / "store.sqlite"
        self.supervisor = Supervisor(settings, self.run, self.run_dir, self.db_path, on_event)
        self.monkey = ChaosMonkey(settings, cluster, self.supervisor, on_event)
        self._started = time.monotonic()
        self._phase = "starting"
        self._open_at = 0.0
        self._closed_at = 0.0
        self._drained_at = 0.0
        self._queue_stats: dict[str, int] | None = None
        self._leader: int | None = None
        self._leader_checked = 0.0
        self._stalled = 0  # units left when the sale hit its time limit
        self._counters: dict[str, coordination.Counter] = {}
        self._left = settings.stock  # counter mode: the counters' sum, last read
        self._reconciled: dict[str, int] | None = None
        self._final: dict[str, int] = {}  # counter mode: each SKU's final counter value
        self._inventory: coordination.Inventory | None = None  # cart mode
        self._holds_settled: dict[str, int] | None = None  # cart mode: settle_unknown's

    def run_sale(self) -> Report:
        """Run the whole sale; the report. Every child process is stopped on return."""
        try:
            return self._run()
        except BaseException:
            if not os.environ.get("COORDINATION_DEMO_KEEP"):
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        finally:
            self.monkey.stop(timeout=120)
            self.supervisor.kill_all()

    # --- the phases --------------------------------------------------------------------

    def _run(self) -> Report:
        s = self.settings
        store.create(self.db_path, s.sku_units())
        db = store.open_db(self.db_path)
        ledger = Ledger(db)
        with coordination.connect(s.url, session_ttl=SESSION_TTL) as coord:
            queue = coord.queue(queue_name(self.run), max_attempts=MAX_ATTEMPTS)
            if s.carts:
                self._inventory = cart.create_inventory(coord, db, self.run, s.sku_units())
            elif not s.fenced:
                self._counters = create_counters(coord, db, s.sku_units())
            self._start(ledger)
            self._sell(ledger)
            self._close(ledger, queue)
            self._drain(ledger, queue)
            self._progress(ledger)
            records = retry(lambda: orders.audit(coord, self.run, ledger.order_ids()), 60.0)
            carts = None
            if self._inventory is not None:
                inventory = self._inventory
                carts = retry(lambda: cart.audit(inventory, db, s.sku_units(), s.sku_units()), 60.0)
                carts["settled"] = self._holds_settled
            report = judge(ledger, Outcome(
                s, self.run_dir, self._open_at, self._closed_at, self._drained_at,
                self._queue_stats, self.monkey.counts(), list(self.monkey.errors),
                self.supervisor.crashes, self.monkey.healthy(), self._stalled, self._final,
                self._reconciled, records, carts))
        db.close()
        report.keep = report.keep or not report.ok or bool(os.environ.get("COORDINATION_DEMO_KEEP"))
        if not report.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return report

    def _start(self, ledger: Ledger) -> None:
        """Start the children; wait (up to 120 s) until each said it is ready."""
        s = self.settings
        for slot in range(s.workers):
            self.supervisor.spawn("worker", slot)
        for slot in range(s.buyers):
            self.supervisor.spawn("buyer", slot)
        self._phase = "starting"
        deadline = time.monotonic() + 120
        while ledger.ready_count() < s.buyers + s.workers and time.monotonic() < deadline:
            self._tick(ledger, respawn_buyers=True)

    def _sell(self, ledger: Ledger) -> None:
        """Open the sale (and the chaos); return once sold out or at the time limit."""
        s = self.settings
        self._open_at = time.monotonic()
        ledger.set_meta("open_at", str(time.time()))
        self.monkey.sale_open = True
        self._phase = "sale"
        self.on_event(f"sale opens: {s.stock} units of {s.skus} SKUs, {s.buyers} buyers, "
                      f"{s.workers} order workers, chaos {'on' if s.chaos else 'off'}")
        if s.chaos:
            self.monkey.start()
        close_at = self._open_at + s.sale_limit
        while True:
            self._tick(ledger, respawn_buyers=True)
            counts = ledger.counts()
            left = (counts["left"] if s.fenced else self._inventory_left() if s.carts
                    else self._counters_left())
            if left == 0:
                self.on_event(f"sold out: {counts['sold']} units sold")
                break
            if time.monotonic() >= close_at:
                self._stalled = left
                self.on_event(f"sale closed at its time limit with {left} units left")
                break
        self._closed_at = time.monotonic()
        self.monkey.sale_open = False

    def _close(self, ledger: Ledger, queue: coordination.Queue) -> None:
        """Close the sale: end the chaos, heal the cluster, stop the buyers, settle the
        purchases in doubt (counter mode), put what the outbox still holds."""
        ledger.set_meta("closed", str(time.time()))
        self._phase = "closing"
        self.monkey.stop(timeout=180)
        self.monkey.heal()
        self.supervisor.stop("buyer", polite=3.0, grace=10.0)
        if self.settings.carts:
            self._settle_holds(ledger.db)
        elif not self.settings.fenced:
            self._reconcile(ledger.db)
        flushed = retry(lambda: flush_outbox(ledger, queue, None), 60.0)
        if flushed:
            self.on_event(f"put the steps of {flushed} orders whose buyer died before "
                          "putting them")

    def _drain(self, ledger: Ledger, queue: coordination.Queue) -> None:
        """Wait (up to ``drain_timeout``) until every order is done and the queue is
        empty, then stop the workers."""
        s = self.settings
        self._phase = "draining"
        drain_deadline = time.monotonic() + s.drain_timeout
        while time.monotonic() < drain_deadline:
            self._tick(ledger, respawn_buyers=False)
            counts = ledger.counts()
            if counts["orders_done"] >= counts["orders"]:
                stats = retry(queue.stats, 30.0)
                if not any(stats.values()):
                    self._queue_stats = stats
                    break
        self._drained_at = time.monotonic()
        self._phase = "done"
        self.supervisor.stop("worker", polite=0.0, grace=10.0)
        if self._queue_stats is None:
            self._queue_stats = retry(queue.stats, 30.0)
            self.on_event(f"the queue did not drain within {s.drain_timeout:.0f}s: "
                          f"{self._queue_stats}")

    # --- the stock counters (counter mode) -------------------------------------------

    def _counters_left(self) -> int:
        """Units left by the counters (the last value read while the cluster fails over)."""
        with contextlib.suppress(CoordinationError):
            self._left = sum(c.value for c in self._counters.values())
        return self._left

    def _reconcile(self, db: sqlite3.Connection) -> None:
        """The buyers stopped: read each counter's final value, settle the purchases in
        doubt against them (:func:`~.stock.reconcile`)."""
        for sku, counter in self._counters.items():
            self._final[sku] = retry(functools.partial(_value_of, counter), 60.0)
        self._reconciled = result = reconcile(db, self._final)
        if result["in_doubt"]:
            self.on_event(f"reconciled {plural(result['in_doubt'], 'purchase')} in doubt "
                          f"against the counters: {result['applied']} applied (recorded as "
                          "orders), the rest never did")

    # --- the inventory (cart mode) ---------------------------------------------------------

    def _inventory_left(self) -> int:
        """Units available or reserved (the last value read while the cluster fails
        over); reading the levels also returns expired holds."""
        assert self._inventory is not None
        inventory = self._inventory
        with contextlib.suppress(CoordinationError):
            self._left = sum(sum(inventory.levels(sku)[:2]) for sku in self.settings.sku_units())
        return self._left

    def _settle_holds(self, db: sqlite3.Connection) -> None:
        """The buyers stopped: wait until every hold ended (the last ones expire within
        ``HOLD_TTL``), then record the end of those whose buyer did not learn it."""
        assert self._inventory is not None
        inventory = self._inventory
        skus = self.settings.sku_units()
        deadline = time.monotonic() + HOLD_TTL + 60.0
        while time.monotonic() < deadline:
            with contextlib.suppress(CoordinationError):
                if not any(inventory.levels(sku)[1] for sku in skus):
                    break
            time.sleep(0.2)  # the next sweep returns what expired meanwhile
        self._holds_settled = result = retry(lambda: cart.settle_unknown(inventory, db), 60.0)
        known = sum(result.values())
        if known:
            self.on_event(f"{plural(known, 'hold')} ended unseen by their buyers: "
                          f"{result['confirmed']} confirmed (now orders), "
                          f"{result['released']} released, {result['expired']} expired")

    # --- supervision and progress ----------------------------------------------------

    def _tick(self, ledger: Ledger, respawn_buyers: bool) -> None:
        """One round of the orchestrator's loops, about four a second: respawn dead
        children (order workers always), count and thaw frozen ones, show progress."""
        self.supervisor.supervise(respawn_buyers=respawn_buyers, respawn_workers=True)
        self.monkey.watch()
        if self.cluster is not None and time.monotonic() - self._leader_checked > 1.0:
            self._leader_checked = time.monotonic()
            self._leader = self.cluster.leader()
        self._progress(ledger)
        time.sleep(0.25)  # the pace of the progress view; children are polled, not awaited

    def _progress(self, ledger: Ledger) -> None:
        counts = ledger.counts()
        nodes: list[str] = []
        if self.cluster is not None:
            for i in range(self.cluster.size):
                nodes.append("paused" if self.cluster.is_paused(i) else
                             "up" if self.cluster.is_running(i) else "down")
            leader = self._leader
            if leader is not None and nodes[leader] == "up":
                nodes[leader] = "leader"
        self.on_progress(Progress(
            self._phase, time.monotonic() - self._started, counts["stock"], counts["sold"],
            counts["orders_done"], counts["steps_done"], counts["redeliveries"],
            counts["fenced_off"], sum(self.monkey.counts().values()),
            len(self.supervisor.alive("buyer")), len(self.supervisor.alive("worker")),
            nodes, self.settings.stock_store))


def _value_of(counter: coordination.Counter) -> int:
    return int(counter.value)


if __name__ == "__main__":
    child_main()
