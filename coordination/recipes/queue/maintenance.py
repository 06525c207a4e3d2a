"""Upkeep that any consumer does for everyone, as part of ``get``: make due delayed tasks
ready, put back the tasks whose claim vanished with its worker's session, and forget
acked tasks once ``limits.DEDUPE_WINDOW`` has passed.

Every step is a commit with checks, so consumers doing it at the same time do it once;
a lost reply is let go, as the next round sees what is left.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from ...backends.kv import (
    Absent,
    Check,
    Delete,
    Entry,
    KeyValue,
    Op,
    OutcomeUnknown,
    Present,
    Version,
)
from . import layout, limits
from .bell import Bell
from .claims import claim_until
from .layout import DELAYED_DEPTH, DONE_DEPTH, QueueLayout
from .record import decode
from .task import requeue

if TYPE_CHECKING:
    from ...backends.base import Backend

_PROMOTE_BATCH = 16  # due delayed tasks made ready per round
_REAP_BATCH = 1000  # in-flight tasks looked at per reap
_GC_BATCH, _GC_ROUNDS = 40, 25  # acked tasks forgotten per commit; commits per reap


class Maintainer:
    """The upkeep of one queue, done by its consumers."""

    def __init__(self, backend: Backend, kv: KeyValue, keys: QueueLayout, bell: Bell,
                 max_attempts: int) -> None:
        self._backend = backend  # for its session TTL, which paces the reaping
        self._kv = kv
        self._keys = keys
        self._bell = bell
        self._max_attempts = max_attempts
        self._last_reap = 0.0
        self._last_run = -math.inf

    def due(self) -> bool:
        """Whether ``limits.MAINTAIN_EVERY`` seconds passed since the last ``run``."""
        return time.monotonic() - self._last_run >= limits.MAINTAIN_EVERY

    def run(self) -> None:
        """Promote due delayed tasks; every quarter of a session TTL, also reap lost
        claims and forget expired acked tasks."""
        self._last_run = time.monotonic()
        self.promote_due()
        if time.monotonic() - self._last_reap >= self._backend.session_ttl / 4:
            self._last_reap = time.monotonic()
            self.reap()
            for _round in range(_GC_ROUNDS):
                if self.forget_acked() < _GC_BATCH:
                    break

    def next_due(self) -> float | None:
        """Seconds until the first delayed task is due (<= 0: due); None if none is
        delayed."""
        first = self._kv.leaves(self._keys.delayed_root, DELAYED_DEPTH, 1)
        if not first:
            return None
        due, _ = layout.leaf(first[0])
        return (due - time.time_ns()) / 1e9

    def promote_due(self) -> None:
        """Move the delayed tasks that are due to the ready index."""
        now = time.time_ns()
        for delayed in self._kv.leaves(self._keys.delayed_root, DELAYED_DEPTH, _PROMOTE_BATCH):
            due, task_id = layout.leaf(delayed)
            if due > now:
                break
            entry = self._kv.get(self._keys.record(task_id))
            if entry is None:
                continue
            record, _ = decode(entry.value)
            try:
                self._kv.commit(
                    [Version(entry.key, entry.version), Version(delayed, self._version_of(delayed))],
                    [Delete(delayed), self._keys.index(self._keys.ready(record))],
                )
            except OutcomeUnknown:
                pass

    def reap(self) -> None:
        """Put back the tasks whose claim vanished with its worker's session, or whose
        claim's time limit has passed."""
        flights = self._kv.leaves(self._keys.in_flight_root, 1, _REAP_BATCH)
        ids = [layout.last(flight) for flight in flights]
        claims = self._kv.get_many([self._keys.claim(task_id) for task_id in ids])
        for flight, task_id, held in zip(flights, ids, claims):
            if held is not None:
                until = claim_until(held.value)
                if until and time.time_ns() > until:
                    self._take_back(flight, task_id, held)
                continue
            entry = self._kv.get(self._keys.record(task_id))
            if entry is None:
                continue
            record, data = decode(entry.value)
            if record.state in ("done", "dead"):
                continue  # acked or nacked since we listed it
            # The in-flight key must still be there: its delete alone would not fail on etcd.
            checks: list[Check] = [Version(entry.key, entry.version),
                                   Absent(self._keys.claim(task_id)), Present(flight)]
            ops: list[Op] = [Delete(flight)]
            ops += requeue(self._keys, self._bell, record, data, 0.0,
                           "claim lost: worker session ended", self._max_attempts)[1]
            try:
                self._kv.commit(checks, ops)
            except OutcomeUnknown:
                pass

    def _take_back(self, flight: str, task_id: str, held: Entry) -> None:
        """Put back a task whose claim outlived its time limit: the claim key goes with
        it, so the late ack of its worker fails its checks (``ClaimLost``)."""
        entry = self._kv.get(self._keys.record(task_id))
        if entry is None:
            return
        record, data = decode(entry.value)
        if record.state in ("done", "dead"):
            return
        checks: list[Check] = [Version(entry.key, entry.version), Version(held.key, held.version),
                               Present(flight)]
        ops: list[Op] = [Delete(flight), Delete(held.key)]
        ops += requeue(self._keys, self._bell, record, data, 0.0,
                       "time limit exceeded: the handler ran past its claim's time limit",
                       self._max_attempts)[1]
        try:
            self._kv.commit(checks, ops)
        except OutcomeUnknown:
            pass

    def forget_acked(self) -> int:
        """Delete the tombstones of up to ``_GC_BATCH`` tasks acked more than
        ``limits.DEDUPE_WINDOW`` ago; how many were due. The ``Present`` check keeps two
        consumers from deleting a newer task of the same id."""
        horizon = time.time_ns() - int(limits.DEDUPE_WINDOW * 1e9)
        expired = []
        for done in self._kv.leaves(self._keys.done_root, DONE_DEPTH, _GC_BATCH):
            when, task_id = layout.leaf(done)
            if when > horizon:
                break
            expired.append((done, task_id))
        if not expired:
            return 0
        checks: list[Check] = [Present(done) for done, _ in expired]
        ops: list[Op] = [Delete(done) for done, _ in expired]
        ops += [Delete(self._keys.record(task_id)) for _, task_id in expired]
        try:
            self._kv.commit(checks, ops)
        except OutcomeUnknown:
            pass  # done or not, the next round sees
        return len(expired)

    def _version_of(self, key: str) -> int:
        entry = self._kv.get(key)
        return -1 if entry is None else entry.version
