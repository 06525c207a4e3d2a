"""The concurrent reserves of one ``Inventory`` object, combined into shared commits
(see :class:`Combiner`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..backends import fork

if TYPE_CHECKING:
    from .inventory import Hold

#: Holds in one combined commit.
MAX_HOLDS = 24
#: SKUs in one combined commit (a cart may bring more on its own).
MAX_SKUS = 48


class Reservation:
    """One caller's reserve: its lines and ttl, then its hold or error."""

    def __init__(self, lines: dict[str, int], ttl: float) -> None:
        self.lines, self.ttl = lines, ttl
        self.id, self.expires = "", 0
        self.hold: Hold | None = None
        self.error: Exception | None = None
        self.done = False

    def finish(self, hold: Hold | None = None, error: Exception | None = None) -> None:
        self.hold, self.error, self.done = hold, error, True


class Combiner:
    """The concurrent reserves of one ``Inventory`` object share commits (flat
    combining): a caller that finds no commit in flight serves every reserve waiting
    then (up to what one commit holds), in arrival order, in one read and one commit;
    the callers that came meanwhile are served by the next. Under contention on a hot
    SKU one commit serves many carts, where separate commits would fail each other's
    version checks."""

    def __init__(self, serve: Callable[[list[Reservation]], None]) -> None:
        self._serve = serve
        self.inherit()
        fork.track(self)

    def inherit(self) -> None:
        """After a fork, in the child: the parent's waiting reserves are not ours."""
        self._cond = threading.Condition()
        self._waiting: list[Reservation] = []
        self._serving = False

    def reserve(self, mine: Reservation) -> Hold:
        with self._cond:
            self._waiting.append(mine)
            while not mine.done:
                if self._serving:
                    self._cond.wait()
                    continue
                self._serving = True
                batch = self._take()
                self._cond.release()
                try:
                    self._serve_all(batch)
                finally:
                    self._cond.acquire()
                    self._serving = False
                    # Interrupted (KeyboardInterrupt): the others' reserves wait on.
                    self._waiting[:0] = [r for r in batch if not r.done and r is not mine]
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        assert mine.hold is not None
        return mine.hold

    def _take(self) -> list[Reservation]:
        """The first waiting reserves that fit in one commit (etcd takes 128 operations:
        a hold is 2, a SKU 1, and their checks count too)."""
        batch: list[Reservation] = []
        skus: set[str] = set()
        while self._waiting and len(batch) < MAX_HOLDS:
            more = skus | set(self._waiting[0].lines)
            if batch and len(more) > MAX_SKUS:
                break
            batch.append(self._waiting.pop(0))
            skus = more
        return batch

    def _serve_all(self, batch: list[Reservation]) -> None:
        try:
            self._serve(batch)
        except Exception as exc:  # noqa: BLE001 - each caller raises it
            for wanted in batch:
                if not wanted.done:
                    wanted.finish(error=exc)
