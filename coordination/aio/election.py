"""Leader election for asyncio code: ``coordination.Election``'s candidacy (a lock of
the election's name) driven on the loop, and the leaders as an async iterator."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from ..backends.base import Backend
from ..backends.contenders import Head
from ..errors import AlreadyHeld, ClientClosed, CoordinationError, LockLost, NotHeld
from ..recipes.election import Election
from ..recipes.lock import check_timeout
from ..recipes.steps import WaitHead
from .driver import Driver
from .lock import AsyncLock

log = logging.getLogger(__name__)

Gates = Callable[[str], "asyncio.Lock | None"]


class AsyncElection:
    """A named election for asyncio code (see :class:`~coordination.Election`): the
    same candidates, order, values and tokens as the sync API's of that name."""

    def __init__(self, election: Election, backend: Backend, driver: Driver, gates: Gates) -> None:
        self._election = election
        self._backend = backend
        self._driver = driver
        self._gates = gates
        self._candidacy: AsyncLock | None = None
        self._campaigning = False

    def __repr__(self) -> str:
        return f"<AsyncElection {self.name!r} {'leader' if self.is_leader else 'not leader'}>"

    @property
    def name(self) -> str:
        return self._election.name

    @property
    def path(self) -> str:
        """The server path (ZooKeeper) or key prefix (etcd) of this election."""
        return self._election.path

    @property
    def is_leader(self) -> bool:
        """True while we lead; False as soon as our session is known lost."""
        return self._candidacy is not None and self._candidacy.held

    @property
    def token(self) -> int | None:
        """The fencing token of our current (or last) leadership."""
        return None if self._candidacy is None else self._candidacy.token

    @property
    def lost(self) -> asyncio.Future[None]:
        """Resolves when our leadership is lost with its session (see
        ``AsyncLock.lost``); ``NotHeld`` before we first led."""
        if self._candidacy is None:
            raise NotHeld(f"never led election {self.name!r}")
        return self._candidacy.lost

    async def campaign(self, value: bytes | str, timeout: float | None = None) -> bool:
        """Stand as a candidate with ``value`` and wait until we lead (True) or
        ``timeout`` seconds pass (False, and the candidacy is withdrawn; so it is when
        cancelled). Raises ``AlreadyHeld`` while this object leads or campaigns."""
        candidacy = self._election.candidacy(value)
        timeout = check_timeout(timeout)
        if self._campaigning or self.is_leader:
            raise AlreadyHeld(f"already campaigning or leading election {self.name!r}")
        self._campaigning = True
        try:
            running = AsyncLock(candidacy, self._driver, self._gates(candidacy.path))
            won = await running.acquire(timeout=timeout)
        finally:
            self._campaigning = False
        if won:
            self._candidacy = running
        return won

    async def resign(self) -> None:
        """Stop leading (the next candidate in order takes over); no-op if not leading."""
        candidacy = self._candidacy
        if candidacy is not None and candidacy.session is not None:
            try:
                await candidacy.release()
            except (LockLost, NotHeld):
                pass  # the leadership had ended already

    async def leader(self) -> bytes | None:
        """The current leader's value, or None if there is no candidate (linearizable)."""
        head = await self._driver.call(self._backend.head, self.path)
        return None if head.key is None else head.value

    async def leaders(self) -> AsyncIterator[bytes | None]:
        """The current leader's value (None: no candidate), then the leader's value as
        read after every change of leader, for as long as you iterate: ``async for
        value in election.leaders():``. The current leader, not a backlog (as
        :class:`~coordination.Observer`); server errors are retried; it ends when the
        coordinator is closed. No thread waits for it."""
        path, backend = self.path, self._backend
        wait = min(2.0, backend.session_ttl)
        head: Head | None = None
        while True:
            try:
                if head is not None:
                    await self._driver.wait(WaitHead(backend, path, head, wait))
                following = await self._driver.call(backend.head, path)
            except ClientClosed:
                return
            except CoordinationError as exc:
                log.debug("election leaders: %s", exc)
                await asyncio.sleep(0.1)
                continue
            if head is None or not following.same_entry(head):
                yield None if following.key is None else following.value
            head = following
