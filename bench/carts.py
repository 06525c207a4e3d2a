"""Reservations (issue 18): whole carts reserved by 32 buyers, threads of one process
sharing one coordinator (a shop's checkout service), three ways, same cluster, same run:

- ``inventory``: ``inventory.reserve(cart)``, every line or none in one commit; the
  concurrent reserves of the process share commits;
- ``counters``: the single-counter recipe in a loop, ``add(-units, min=0)`` per line,
  the lines already taken given back if one is short;
- ``locks``: a lock per SKU, all of the cart's taken in name order (``multi_lock``),
  then each line's counter decremented under them (the way users do it today).

Carts of 1, 3 and 10 lines drawn from 8 hot SKUs (a 10-line cart holds some SKUs
twice: more units of them); and the hot item: 32 buyers reserving one unit of ONE SKU,
against the rate of one client's raw writes (the ``raw`` figure of the same run).
The stock is large enough never to run out: every figure is reservations that
succeeded, per second.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter as Tally
from collections.abc import Callable
from typing import Any

import coordination
from coordination.errors import BoundExceeded

from .measure import Figure, run_threads
from .scenarios import Loop
from .subjects import Servers

BUYERS = 32
HOT_SKUS = [f"hot-{i}" for i in range(8)]
CART_LINES = (1, 3, 10)
STOCK = 10**9
WAYS = ("inventory", "counters", "locks")

Reserve = Callable[[dict[str, int]], None]


def _inventory(coord: coordination.Coordinator, skus: list[str]) -> Reserve:
    inventory = coord.inventory(f"bench-{uuid.uuid4().hex[:8]}")
    inventory.set(dict.fromkeys(skus, STOCK))
    return lambda cart: None if inventory.reserve(cart, ttl=3600) else None


def _stocked(coord: coordination.Coordinator, skus: list[str]
             ) -> tuple[str, dict[str, coordination.Counter]]:
    """A fresh run id, and per SKU a counter of that run holding ``STOCK``."""
    run = uuid.uuid4().hex[:8]
    counters = {sku: coord.counter(f"bench-{run}/{sku}") for sku in skus}
    for counter in counters.values():
        counter.set(STOCK)
    return run, counters


def _counters(coord: coordination.Coordinator, skus: list[str]) -> Reserve:
    _run, counters = _stocked(coord, skus)

    def reserve(cart: dict[str, int]) -> None:
        taken: list[tuple[str, int]] = []
        try:
            for sku, units in cart.items():
                counters[sku].add(-units, min=0)
                taken.append((sku, units))
        except BoundExceeded:
            for sku, units in taken:  # all or none, by hand
                counters[sku].add(units)
            raise
    return reserve


def _locks(coord: coordination.Coordinator, skus: list[str]) -> Reserve:
    run, counters = _stocked(coord, skus)

    def reserve(cart: dict[str, int]) -> None:
        with coord.multi_lock([f"bench-{run}/{sku}" for sku in cart], timeout=60):
            for sku, units in cart.items():
                counters[sku].add(-units, min=0)
    return reserve


MAKERS: dict[str, Callable[[coordination.Coordinator, list[str]], Reserve]] = {
    "inventory": _inventory, "counters": _counters, "locks": _locks}


def _cart(rng: random.Random, skus: list[str], lines: int) -> dict[str, int]:
    return dict(Tally(rng.choice(skus) for _ in range(lines)))


def _rep(servers: Servers, way: str, skus: list[str], lines: int, duration: float) -> float:
    with coordination.connect(servers.url) as coord:
        reserve = MAKERS[way](coord, skus)
        counts = [0] * BUYERS

        def buyer(i: int) -> Loop:
            rng = random.Random(i)

            def run(going: Callable[[], bool]) -> None:
                while going():
                    reserve(_cart(rng, skus, lines))
                    counts[i] += 1
            return run

        elapsed = run_threads([buyer(i) for i in range(BUYERS)], duration)
    return sum(counts) / elapsed


def reservations(servers: Servers, duration: float, reps: int) -> dict[str, Any]:
    """Per cart size, each way's reservations/s (repetitions interleaved across the
    ways, so a busy moment weighs on all alike); then the one-hot-SKU figure."""
    out: dict[str, Any] = {}
    for lines in CART_LINES:
        rates: dict[str, list[float]] = {way: [] for way in WAYS}
        for _ in range(reps):
            for way in WAYS:
                rates[way].append(_rep(servers, way, HOT_SKUS, lines, duration))
        out[f"{lines} line{'s' if lines > 1 else ''}"] = {
            way: {"rate": Figure.of(r).as_dict()} for way, r in rates.items()}
    out["one hot SKU"] = {"inventory": {"rate": Figure.of([
        _rep(servers, "inventory", HOT_SKUS[:1], 1, duration) for _ in range(reps)]).as_dict()}}
    return out
