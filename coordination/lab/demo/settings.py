"""What every process of a flash sale agrees on: the sale's :class:`Settings`, the
names of its coordination objects, and how its clients connect."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Session TTL of every demo client: short, so a killed process's lock and task claims
#: are freed within about two seconds.
SESSION_TTL = 2.0
#: Attempts before a task is dead-lettered (chaos makes claims get lost now and then).
MAX_ATTEMPTS = 50
STOCK_STORES = ("cart", "counter", "fenced")
#: Cart mode: seconds a cart's hold lasts unless confirmed or released (a frozen buyer's
#: hold expires meanwhile, as does an abandoned cart's).
HOLD_TTL = 3.0
#: Units a cart checkout sells on average: 2 SKUs of one unit, 8 carts of 10 confirmed.
CART_UNITS = 1.6
#: The states of an order record and the moves between them; the workers move each
#: order along ``created -> paid -> shipped``, one step per queue task.
ORDER_TRANSITIONS = {"created": ["paid", "cancelled"], "paid": ["shipped", "refunded"],
                     "shipped": ["refunded"], "cancelled": [], "refunded": []}


def lock_name(run: str, sku: str) -> str:
    return f"flash-sale/{run}/{sku}"


def queue_name(run: str) -> str:
    return f"flash-sale/{run}/orders"


def counter_name(sku: str) -> str:
    return f"stock/{sku}"


def inventory_name(run: str) -> str:
    return f"flash-sale/{run}/stock"


def record_name(run: str, order_id: str) -> str:
    return f"flash-sale/{run}/orders/{order_id}"


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
    #: "cart" (carts reserved in the inventory recipe), "counter" (atomic counters) or
    #: "fenced" (SKU locks + fenced SQLite store).
    stock_store: str = "cart"
    #: Buyers on ``coordination.aio`` (cart stock only).
    use_async: bool = False

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
        if self.use_async and self.stock_store != "cart":
            raise ValueError("async buyers buy carts: use the cart stock store")

    @property
    def fenced(self) -> bool:
        """The stock is the fenced SQLite table behind the SKU locks (else counters)."""
        return self.stock_store == "fenced"

    @property
    def carts(self) -> bool:
        """The stock is the inventory recipe, bought a cart at a time."""
        return self.stock_store == "cart"

    @property
    def sale_limit(self) -> float:
        """The sale is closed after this many seconds even if stock is left."""
        return 2 * self.duration + 60.0

    @property
    def think(self) -> float:
        """A buyer's mean pause between two purchases (checkouts): Poisson buyers that
        together sell the stock in about ``duration`` seconds (0: no pause)."""
        units = CART_UNITS if self.carts else 1.0
        return units * self.buyers * self.duration / self.stock if self.duration > 0 else 0.0

    def sku_units(self) -> dict[str, int]:
        """The stock spread over the SKUs: name -> units."""
        base, extra = divmod(self.stock, self.skus)
        return {f"sku-{i + 1}": base + (1 if i < extra else 0) for i in range(self.skus)}
