"""The shop's recipes for asyncio code: inventory with all-or-none holds, and state
records (whose ``wait_for`` waits on the loop)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from ..recipes.inventory import Hold, Inventory, Levels
from ..recipes.statemachine import Snapshot, StateRecord
from .driver import Driver


class AsyncHold:
    """A reservation (see :class:`~coordination.Hold`): ``id``, ``lines``,
    ``expires_at``, ``token``; confirm or release it with ``await``."""

    def __init__(self, hold: Hold, driver: Driver) -> None:
        self.sync = hold
        self.id, self.lines = hold.id, hold.lines
        self.expires_at, self.token = hold.expires_at, hold.token
        self._driver = driver

    def __repr__(self) -> str:
        return f"<AsyncHold {self.id} {self.lines}>"

    async def confirm(self) -> None:
        """See :meth:`Hold.confirm`."""
        await self._driver.call(self.sync.confirm)

    async def release(self) -> None:
        """See :meth:`Hold.release`."""
        await self._driver.call(self.sync.release)


class AsyncInventory:
    """Stock with all-or-none reservations (see :class:`~coordination.Inventory`)."""

    def __init__(self, inventory: Inventory, driver: Driver) -> None:
        self.sync = inventory
        self.name = inventory.name
        self._driver = driver

    def __repr__(self) -> str:
        return f"<AsyncInventory {self.name!r}>"

    async def levels(self, sku: str) -> Levels:
        return await self._driver.call(self.sync.levels, sku)

    async def available(self, sku: str) -> int:
        return await self._driver.call(self.sync.available, sku)

    async def hold_state(self, hold_id: str) -> str | None:
        return await self._driver.call(self.sync.hold_state, hold_id)

    async def set(self, stock: Mapping[str, int]) -> None:
        await self._driver.call(self.sync.set, dict(stock))

    async def reserve(self, lines: Mapping[str, int], ttl: float = 900.0) -> AsyncHold:
        """See :meth:`Inventory.reserve`. The reserves that tasks make at once share
        commits, as threads' do."""
        return AsyncHold(await self._driver.call(self.sync.reserve, dict(lines), ttl), self._driver)

    async def settle(self, hold_id: str, state: str) -> None:
        await self._driver.call(self.sync.settle, hold_id, state)

    async def sweep(self) -> int:
        return await self._driver.call(self.sync.sweep)


class AsyncStateRecord:
    """A record moving along declared transitions (see
    :class:`~coordination.StateRecord`)."""

    def __init__(self, record: StateRecord, driver: Driver) -> None:
        self.sync = record
        self.name = record.name
        self._driver = driver

    def __repr__(self) -> str:
        return f"<AsyncStateRecord {self.name!r}>"

    async def get(self) -> Snapshot | None:
        return await self._driver.call(self.sync.get)

    async def create(self, state: str, data: Any = None) -> Snapshot:
        return await self._driver.call(self.sync.create, state, data)

    async def transition(self, to: str, expect: str | None = None, data: Any = None) -> Snapshot:
        return await self._driver.call(functools.partial(self.sync.transition, to, expect, data))

    async def wait_for(self, state: str, timeout: float | None = None) -> Snapshot | None:
        """Wait until the record is in ``state`` (no thread waits); its snapshot, or
        None after ``timeout`` seconds."""
        return await self._driver.drive(self.sync.wait_for_steps(state, timeout))
