"""``coordination.aio.connect`` and the async coordinator."""

from __future__ import annotations

import asyncio
import functools
import os
import weakref
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from ..client import Coordinator
from ..client import connect as connect_sync
from ..errors import InvalidArgument
from ..names import validate_name
from ..recipes.queue.codec import Codec
from ..session import SessionState
from .driver import Driver
from .election import AsyncElection
from .lock import AsyncLock
from .multilock import AsyncMultiLock
from .queue import AsyncQueue
from .recipes import AsyncCounter, AsyncRWLock, AsyncSemaphore
from .shop import AsyncInventory, AsyncStateRecord


class AsyncCoordinator:
    """A connection to one cluster for asyncio code: the same configuration, session,
    recipes, tokens and errors as :class:`~coordination.Coordinator`, whose waits are
    awaited on the event loop without holding a thread. Requests run in a small pool
    of threads (``workers``), whatever the number of waiting tasks.

    Use it from one event loop. ``sync`` is the synchronous coordinator beneath (same
    session), for recipes that have no async face yet (their calls block the loop).
    """

    def __init__(self, coordinator: Coordinator, driver: Driver) -> None:
        self._sync = coordinator
        self._driver = driver
        self._gates: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __repr__(self) -> str:
        return f"<AsyncCoordinator {self._sync.config.url} {self.session_state.value}>"

    @property
    def sync(self) -> Coordinator:
        """The synchronous coordinator beneath, on the same session."""
        return self._sync

    @property
    def backend(self) -> str:
        """``"zookeeper"`` or ``"etcd"``."""
        return self._sync.backend

    @property
    def namespace(self) -> str:
        return self._sync.namespace

    @property
    def session_state(self) -> SessionState:
        return self._sync.session_state

    def lock(self, name: str, timeout: float | None = None, *, raw_prefix: bool = False,
             identifier: str | bytes = b"", node_style: str | None = None) -> AsyncLock:
        """A fair, fenced lock (see ``Coordinator.lock``); ``timeout`` is the default
        for ``async with``. One object is one holder: create one per task."""
        lock = self._sync.lock(name, timeout, raw_prefix=raw_prefix, identifier=identifier,
                               node_style=node_style)
        return AsyncLock(lock, self._driver, self._gate(lock.path))

    def multi_lock(self, names: Iterable[str], timeout: float | None = None) -> AsyncMultiLock:
        """All the locks of ``names`` or none (see ``Coordinator.multi_lock``)."""
        return AsyncMultiLock(self._sync.multi_lock(names, timeout), self.lock)

    def inventory(self, name: str) -> AsyncInventory:
        """Stock with all-or-none holds (see ``Coordinator.inventory``)."""
        return AsyncInventory(self._sync.inventory(name), self._driver)

    def record(self, name: str, transitions: Mapping[str, Iterable[str]],
               history: int = 10) -> AsyncStateRecord:
        """A state record (see ``Coordinator.record``)."""
        return AsyncStateRecord(self._sync.record(name, transitions, history), self._driver)

    def _gate(self, path: str) -> asyncio.Lock | None:
        """This coordinator's turn at the mutex entry of ``path``, where the backend
        makes local contenders take turns (one per name while anyone holds it)."""
        if not self._sync.driver.local_turns:
            return None
        gate = self._gates.get(path)
        if gate is None:
            gate = self._gates[path] = asyncio.Lock()
        return gate

    def counter(self, name: str) -> AsyncCounter:
        """A named integer (see ``Coordinator.counter``)."""
        return AsyncCounter(self._sync.counter(name), self._driver)

    def rwlock(self, name: str, *, raw_prefix: bool = False) -> AsyncRWLock:
        """A read-write lock (see ``Coordinator.rwlock``)."""
        return AsyncRWLock(self._sync.rwlock(name, raw_prefix=raw_prefix), self._driver)

    def semaphore(self, name: str, permits: int) -> AsyncSemaphore:
        """A semaphore of ``permits`` (see ``Coordinator.semaphore``); its permits are
        checked against the stored ones at the first ``acquire``."""
        validate_name(name, "semaphore name")
        if isinstance(permits, bool) or not isinstance(permits, int) or permits < 1:
            raise InvalidArgument(f"permits must be an int >= 1, got {permits!r}")
        return AsyncSemaphore(self._sync.driver, name, permits, self._driver)

    def election(self, name: str, *, raw_prefix: bool = False) -> AsyncElection:
        """A leader election (see ``Coordinator.election``)."""
        return AsyncElection(self._sync.election(name, raw_prefix=raw_prefix),
                             self._sync.driver, self._driver, self._gate)

    def queue(self, name: str, max_attempts: int = 5, codec: str | Codec = "bytes",
              time_limit: float | None = None) -> AsyncQueue:
        """A work queue (see ``Coordinator.queue``)."""
        return AsyncQueue(self._sync.queue(name, max_attempts, codec, time_limit), self._driver)

    async def close(self) -> None:
        """End the session (releasing its locks at once) and stop the request
        threads. Idempotent."""
        await self._driver.call(self._sync.close)
        self._driver.shutdown()

    async def __aenter__(self) -> AsyncCoordinator:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


async def connect(url: str | None = None, *, config: str | os.PathLike[str] | None = None,
                  workers: int = 4, **overrides: Any) -> AsyncCoordinator:
    """Connect as :func:`coordination.connect` does (URL, TOML file,
    ``$COORDINATION_CONFIG``, ``./coordination.toml``; ``overrides``), for asyncio
    code. ``workers``: the request threads (requests at once). Raises what
    ``coordination.connect`` raises."""
    driver = Driver(workers)
    try:
        coordinator = await driver.call(functools.partial(connect_sync, url, config=config,
                                                          **overrides))
    except BaseException:
        driver.shutdown()
        raise
    return AsyncCoordinator(coordinator, driver)
