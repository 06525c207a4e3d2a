"""Multi-lock contract (coordination/recipes/multilock.py), against every backend: all or
none, one global order (no deadlock between overlapping sets listed differently), a
token per name, nothing left behind by a timeout."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

import coordination
from coordination import errors

from .helpers import contenders

pytestmark = pytest.mark.integration


def test_takes_every_lock_with_a_token_each_and_releases_them_all(
        coord: coordination.Coordinator, connect) -> None:
    other = connect()
    cart = coord.multi_lock(["sku-7", "sku-1", "sku-3"])
    assert cart.names == ("sku-1", "sku-3", "sku-7")
    assert cart.acquire(timeout=5) and cart.held
    assert set(cart.tokens) == {"sku-1", "sku-3", "sku-7"}
    assert all(isinstance(token, int) for token in cart.tokens.values())
    for name in cart.names:  # the very locks of those names, for every client
        assert other.lock(name).acquire(blocking=False) is False
    cart.release()
    assert not cart.held
    for name in cart.names:
        single = other.lock(name)
        assert single.acquire(blocking=False) is True
        assert single.token > cart.tokens[name]  # fenced across both kinds of holder
        single.release()
    with pytest.raises(errors.NotHeld):
        cart.release()


def test_a_timeout_leaves_nothing_behind(coord: coordination.Coordinator, connect) -> None:
    other = connect()
    blocker = other.lock("sku-3")
    assert blocker.acquire(timeout=5)
    cart = coord.multi_lock(["sku-1", "sku-3", "sku-7"])
    assert cart.acquire(timeout=0.5) is False and not cart.held
    assert cart.acquire(blocking=False) is False
    for name in ("sku-1", "sku-7"):
        assert contenders(coord, coord.lock(name)) == []  # taken, then given back
    assert len(contenders(coord, blocker)) == 1  # only the blocker's own entry
    with pytest.raises(errors.LockTimeout), coord.multi_lock(["sku-3", "sku-1"], timeout=0.3):
        pass
    blocker.release()
    with coord.multi_lock(["sku-3", "sku-1"], timeout=5) as held:
        assert held.held


def test_overlapping_sets_listed_in_any_order_never_deadlock(
        coord: coordination.Coordinator, connect) -> None:
    """Four threads, each with its own client, lock overlapping carts listed in opposite
    orders: every round completes, and no name ever has two holders."""
    carts = [["a", "b", "c"], ["c", "b", "a"], ["b", "d"], ["d", "a"]]
    holders: Counter[str] = Counter()
    guard = threading.Lock()
    overlaps: list[str] = []
    failures: list[BaseException] = []
    rounds = 5

    def shopper(cart: list[str]) -> None:
        client = connect()
        try:
            for _ in range(rounds):
                with client.multi_lock(cart, timeout=30) as held:
                    with guard:
                        for name in held.names:
                            holders[name] += 1
                            if holders[name] > 1:
                                overlaps.append(name)
                    with guard:
                        for name in held.names:
                            holders[name] -= 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=shopper, args=(cart,)) for cart in carts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a multi-lock deadlocked"
    assert failures == [] and overlaps == []


def test_bad_names_are_refused_before_anything_is_sent(coord: coordination.Coordinator) -> None:
    for names in ([], ["a", "a"], "sku-1", ["a", 7]):
        with pytest.raises(errors.InvalidArgument):
            coord.multi_lock(names)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        coord.multi_lock(["a"]).acquire(timeout=-1)
