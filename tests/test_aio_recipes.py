"""Counters, read-write locks, semaphores and elections through ``coordination.aio``,
on real clusters, beside the sync API's holders of the same names."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import coordination
import coordination.aio
from coordination import errors

from .helpers import contenders
from .test_aio_lock import run

pytestmark = pytest.mark.integration


def test_counters_add_within_bounds(url: str, connect: Any) -> None:
    sync_counter = connect().counter("stock")

    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        counter = coord.counter("stock")
        await counter.set(3)
        assert await asyncio.gather(*(counter.add(-1, min=0) for _ in range(3))) is not None
        assert await counter.value() == 0
        with pytest.raises(errors.BoundExceeded):
            await counter.add(-1, min=0)
        with pytest.raises(errors.InvalidArgument):
            await counter.add("1")  # type: ignore[arg-type]
        await asyncio.get_running_loop().run_in_executor(None, sync_counter.add, 5)
        assert await counter.value() == 5

    run(url, body)


def test_readers_share_and_a_writer_excludes(url: str, connect: Any) -> None:
    sync_reader = connect().rwlock("catalog").read()
    assert sync_reader.acquire()

    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        rw = coord.rwlock("catalog")
        async with rw.read(timeout=5) as reader:
            assert reader.held  # shares with the sync reader
        writer = rw.write()
        assert not await writer.acquire(timeout=0.3)  # the sync reader holds
        waiting = asyncio.ensure_future(writer.acquire(timeout=30))
        await asyncio.sleep(0.1)
        late_reader = rw.read()
        assert not await late_reader.acquire(timeout=0.3)  # behind the waiting writer
        await asyncio.get_running_loop().run_in_executor(None, sync_reader.release)
        assert await waiting
        await writer.release()
        assert await late_reader.acquire(timeout=5)
        await late_reader.release()

    run(url, body)


def test_a_semaphore_admits_its_permits_in_order(url: str, connect: Any) -> None:
    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        sem = coord.semaphore("checkout", 2)
        first = await sem.acquire()
        async with sem.acquire(timeout=5) as second:
            assert first.held and second.held
            with pytest.raises(errors.LockTimeout):
                await sem.acquire(timeout=0.3)
            with pytest.raises(errors.LockTimeout):
                await sem.acquire(blocking=False)
            third = asyncio.ensure_future(sem.acquire(timeout=30))
            await asyncio.sleep(0.1)
            assert not third.done()
        assert not second.held
        permit = await third
        assert permit.held and permit.token is not None and second.token is not None
        assert permit.token > second.token
        await permit.release()
        await first.release()
        with pytest.raises(errors.PermitsMismatch):
            await coord.semaphore("checkout", 3).acquire()
        with pytest.raises(errors.InvalidArgument):
            coord.semaphore("checkout", 0)
        assert contenders(coord.sync, coord.sync.semaphore("checkout", 2)) == []

    run(url, body)


def test_leaders_follow_campaigns_and_resignations(url: str, connect: Any) -> None:
    rival = connect().election("primary")

    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        election = coord.election("primary")
        seen: list[bytes | None] = []
        changed = asyncio.Event()

        async def follow() -> None:
            async for value in election.leaders():
                seen.append(value)
                changed.set()

        following = asyncio.create_task(follow())

        async def next_leader() -> bytes | None:
            await asyncio.wait_for(changed.wait(), 10)
            changed.clear()
            return seen[-1]

        assert await next_leader() is None  # no candidate yet
        assert await election.campaign(b"async-1", timeout=5)
        assert election.is_leader and await election.leader() == b"async-1"
        assert await next_leader() == b"async-1"
        loop = asyncio.get_running_loop()
        rival_campaign = loop.run_in_executor(None, lambda: rival.campaign(b"sync-2", timeout=30))
        with pytest.raises(errors.AlreadyHeld):
            await election.campaign(b"again")
        await election.resign()
        assert not election.is_leader
        assert await rival_campaign
        assert await next_leader() == b"sync-2"
        # A campaign that times out or is cancelled leaves no candidacy behind.
        assert not await election.campaign(b"async-3", timeout=0.3)
        campaign = asyncio.ensure_future(election.campaign(b"async-4"))
        await asyncio.sleep(0.2)
        campaign.cancel()
        with pytest.raises(asyncio.CancelledError):
            await campaign
        assert len(contenders(coord.sync, election)) == 1  # the rival's
        await loop.run_in_executor(None, rival.resign)
        assert await next_leader() is None
        following.cancel()

    run(url, body)


def test_a_multi_lock_takes_all_or_none(url: str, connect: Any) -> None:
    sync_coord = connect()
    busy = sync_coord.lock("sku-7")
    assert busy.acquire()

    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        both = coord.multi_lock(["sku-7", "sku-1"])
        assert both.names == ("sku-1", "sku-7")
        assert not await both.acquire(timeout=0.3)
        assert not both.held
        assert contenders(coord.sync, coord.sync.lock("sku-1")) == []  # sku-1 given back
        await asyncio.get_running_loop().run_in_executor(None, busy.release)
        async with coord.multi_lock(["sku-1", "sku-7"], timeout=5) as held:
            assert held.held and all(token is not None for token in held.tokens.values())
            assert held.tokens["sku-7"] > (busy.token or 0)

    run(url, body)


def test_inventory_holds_and_records_through_the_loop(url: str, connect: Any) -> None:
    sync_record = connect().record("order-1", {"paid": ["shipped"]})

    async def body(coord: coordination.aio.AsyncCoordinator) -> None:
        stock = coord.inventory("shop")
        await stock.set({"sku-1": 2})
        first, second = await asyncio.gather(stock.reserve({"sku-1": 1}), stock.reserve({"sku-1": 1}))
        with pytest.raises(errors.OutOfStock):
            await stock.reserve({"sku-1": 1})
        await first.confirm()
        await second.release()
        assert await stock.levels("sku-1") == (1, 0, 1)
        assert await stock.hold_state(first.id) == "confirmed"

        record = coord.record("order-1", {"paid": ["shipped"]})
        await record.create("paid")
        shipped = asyncio.ensure_future(record.wait_for("shipped", timeout=30))
        await asyncio.sleep(0.1)
        assert not shipped.done()
        await asyncio.get_running_loop().run_in_executor(None, sync_record.transition, "shipped")
        snapshot = await shipped
        assert snapshot is not None and snapshot.state == "shipped"
        assert await record.wait_for("paid", timeout=0.2) is None
        assert (await record.get()).state == "shipped"  # type: ignore[union-attr]

    run(url, body)
