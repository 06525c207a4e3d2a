"""The child processes of a flash sale, each ``python -m coordination.lab.demo.roles
buyer|worker ...`` (started by :mod:`.supervisor`):

* a **buyer** loops until every SKU is sold out: it checks out a cart of 1-3 SKUs
  (:mod:`.cart`), or with the other stock stores takes one unit of a random SKU
  (:mod:`.stock`), then puts the order's three steps on the queue (:func:`put_order`).
  Orders whose tasks were not stored yet (the buyer was killed in between) sit in an
  outbox and are put again by the buyer's successor, or at the end of the sale
  (:func:`flush_outbox`). SIGUSR1 asks it to freeze itself (SIGSTOP): with carts
  between the reserve and the confirm, with the fenced store while it holds a lock,
  with the counters between two purchases.
* an **order worker** claims tasks, moves the order's state machine record one step
  (:mod:`.orders`) and records the step as done in the :class:`~.store.Ledger`, until
  SIGTERM.

Both log to their stderr, wait for the sale to open, and exit once their parent is
gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import sys
import threading
import time
import traceback
import uuid

import coordination
from coordination.errors import (
    CoordinationError,
    LockLost,
    NotHeld,
    UncertainOutcome,
)

from . import async_buyer, failover, orders, store
from .cart import CartStock
from .settings import MAX_ATTEMPTS, STOCK_STORES, inventory_name, lock_name, queue_name
from .stock import CounterStock, make_stock, take_one
from .store import STEPS, FencedStock, Ledger, Order, StaleToken

LOCK_TIMEOUT = 10.0
#: Handler threads of one order-worker process.
WORKER_THREADS = 4


def put_order(queue: coordination.Queue, order_id: str, sku: str) -> None:
    """Put the order's steps: same key (the order id), so they are handed out one at a
    time in this order; ids derived from the order, so a repeated put stores nothing."""
    for step in STEPS:
        queue.put({"order": order_id, "step": step, "sku": sku}, key=order_id,
                  id=f"{order_id}.{step}")


def flush_outbox(ledger: Ledger, queue: coordination.Queue, buyer: int | None) -> int:
    """Put the steps of the orders (of buyer slot ``buyer``; None: of every buyer) not
    marked enqueued yet, and mark them; how many orders."""
    flushed = 0
    for order_id, sku in ledger.unenqueued(buyer):
        put_order(queue, order_id, sku)
        ledger.mark_enqueued(order_id)
        flushed += 1
    return flushed


def _log(text: str) -> None:
    """A line in this child's log file (its stderr)."""
    print(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {text}",
          file=sys.stderr, flush=True)


def _orphaned(parent: int) -> bool:
    return os.getppid() != parent


def buyer_main(args: argparse.Namespace) -> None:
    if args.use_async:
        asyncio.run(async_buyer.buy(args, _log, _unexpected))
        return
    parent = os.getppid()
    freeze = threading.Event()  # set by SIGUSR1: freeze (holding the next lock if fenced)
    signal.signal(signal.SIGUSR1, lambda *_: freeze.set())
    rng = random.Random()
    db = store.open_db(args.db)
    ledger = Ledger(db)
    with failover.connect(args.url, lambda: _orphaned(parent)) as coord:
        stock = (CartStock(coord.inventory(inventory_name(args.run)), db, args.slot, rng)
                 if args.stock_store == "cart" else make_stock(coord, db, args.stock_store))
        queue = coord.queue(queue_name(args.run), max_attempts=MAX_ATTEMPTS, codec="json")
        open_skus = sorted(FencedStock(db).remaining())  # the SKUs (the table lists them)
        locks = {sku: coord.lock(lock_name(args.run, sku), identifier=f"buyer-{args.slot} "
                                 f"pid {os.getpid()}") for sku in open_skus}
        ledger.mark_ready("buyer", args.slot)
        while ledger.meta("open_at") is None:
            if _orphaned(parent):
                return
            time.sleep(0.05)  # another process writes it: poll the shared store

        def frozen() -> None:
            """A stop-the-world pause (GC, swapping, SIGSTOP): cart, holding a reserved
            cart; fenced, while holding the lock; counter, between two purchases."""
            if freeze.is_set():
                freeze.clear()
                os.kill(os.getpid(), signal.SIGSTOP)  # the orchestrator sends SIGCONT

        while open_skus and ledger.meta("closed") is None and not _orphaned(parent):
            try:
                flush_outbox(ledger, queue, args.slot)
                if args.think > 0:
                    time.sleep(rng.expovariate(1.0 / args.think))
                if isinstance(stock, CartStock):
                    if stock.checkout(open_skus, frozen) is not None:
                        flush_outbox(ledger, queue, args.slot)  # its order, put now
                    continue
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
                    put_order(queue, order.id, sku)
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
                put_order(queue, order.id, sku)
                ledger.mark_enqueued(order.id)
            except (CoordinationError, sqlite3.OperationalError) as exc:
                _log(f"{type(exc).__name__}: {exc}")
                time.sleep(0.1)  # failover in progress: try again
            except Exception as exc:  # noqa: BLE001 - a bug below us: report it, go on
                _unexpected(ledger, f"buyer-{args.slot}", exc)
        with contextlib.suppress(CoordinationError):
            flush_outbox(ledger, queue, args.slot)


def worker_main(args: argparse.Namespace) -> None:
    """Ship orders: the library's worker loop (``Queue.worker``) runs the steps on
    ``WORKER_THREADS`` threads; SIGTERM stops it with grace, as ``coordination worker``
    does. Each thread records its steps through a ledger connection of its own."""
    parent = os.getppid()
    rng = random.Random()
    name = f"worker-{args.slot}"
    ledgers = threading.local()

    def ledger() -> Ledger:
        if not hasattr(ledgers, "ledger"):
            ledgers.ledger = Ledger(store.open_db(args.db))
        return ledgers.ledger

    with failover.connect(args.url, lambda: _orphaned(parent)) as coord:

        def ship(task: coordination.Task) -> None:
            order_id, step = task.data["order"], task.data["step"]
            time.sleep(rng.uniform(0.001, 0.005))  # the step's work
            if not orders.advance(orders.record(coord, args.run, order_id), step):
                ledger().repeated(order_id, step)
            ledger().complete(order_id, step, name)

        queue = coord.queue(queue_name(args.run), max_attempts=MAX_ATTEMPTS, codec="json")
        worker = queue.worker(ship, concurrency=WORKER_THREADS, grace=5.0)
        ledger().mark_ready("worker", args.slot)

        def watch_parent() -> None:
            while not worker.wait(0.5):
                if _orphaned(parent):
                    worker.stop(grace=0)

        threading.Thread(target=watch_parent, name="demo-orphan-watch", daemon=True).start()
        worker.run()


def _unexpected(ledger: Ledger, who: str, exc: Exception) -> None:
    """An exception the library should not let out: log its traceback, record it for
    the report, and carry on as after a failover."""
    _log("unexpected " + "".join(traceback.format_exception(exc)))
    with contextlib.suppress(sqlite3.Error):
        ledger.record_error(who, f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
    time.sleep(0.1)


def child_main(argv: list[str] | None = None) -> None:
    """``buyer|worker --url URL --db PATH --run ID --slot N [--think S]
    [--stock-store KIND]``: run one child of a sale."""
    parser = argparse.ArgumentParser(prog="python -m coordination.lab.demo.roles")
    parser.add_argument("role", choices=["buyer", "worker"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--think", type=float, default=0.0, help="mean pause between purchases")
    parser.add_argument("--stock-store", choices=STOCK_STORES, default="cart")
    parser.add_argument("--async", dest="use_async", action="store_true",
                        help="a buyer on coordination.aio (cart stock only)")
    args = parser.parse_args(argv)
    (buyer_main if args.role == "buyer" else worker_main)(args)


if __name__ == "__main__":
    child_main()
