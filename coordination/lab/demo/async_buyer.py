"""A buyer on ``coordination.aio`` (``coordination demo flash-sale --async``): the cart
buyer of :mod:`.roles` and :mod:`.cart`, its calls awaited on an event loop. The same
ledger records, the same outbox, the same freeze on SIGUSR1 (between a reserve and its
confirm), so the same verdict judges it."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable

import coordination.aio
from coordination.errors import (
    BackendUnavailable,
    CoordinationError,
    HoldExpired,
    OutOfStock,
    UncertainOutcome,
)

from . import store
from .cart import PLANS, Holds
from .settings import HOLD_TTL, MAX_ATTEMPTS, SESSION_TTL, inventory_name, queue_name
from .store import STEPS, FencedStock, Ledger


async def _connect(url: str, parent: int) -> coordination.aio.AsyncCoordinator:
    """As ``failover.connect``: retried while the cluster is unavailable."""
    while True:
        try:
            return await coordination.aio.connect(url, session_ttl=SESSION_TTL)
        except BackendUnavailable:
            if os.getppid() != parent:
                raise SystemExit(0) from None
            await asyncio.sleep(0.2)


async def _flush_outbox(ledger: Ledger, queue: coordination.aio.AsyncQueue, buyer: int) -> None:
    """As ``roles.flush_outbox``: put the steps of this buyer's orders not enqueued yet."""
    for order_id, sku in ledger.unenqueued(buyer):
        for step in STEPS:
            await queue.put({"order": order_id, "step": step, "sku": sku}, key=order_id,
                            id=f"{order_id}.{step}")
        ledger.mark_enqueued(order_id)


async def _checkout(inventory: coordination.aio.AsyncInventory, holds: Holds, buyer: int,
                    rng: random.Random, open_skus: list[str], freeze: asyncio.Event) -> bool:
    """As ``CartStock.checkout``: reserve a cart of 1-3 SKUs and carry out a random
    plan; True if it became an order."""
    size = rng.randint(1, min(3, len(open_skus)))
    cart = {sku: 1 for sku in rng.sample(open_skus, size)}
    started = time.monotonic()
    try:
        hold = await inventory.reserve(cart, ttl=HOLD_TTL)
    except OutOfStock as exc:
        for sku in exc.short:
            available, reserved, _sold = await inventory.levels(sku)
            if available == reserved == 0:
                open_skus.remove(sku)
        if open_skus:
            await asyncio.sleep(0.05)  # held carts may give stock back: look again soon
        return False
    plan = rng.choices(list(PLANS), weights=list(PLANS.values()))[0]
    holds.add(hold.sync, buyer, plan)
    if freeze.is_set():  # a chaos freeze, past the hold's ttl (the monkey sends SIGCONT)
        freeze.clear()
        os.kill(os.getpid(), signal.SIGSTOP)
    if plan == "abandon":
        return False  # it expires by itself
    if plan == "release":
        try:
            await hold.release()
            holds.told(hold.id, "released")
        except HoldExpired:
            holds.told(hold.id, "expired")
        return False
    holds.told(hold.id, "confirming")
    try:
        await hold.confirm()
    except HoldExpired:
        holds.told(hold.id, "expired")
        return False
    except UncertainOutcome:
        return False  # settled at the close, by asking the inventory
    holds.confirmed(hold.id, (time.monotonic() - started) * 1000)
    return True


async def buy(args: argparse.Namespace, log: Callable[[str], None],
              unexpected: Callable[[Ledger, str, Exception], None]) -> None:
    """The buyer's life: connect, wait for the sale to open, check out carts until
    every SKU is sold out or the sale closed, put each order's steps."""
    parent = os.getppid()
    freeze = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, freeze.set)
    rng = random.Random()
    db = store.open_db(args.db)
    ledger, holds = Ledger(db), Holds(db)
    async with await _connect(args.url, parent) as coord:
        inventory = coord.inventory(inventory_name(args.run))
        queue = coord.queue(queue_name(args.run), max_attempts=MAX_ATTEMPTS, codec="json")
        open_skus = sorted(FencedStock(db).remaining())
        ledger.mark_ready("buyer", args.slot)
        while ledger.meta("open_at") is None:
            if os.getppid() != parent:
                return
            await asyncio.sleep(0.05)  # another process writes it: poll the shared store
        while open_skus and ledger.meta("closed") is None and os.getppid() == parent:
            try:
                await _flush_outbox(ledger, queue, args.slot)
                if args.think > 0:
                    await asyncio.sleep(rng.expovariate(1.0 / args.think))
                if await _checkout(inventory, holds, args.slot, rng, open_skus, freeze):
                    await _flush_outbox(ledger, queue, args.slot)  # its order, put now
            except (CoordinationError, sqlite3.OperationalError) as exc:
                log(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.1)  # failover in progress: try again
            except Exception as exc:  # noqa: BLE001 - a bug below us: report it, go on
                unexpected(ledger, f"buyer-{args.slot}", exc)
        try:
            await _flush_outbox(ledger, queue, args.slot)
        except CoordinationError:
            pass

