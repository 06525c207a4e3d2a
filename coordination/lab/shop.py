"""The ``shop`` workload of the chaos scenarios (``python -m coordination.lab.workloads
shop URL NAME OUT``): shopper threads sharing one coordinator and one ``Inventory``
object (so their concurrent reserves share commits, as a service's request threads
would), each reserving carts and settling them, every step recorded for
:func:`~coordination.lab.checkers.check_reservations`."""

from __future__ import annotations

import argparse
import os
import random
import time

import coordination
from coordination.errors import Conflict, CoordinationError, HoldExpired, OutOfStock

from .workloads import Recorder, connect, in_threads

#: The SKUs the shoppers buy (the scenario stocks them).
SHOP_SKUS = ("sku-a", "sku-b", "sku-c")


def run_shop(args: argparse.Namespace) -> None:
    """``--threads`` shoppers on one coordinator and one Inventory object."""
    record = Recorder(args.out)
    coord = connect(args.url, record)
    inventory = coord.inventory(args.name)

    in_threads(record, lambda tid: _shop(record, inventory,
                                         random.Random(os.getpid() * 100 + tid), args.ttl),
               args.threads, "shopper")
    coord.close()
    if record.failure is not None:
        raise record.failure


def _shop(record: Recorder, inventory: coordination.Inventory, rng: random.Random,
          ttl: float) -> None:
    """Reserve carts of 1-3 SKUs (1-2 units each, holds of ``ttl`` s), then confirm
    (60%), release (20%) or abandon them (20%: left to expire)."""
    while not record.stopping:
        cart = {sku: rng.randint(1, 2) for sku in rng.sample(SHOP_SKUS, rng.randint(1, 3))}
        t0 = time.monotonic()
        try:
            hold = inventory.reserve(cart, ttl=ttl)
        except OutOfStock:
            record(op="reserve", t0=t0, t1=time.monotonic(), ok=False, error="OutOfStock")
            record(op="answer")  # progress: the cluster answered (the stock runs out often)
            time.sleep(0.05)
            continue
        except CoordinationError as exc:  # a reserve in doubt holds nothing for long
            record(op="reserve", t0=t0, t1=time.monotonic(), ok=False, error=type(exc).__name__)
            time.sleep(0.05)
            continue
        record(op="reserve", t0=t0, t1=time.monotonic(), ok=True, hold=hold.id, lines=cart)
        record(op="answer")
        choice = rng.random()
        if choice < 0.2:
            record(op="abandon", hold=hold.id, lines=cart)
            continue
        op = "confirm" if choice < 0.8 else "release"
        # Before the call: a worker killed inside it leaves its outcome in doubt.
        record(op="settling", intent=op, hold=hold.id, lines=cart)
        t0 = time.monotonic()
        try:
            (hold.confirm if op == "confirm" else hold.release)()
            record(op=op, t0=t0, t1=time.monotonic(), ok=True, hold=hold.id, lines=cart)
        except (HoldExpired, Conflict) as exc:
            record(op=op, t0=t0, t1=time.monotonic(), ok=False, error=type(exc).__name__,
                   hold=hold.id, lines=cart)
        except CoordinationError as exc:  # may have applied: the checker allows for it
            record(op=op, t0=t0, t1=time.monotonic(), ok=None, error=type(exc).__name__,
                   hold=hold.id, lines=cart)
            time.sleep(0.05)
