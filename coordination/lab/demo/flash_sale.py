"""The flash-sale demo: buyers race for a limited stock under SKU locks, order workers
process each order's steps through the work queue, and a chaos monkey kills cluster
nodes and processes meanwhile. At the end, a verdict checks the invariants.

The parts, each a separate OS process:

* **Buyers** (``--buyers``): loop until every SKU is sold out: take one unit of a random
  SKU (see the stock below), then put the order's three steps (``created``, ``paid``,
  ``shipped``) on the queue with the order id as ordering key and as part of each task
  id. Orders whose tasks were not stored yet (the buyer was killed in between) sit in an
  outbox and are put again by the buyer's successor, or at the end of the sale.
* **Order workers** (``--workers``): claim tasks and record each step as done, keyed by
  (order, step): a step that is delivered again (its worker died before the ack) is
  counted as a redelivery, not done twice; a step whose predecessor is not done yet is a
  violation.
* **The orchestrator** (this module's :class:`FlashSale`, in the ``coordination`` process):
  starts the others, opens the sale once they are ready, respawns what dies, runs the
  chaos monkey, closes the sale when the stock is gone, waits for the queue to drain
  (with a deadline) and computes the :class:`Report`.
* **The chaos monkey** (``chaos=True``): in turn SIGKILLs the cluster's leader node, a
  buyer, an order worker, a follower node, and freezes a buyer (SIGSTOP) past its session
  TTL, then thaws it. With the fenced store the buyer freezes while it holds a lock, so
  its next write comes with a stale token and the store refuses it; with the counter it
  freezes between two purchases. A killed node is restarted about a second later and the
  cluster is healthy again before the next node is killed: never two nodes down.

The stock (``stock_store``) is behind :func:`make_stock` and :func:`take_one` only:

* ``"counter"`` (the default): per SKU an atomic counter ``stock/<sku>``
  (:mod:`coordination.recipes.counter`); a purchase is ``add(-1, min=0)``, no lock
  (``BoundExceeded``: sold out). The decrement and the order's SQLite row cannot be one
  transaction, so the buyer first writes an *intent*, and replaces it by the order once
  ``add`` returned. An intent left behind (the buyer was killed in between, or
  ``add`` raised ``UncertainOutcome``) is in doubt: at the close the orchestrator
  reconciles each SKU against its counter (the counter applies an update at most once,
  so ``initial - value - orders`` of the SKU's intents applied) and records that many of
  them as orders; the rest never applied.
* ``"fenced"``: take the SKU's lock, read the stock with the lock's fencing token, write
  ``stock - 1`` with the same token and record the order in the same transaction
  (:class:`~.store.FencedStock`), release.

Child processes run ``python -m coordination.lab.demo.flash_sale buyer|worker ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coordination
from coordination.errors import (
    AlreadyAcknowledged,
    BackendUnavailable,
    BoundExceeded,
    ClaimLost,
    ClientClosed,
    CoordinationError,
    LockLost,
    NotHeld,
    UncertainOutcome,
)
from coordination.lab.cluster import LocalCluster

from . import store
from .store import STEPS, FencedStock, Ledger, Order, StaleToken

#: Session TTL of every demo client: short, so a killed process's lock and task claims
#: are freed within about two seconds.
SESSION_TTL = 2.0
#: Attempts before a task is dead-lettered (chaos makes claims get lost now and then).
MAX_ATTEMPTS = 50
LOCK_TIMEOUT = 10.0
STOCK_STORES = ("counter", "fenced")


def lock_name(run: str, sku: str) -> str:
    return f"flash-sale/{run}/{sku}"


def queue_name(run: str) -> str:
    return f"flash-sale/{run}/orders"


def counter_name(sku: str) -> str:
    return f"stock/{sku}"


# --- the stock: the only place that knows how it is stored ------------------------------


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


# --- child processes ----------------------------------------------------------------------


def _log(text: str) -> None:
    """A line in this child's log file (its stderr)."""
    print(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {text}",
          file=sys.stderr, flush=True)


def _orphaned(parent: int) -> bool:
    return os.getppid() != parent


def _connect_retrying(url: str, parent: int) -> coordination.Coordinator:
    """Connect, retrying while the cluster fails over (the demo never gives up)."""
    while True:
        try:
            return coordination.connect(url, session_ttl=SESSION_TTL)
        except coordination.errors.BackendUnavailable:
            if _orphaned(parent):
                raise SystemExit(0) from None
            time.sleep(0.2)


def _put_order(queue: coordination.Queue, order_id: str, sku: str) -> None:
    """Put the order's steps: same key (the order id), so they are handed out one at a
    time in this order; ids derived from the order, so a repeated put stores nothing."""
    for step in STEPS:
        data = json.dumps({"order": order_id, "step": step, "sku": sku})
        queue.put(data, key=order_id, id=f"{order_id}.{step}")


def _flush_outbox(ledger: Ledger, queue: coordination.Queue, buyer: int | None) -> int:
    flushed = 0
    for order_id, sku in ledger.unenqueued(buyer):
        _put_order(queue, order_id, sku)
        ledger.mark_enqueued(order_id)
        flushed += 1
    return flushed


def buyer_main(args: argparse.Namespace) -> None:
    parent = os.getppid()
    freeze = threading.Event()  # set by SIGUSR1: freeze (holding the next lock if fenced)
    signal.signal(signal.SIGUSR1, lambda *_: freeze.set())
    rng = random.Random()
    db = store.open_db(args.db)
    ledger = Ledger(db)
    with _connect_retrying(args.url, parent) as coord:
        stock = make_stock(coord, db, args.stock_store)
        queue = coord.queue(queue_name(args.run), max_attempts=MAX_ATTEMPTS)
        open_skus = sorted(FencedStock(db).remaining())  # the SKUs (the table lists them)
        locks = {sku: coord.lock(lock_name(args.run, sku), identifier=f"buyer-{args.slot} "
                                 f"pid {os.getpid()}") for sku in open_skus}
        ledger.mark_ready("buyer", args.slot)
        while ledger.meta("open_at") is None:
            if _orphaned(parent):
                return
            time.sleep(0.05)

        def frozen() -> None:
            """A stop-the-world pause (GC, swapping, SIGSTOP): fenced, while holding the
            lock; counter, between two purchases."""
            if freeze.is_set():
                freeze.clear()
                os.kill(os.getpid(), signal.SIGSTOP)  # the orchestrator sends SIGCONT

        while open_skus and ledger.meta("closed") is None and not _orphaned(parent):
            try:
                _flush_outbox(ledger, queue, args.slot)
                if args.think > 0:
                    time.sleep(rng.expovariate(1.0 / args.think))
                sku = rng.choice(open_skus)
                if isinstance(stock, CounterStock):
                    frozen()
                    order = Order(f"o-{uuid.uuid4().hex[:12]}", sku, args.slot, 0, 0.0)
                    try:
                        sold = take_one(stock, sku, None, order)
                    except UncertainOutcome as exc:
                        # Re-read nothing: the intent stays, reconciled at the close.
                        _log(f"in doubt, left to the reconciliation: {exc}")
                        continue
                    if not sold:
                        open_skus.remove(sku)
                        continue
                    _put_order(queue, order.id, sku)
                    ledger.mark_enqueued(order.id)
                    continue
                lock = locks[sku]
                started = time.monotonic()
                if not lock.acquire(timeout=LOCK_TIMEOUT):
                    _log(f"lock {sku} not acquired within {LOCK_TIMEOUT}s")
                    continue
                waited_ms = (time.monotonic() - started) * 1000
                if waited_ms > 1000:
                    _log(f"lock {sku} acquired after {waited_ms:.0f} ms")
                order = Order(f"o-{uuid.uuid4().hex[:12]}", sku, args.slot, lock.token or 0,
                              waited_ms)
                try:
                    sold = take_one(stock, sku, lock, order, before_write=frozen)
                except StaleToken as exc:
                    _log(f"refused by the store: {exc}")
                    continue  # refused: we were not the holder any more; try again
                finally:
                    with contextlib.suppress(LockLost, NotHeld, CoordinationError):
                        lock.release()
                if not sold:
                    open_skus.remove(sku)
                    continue
                _put_order(queue, order.id, sku)
                ledger.mark_enqueued(order.id)
            except (CoordinationError, sqlite3.OperationalError) as exc:
                _log(f"{type(exc).__name__}: {exc}")
                time.sleep(0.1)  # failover in progress: try again
            except Exception as exc:  # noqa: BLE001 - a bug below us: report it, go on
                _unexpected(ledger, f"buyer-{args.slot}", exc)
        with contextlib.suppress(CoordinationError):
            _flush_outbox(ledger, queue, args.slot)


def worker_main(args: argparse.Namespace) -> None:
    parent = os.getppid()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    rng = random.Random()
    ledger = Ledger(store.open_db(args.db))
    name = f"worker-{args.slot}"
    with _connect_retrying(args.url, parent) as coord:
        queue = coord.queue(queue_name(args.run), max_attempts=MAX_ATTEMPTS)
        ledger.mark_ready("worker", args.slot)
        while not stopping.is_set() and not _orphaned(parent):
            try:
                task = queue.get(timeout=1.0)
            except CoordinationError as exc:
                _log(f"get: {type(exc).__name__}: {exc}")
                time.sleep(0.1)
                continue
            except Exception as exc:  # noqa: BLE001 - a bug below us: report it, go on
                _unexpected(ledger, name, exc)
                continue
            if task is None:
                continue
            message = json.loads(task.data)
            time.sleep(rng.uniform(0.001, 0.005))  # the step's work
            ledger.complete(message["order"], message["step"], name)
            _ack(task, ledger, name)


def _unexpected(ledger: Ledger, who: str, exc: Exception) -> None:
    """An exception the library should not let out: log its traceback, record it for
    the report, and carry on as after a failover."""
    _log("unexpected " + "".join(traceback.format_exception(exc)))
    with contextlib.suppress(sqlite3.Error):
        ledger.record_error(who, f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
    time.sleep(0.1)


def _ack(task: coordination.Task, ledger: Ledger, who: str) -> None:
    """Ack, retrying through a failover. A lost claim is fine: the step will be
    delivered again and counted as a redelivery. If the servers stay unreachable,
    exit: our session ends and the task is handed to another worker."""
    deadline = time.monotonic() + 30.0
    while True:
        try:
            task.ack()
            return
        except (ClaimLost, AlreadyAcknowledged):
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise
            if not isinstance(exc, CoordinationError):
                _unexpected(ledger, who, exc)
            time.sleep(0.1)


def child_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m coordination.lab.demo.flash_sale")
    parser.add_argument("role", choices=["buyer", "worker"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--think", type=float, default=0.0, help="mean pause between purchases")
    parser.add_argument("--stock-store", choices=STOCK_STORES, default="counter")
    args = parser.parse_args(argv)
    (buyer_main if args.role == "buyer" else worker_main)(args)


# --- the orchestrator ---------------------------------------------------------------------


@dataclass
class Settings:
    url: str
    stock: int = 500
    skus: int = 4
    buyers: int = 16
    workers: int = 4
    chaos: bool = True
    #: The sale is paced to sell out in about this many seconds (0: as fast as possible).
    duration: float = 20.0
    #: Seconds allowed for the queue to drain after the sale closed.
    drain_timeout: float = 90.0
    #: "counter" (atomic counters) or "fenced" (SKU locks + fenced SQLite store).
    stock_store: str = "counter"

    def __post_init__(self) -> None:
        for name in ("stock", "skus", "buyers", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.skus > self.stock:
            raise ValueError("need at least one unit per SKU (skus <= stock)")
        if not math.isfinite(self.duration) or self.duration < 0:
            raise ValueError("duration must be >= 0 seconds")
        if self.stock_store not in STOCK_STORES:
            raise ValueError(f"stock_store must be one of {', '.join(STOCK_STORES)}")

    @property
    def sale_limit(self) -> float:
        """The sale is closed after this many seconds even if stock is left."""
        return 2 * self.duration + 60.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    checks: list[Check]
    stats: list[tuple[str, str]]
    run_dir: Path
    #: The run dir (child logs, the SQLite store) is kept for a look.
    keep: bool = False

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


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
    stock_store: str = "counter"


@dataclass
class _Child:
    role: str
    slot: int
    proc: subprocess.Popen[bytes]
    chaos_killed: bool = False
    stopped_since: float | None = None
    done: bool = False


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
        self._children: list[_Child] = []
        self._guard = threading.RLock()
        self._started = time.monotonic()
        self._phase = "starting"
        self._sale_open = False
        self._faults: dict[str, int] = {}
        self._crashes = 0
        self._chaos_errors: list[str] = []
        self._chaos_stop = threading.Event()
        self._rng = random.Random()
        self._freeze_for = 2 * SESSION_TTL  # the servers expire the session meanwhile
        self._open_at = 0.0
        self._closed_at = 0.0
        self._drained_at = 0.0
        self._queue_stats: dict[str, int] | None = None
        self._leader: int | None = None
        self._leader_checked = 0.0
        self._stalled = 0  # units left when the sale hit its time limit
        self._fenced = settings.stock_store == "fenced"
        self._counters: dict[str, coordination.Counter] = {}
        self._left = settings.stock  # counter mode: the counters' sum, last read
        self._reconciled: dict[str, int] | None = None
        self._final: dict[str, int] = {}  # counter mode: each SKU's final counter value

    # --- events and progress ---------------------------------------------------------

    def _event(self, text: str) -> None:
        self.on_event(text)

    def _fault(self, kind: str) -> None:
        with self._guard:
            self._faults[kind] = self._faults.get(kind, 0) + 1

    def _progress(self, ledger: Ledger) -> None:
        counts = ledger.counts()
        with self._guard:
            buyers = sum(1 for c in self._children if c.role == "buyer" and c.proc.poll() is None)
            workers = sum(1 for c in self._children if c.role == "worker" and c.proc.poll() is None)
            faults = sum(self._faults.values())
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
            counts["fenced_off"], faults, buyers, workers, nodes, self.settings.stock_store))

    def _refresh_leader(self) -> None:
        if self.cluster is not None and time.monotonic() - self._leader_checked > 1.0:
            self._leader_checked = time.monotonic()
            self._leader = self.cluster.leader()

    # --- child processes ---------------------------------------------------------------

    def _spawn(self, role: str, slot: int) -> _Child:
        think = 0.0
        if role == "buyer" and self.settings.duration > 0:
            # Poisson buyers: together they sell the stock in about `duration` seconds.
            think = self.settings.buyers * self.settings.duration / self.settings.stock
        package_root = str(Path(coordination.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        log = open(self.run_dir / f"{role}-{slot}.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "coordination.lab.demo.flash_sale", role,
                 "--url", self.settings.url, "--db", str(self.db_path), "--run", self.run,
                 "--slot", str(slot), "--think", f"{think:.4f}",
                 "--stock-store", self.settings.stock_store],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # Ctrl-C reaches the orchestrator only
            )
        finally:
            log.close()
        child = _Child(role, slot, proc)
        with self._guard:
            self._children = [c for c in self._children if (c.role, c.slot) != (role, slot)]
            self._children.append(child)
        return child

    def _alive(self, role: str) -> list[_Child]:
        with self._guard:
            return [c for c in self._children if c.role == role and c.proc.poll() is None]

    def _supervise(self, respawn_buyers: bool, respawn_workers: bool) -> None:
        """Respawn dead children; thaw buyers frozen longer than the freeze time."""
        now = time.monotonic()
        with self._guard:
            children = list(self._children)
        for child in children:
            code = child.proc.poll()
            if code is None:
                frozen = _proc_state(child.proc.pid) == "T"
                if frozen and child.stopped_since is None:
                    child.stopped_since = now
                    self._fault("freeze")
                    where = ("while holding its lock" if self._fenced else
                             "between two purchases")
                    self._event(f"chaos: buyer-{child.slot} froze {where} "
                                f"(a {self._freeze_for:.0f}s stop-the-world pause)")
                elif frozen and child.stopped_since is not None \
                        and now - child.stopped_since >= self._freeze_for:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.proc.pid, signal.SIGCONT)
                    child.stopped_since = None
                    self._event(f"chaos: buyer-{child.slot} thawed; its session expired "
                                "meanwhile" + (", so its token is stale now" if self._fenced
                                               else ""))
                continue
            if child.done:
                continue
            respawn = respawn_buyers if child.role == "buyer" else respawn_workers
            if child.role == "buyer" and code == 0:
                child.done = True  # sold out, or the sale closed
                continue
            if not child.chaos_killed:
                self._crashes += 1
                self._event(f"{child.role}-{child.slot} exited with code {code} "
                            f"(log: {self.run_dir / f'{child.role}-{child.slot}.log'})")
            if respawn:
                self._spawn(child.role, child.slot)
            else:
                child.done = True

    def _stop_children(self, role: str, polite: float, grace: float) -> None:
        """Let the children of ``role`` exit by themselves for ``polite`` seconds, then
        SIGTERM them (SIGCONT if frozen), and SIGKILL them after ``grace`` more."""
        with self._guard:
            children = [c for c in self._children if c.role == role]
        deadline = time.monotonic() + polite
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for child in children:
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
                    child.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + grace
        for child in children:
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
            child.done = True

    def _kill_all(self) -> None:
        with self._guard:
            children = list(self._children)
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
            child.proc.wait()

    # --- the chaos monkey --------------------------------------------------------------

    def _chaos_interval(self) -> float:
        """Seconds between two faults: about eight faults in the paced sale."""
        if self.settings.duration <= 0:
            return 2.0
        return max(1.5, min(5.0, self.settings.duration / 8))

    def _chaos_loop(self) -> None:
        """Inject faults during the sale, for at most 1.5 x ``duration`` seconds (at
        least 10 s), then let the sale finish in peace: the run stays bounded."""
        plan = ["leader", "buyer", "worker", "freeze", "follower"]
        if self.cluster is None:
            plan = ["buyer", "worker", "freeze"]
        turn = 0
        until = time.monotonic() + max(10.0, 1.5 * self.settings.duration)
        pause = min(1.0, self._chaos_interval())  # the first fault comes early
        while not self._chaos_stop.wait(pause) and time.monotonic() < until:
            pause = self._chaos_interval()
            kind = plan[turn % len(plan)]
            turn += 1
            try:
                if kind in ("leader", "follower"):
                    self._kill_node(kind == "leader")
                else:
                    self._hit_process(kind)
            except Exception as exc:  # noqa: BLE001 - reported in the verdict
                self._chaos_errors.append(f"{kind}: {exc}".splitlines()[0])
                self._event(f"chaos: {kind} fault failed: {str(exc).splitlines()[0]}")

    def _kill_node(self, leader: bool) -> None:
        cluster = self.cluster
        assert cluster is not None
        cluster.wait_healthy(timeout=60)  # never a second node down
        current = cluster.leader()
        if leader and current is not None:
            target = current
        else:
            followers = [i for i in range(cluster.size) if i != current and cluster.is_running(i)]
            if not followers:
                return
            target = self._rng.choice(followers)
        role = "the leader" if target == current else "a follower"
        cluster.kill(target)
        self._fault("leader" if target == current else "node")
        self._event(f"chaos: SIGKILL {cluster.backend} node {target} ({role})")
        self._chaos_stop.wait(1.0)
        started = time.monotonic()
        cluster.restart(target, wait=True, timeout=60)
        cluster.wait_healthy(timeout=60)
        self._event(f"chaos: node {target} restarted, serving again after "
                    f"{time.monotonic() - started:.1f}s")

    def _hit_process(self, kind: str) -> None:
        role = "worker" if kind == "worker" else "buyer"
        victims = [c for c in self._alive(role) if c.stopped_since is None]
        if not victims or (role == "buyer" and not self._sale_open):
            return
        victim = self._rng.choice(victims)
        if kind == "freeze":
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim.proc.pid, signal.SIGUSR1)  # counted once it has frozen
            return
        victim.chaos_killed = True
        victim.proc.kill()
        victim.proc.wait()
        self._fault(role)
        self._event(f"chaos: SIGKILL {role}-{victim.slot} (pid {victim.proc.pid}); respawning it")

    # --- the run -----------------------------------------------------------------------

    def run_sale(self) -> Report:
        """Run the whole sale; the report. Every child process is stopped on return."""
        chaos = threading.Thread(target=self._chaos_loop, name="chaos-monkey", daemon=True)
        try:
            return self._run(chaos)
        except BaseException:
            if not os.environ.get("COORDINATION_DEMO_KEEP"):
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        finally:
            self._chaos_stop.set()
            if chaos.is_alive():
                chaos.join(timeout=120)
            self._kill_all()

    def _skus(self) -> dict[str, int]:
        s = self.settings
        base, extra = divmod(s.stock, s.skus)
        return {f"sku-{i + 1}": base + (1 if i < extra else 0) for i in range(s.skus)}

    def _run(self, chaos: threading.Thread) -> Report:
        s = self.settings
        store.create(self.db_path, self._skus())
        db = store.open_db(self.db_path)
        ledger = Ledger(db)
        with coordination.connect(s.url, session_ttl=SESSION_TTL) as coord:
            queue = coord.queue(queue_name(self.run), max_attempts=MAX_ATTEMPTS)
            if not self._fenced:
                db.executescript(_INTENTS_SCHEMA)
                for sku, units in self._skus().items():
                    self._counters[sku] = coord.counter(counter_name(sku))
                    _retry(functools.partial(self._counters[sku].set, units), 30.0)
            for slot in range(s.workers):
                self._spawn("worker", slot)
            for slot in range(s.buyers):
                self._spawn("buyer", slot)
            self._phase = "starting"
            deadline = time.monotonic() + 120
            while ledger.ready_count() < s.buyers + s.workers and time.monotonic() < deadline:
                self._supervise(respawn_buyers=True, respawn_workers=True)
                self._tick(ledger)
            # --- the sale ---
            self._open_at = time.monotonic()
            ledger.set_meta("open_at", str(time.time()))
            self._sale_open = True
            self._phase = "sale"
            self._event(f"sale opens: {s.stock} units of {s.skus} SKUs, {s.buyers} buyers, "
                        f"{s.workers} order workers, chaos {'on' if s.chaos else 'off'}")
            if s.chaos:
                chaos.start()
            close_at = self._open_at + s.sale_limit
            while True:
                self._supervise(respawn_buyers=True, respawn_workers=True)
                self._tick(ledger)
                counts = ledger.counts()
                left = counts["left"] if self._fenced else self._counters_left()
                if left == 0:
                    self._event(f"sold out: {counts['sold']} units sold")
                    break
                if time.monotonic() >= close_at:
                    self._stalled = left
                    self._event(f"sale closed at its time limit with {left} units left")
                    break
            self._closed_at = time.monotonic()
            self._sale_open = False
            ledger.set_meta("closed", str(time.time()))
            self._chaos_stop.set()
            self._phase = "closing"
            if chaos.is_alive():
                chaos.join(timeout=180)
            self._heal_cluster()
            self._stop_children("buyer", polite=3.0, grace=10.0)
            if not self._fenced:
                self._reconcile(db)
            flushed = _retry(lambda: _flush_outbox(ledger, queue, None), 60.0)
            if flushed:
                self._event(f"put the steps of {flushed} orders whose buyer died before "
                            "putting them")
            # --- drain ---
            self._phase = "draining"
            drain_deadline = time.monotonic() + s.drain_timeout
            while time.monotonic() < drain_deadline:
                self._supervise(respawn_buyers=False, respawn_workers=True)
                self._tick(ledger)
                counts = ledger.counts()
                if counts["orders_done"] >= counts["sold"]:
                    stats = _retry(queue.stats, 30.0)
                    if not any(stats.values()):
                        self._queue_stats = stats
                        break
            self._drained_at = time.monotonic()
            self._phase = "done"
            self._stop_children("worker", polite=0.0, grace=10.0)
            if self._queue_stats is None:
                self._queue_stats = _retry(queue.stats, 30.0)
                self._event(f"the queue did not drain within {s.drain_timeout:.0f}s: "
                            f"{self._queue_stats}")
            self._progress(ledger)
            report = self._report(ledger)
        db.close()
        report.keep = report.keep or not report.ok or bool(os.environ.get("COORDINATION_DEMO_KEEP"))
        if not report.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return report

    def _counters_left(self) -> int:
        """Units left by the counters (the last value read while the cluster fails over)."""
        with contextlib.suppress(CoordinationError):
            self._left = sum(c.value for c in self._counters.values())
        return self._left

    def _reconcile(self, db: sqlite3.Connection) -> None:
        """Counter mode, the buyers stopped: settle the intents left in doubt (a buyer
        killed between the decrement and recording the order, or ``UncertainOutcome``).
        Per SKU, ``initial - value - orders`` of them applied (each at most once):
        record that many as orders, drop the rest. A count out of range is left for
        the verdict to flag."""
        initial = dict(db.execute("SELECT sku, initial FROM stock").fetchall())
        result = {"in_doubt": 0, "uncertain": 0, "applied": 0, "unresolved": 0}
        for sku, counter in self._counters.items():
            self._final[sku] = value = int(_retry(functools.partial(_value_of, counter), 60.0))
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
        self._reconciled = result
        if result["in_doubt"]:
            self._event(f"reconciled {_plural(result['in_doubt'], 'purchase')} in doubt "
                        f"against the counters: {result['applied']} applied (recorded as "
                        "orders), the rest never did")

    def _tick(self, ledger: Ledger) -> None:
        self._refresh_leader()
        self._progress(ledger)
        time.sleep(0.25)

    def _heal_cluster(self) -> None:
        """After the chaos: every node running and the cluster healthy."""
        if self.cluster is None:
            return
        try:
            self.cluster.heal(timeout=60)
        except Exception as exc:  # noqa: BLE001 - reported in the verdict
            self._chaos_errors.append(f"heal: {exc}".splitlines()[0])

    # --- the verdict -------------------------------------------------------------------

    def _report(self, ledger: Ledger) -> Report:
        s = self.settings
        a = ledger.audit()
        q = self._queue_stats or {}
        sold, complete = int(a["sold"]), int(a["complete"])  # type: ignore[call-overload]
        initial, left = int(a["initial"]), int(a["left"])  # type: ignore[call-overload]
        steps_done, redeliveries = int(a["steps_done"]), int(a["redeliveries"])  # type: ignore[call-overload]
        queued = sum(q.values())
        if self._fenced:
            stock_check = Check("stock never below zero", int(a["min_qty"]) >= 0 and left >= 0,  # type: ignore[call-overload]
                                f"lowest stock level {a['min_qty']}, {left} of {initial} left")
        else:
            stock_check = self._counters_check(ledger)
            left = sum(self._final.values()) if self._final else initial
        checks = [
            Check("units sold = orders completed", sold == complete == initial - left,
                  f"{sold} sold, {complete} orders completed (created, paid, shipped), "
                  f"stock down by {initial - left}"),
            stock_check,
            Check("no order lost", complete == sold and queued == 0,
                  f"{sold - complete} orders incomplete; queue: " + (
                      "empty" if q and not queued else
                      ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in q.items()) or "?")),
            Check("no order processed twice",
                  steps_done == len(STEPS) * sold and a["unknown_orders"] == 0,
                  f"{steps_done} steps done once each; "
                  f"{_plural(redeliveries, 'redelivery', 'redeliveries')} absorbed "
                  "(recorded per order and step)"),
            Check("no step out of order", a["out_of_order"] == 0 and a["disorder"] == 0,
                  f"{a['out_of_order']} steps done before their predecessor"),
            self._faults_check(),
        ]
        sale_time = max(1e-9, self._closed_at - self._open_at)
        total_time = max(1e-9, self._drained_at - self._open_at)
        waits: list[float] = a["lock_waits_ms"]  # type: ignore[assignment]
        if not self._fenced:  # reconciled orders have no latency
            waits = [w for w in waits if w > 0]
        stats = [
            ("throughput", f"{sold / sale_time:.1f} units/s over the {sale_time:.1f}s sale; "
                           f"{complete / total_time:.1f} orders/s to shipped"),
            ("lock wait" if self._fenced else "counter add",
             "p50 {} / p90 {} / p99 {} / max {} ms".format(
                 *(_fmt_ms(_percentile(waits, p)) for p in (50, 90, 99, 100)))),
        ]
        if self._fenced:
            stats.append(("fencing", f"{_plural(int(a['fenced_off']), 'stale write')} refused "  # type: ignore[call-overload]
                                     "by the stock store"))
        else:
            r = self._reconciled or {}
            doubt = r.get("in_doubt", 0)
            stats.append(("in doubt", "none: every decrement's outcome was known" if not doubt
                          else f"{_plural(doubt, 'purchase')} ({r.get('uncertain', 0)} "
                          f"UncertainOutcome, {doubt - r.get('uncertain', 0)} buyer killed "
                          f"mid-purchase): {r.get('applied', 0)} applied per the counters, "
                          "recorded as orders" + (f"; {r['unresolved']} NOT reconcilable"
                                                  if r.get("unresolved") else "")))
        stats += [
            ("run", f"{s.buyers} buyers, {s.workers} workers, {s.skus} SKUs, "
                    f"{total_time:.1f}s from opening to the last order shipped"),
        ]
        errors = ledger.errors()
        if errors:
            # Not an invariant (the data stayed right), but a client-library bug: say so.
            kinds = sorted({text.split(":", 1)[0] for _who, text in errors})
            stats.append(("client errors", f"{len(errors)} unexpected exceptions retried "
                          f"({', '.join(kinds)}); tracebacks in {self.run_dir}"))
        return Report(checks, stats, self.run_dir, keep=bool(errors))

    def _counters_check(self, ledger: Ledger) -> Check:
        """Counter mode: each SKU's final counter value is >= 0 and initial - sold."""
        if not self._final:
            return Check("stock never below zero", False, "the counters were not read")
        rows = ledger.db.execute("SELECT s.sku, s.initial, (SELECT COUNT(*) FROM orders o "
                                 "WHERE o.sku = s.sku) FROM stock s ORDER BY s.sku").fetchall()
        bad = [f"{sku}: {self._final.get(sku)} left, {initial} - {sold} sold"
               for sku, initial, sold in rows
               if self._final.get(sku, -1) < 0 or self._final.get(sku) != initial - sold]
        unresolved = (self._reconciled or {}).get("unresolved", 0)
        detail = (f"counters {', '.join(f'{counter_name(k)}={v}' for k, v in self._final.items())}"
                  f" (each >= 0 and = initial - sold)")
        if bad:
            detail += "; mismatch " + "; ".join(bad)
        if unresolved:
            detail += f"; {unresolved} purchases in doubt could not be reconciled"
        return Check("stock never below zero", not bad and not unresolved, detail)

    def _faults_check(self) -> Check:
        faults = dict(self._faults)
        total = sum(faults.values())
        parts = []
        names = {"leader": "leader kill", "node": "follower kill", "buyer": "buyer kill",
                 "worker": "worker kill", "freeze": "buyer freeze"}
        for kind, label in names.items():
            if faults.get(kind):
                parts.append(_plural(faults[kind], label))
        healthy = True
        if self.cluster is not None:
            healthy = all(self.cluster.is_running(i) for i in range(self.cluster.size))
        problems = list(self._chaos_errors)
        if self._crashes:
            problems.append(f"{self._crashes} unplanned process exits")
        if not healthy:
            problems.append("cluster not healthy at the end")
        if self._stalled:
            problems.append(f"the sale stalled: {self._stalled} units unsold at its time limit")
        if not self.settings.chaos:
            return Check("faults survived", not problems,
                         "chaos off" + ("; " + "; ".join(problems) if problems else ""))
        if total:
            detail = f"{total} faults: " + ", ".join(parts)
        else:
            detail = "0 faults: the sale was over before the first one (try a longer --duration)"
        if problems:
            detail += "; " + "; ".join(problems)
        return Check("faults survived", not problems, detail)


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"


def _value_of(counter: Any) -> int:
    return int(counter.value)


def _retry(fn: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except CoordinationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


if __name__ == "__main__":
    child_main()
