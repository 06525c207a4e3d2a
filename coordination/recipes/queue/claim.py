"""Claiming a ready task: one commit that moves it from the ready index to in flight.

The commit deletes the ready key, creates the in-flight key ``f/ID`` and the claim key
``c/ID`` tied to our session, whose value carries a fresh nonce; it checks that the ready
key and the record are still there and that no claim key exists. The record ``t/ID`` is
not rewritten: each claim, single or in a batch, reads it and its claim key in the same
commit (etcd; ZooKeeper reads them right after, while the claim keeps them still). The
claim key's stamp is the task's fencing token. Of concurrent claimers exactly one commit
applies; who won is told by the commit's result, or after a lost reply by the nonce read
back from the claim key (``Claimer._claimed_by_us``).
"""

from __future__ import annotations

import math
import random
import threading
import time
import zlib
from typing import TYPE_CHECKING

from ...backends.kv import (
    Absent,
    Check,
    Create,
    Delete,
    Entry,
    KeyValue,
    Op,
    OutcomeUnknown,
    Present,
    Version,
)
from . import layout, limits
from .claims import Claim, claim_value, claimed_by, limit_end
from .layout import READY_DEPTH, QueueLayout
from .record import decode, new_nonce
from .task import Settler, Task

if TYPE_CHECKING:
    from ...backends.base import Backend
    from ...session import Session

_SPREAD = 8  # consumers pick among this many first ready tasks
_SPREAD_CONTENDED = 32  # ... and among this many after losing races
_TRIES = 4  # claims one next() tries before it lets the caller look again
_WINDOW = 16  # contended batch claimers list this many times n, cut into lanes (see _pick)
_CONTENDED_FOR = 1.0  # seconds a consumer spreads its claims after losing a race
_FRESH_FOR = 0.05  # seconds a contended consumer claims from its last listing's rest


def _lane_of(ready_key: str, lanes: int) -> int:
    return zlib.crc32(layout.leaf(ready_key)[1].encode()) % lanes


class _Claiming:
    """The checks and ops of one task's claim, and the task once they applied."""

    def __init__(self, ready_key: str, keys: QueueLayout, until: int) -> None:
        self.ready_key = ready_key
        self.task_id = layout.leaf(ready_key)[1]
        self.keys = keys
        self.until = until
        # Who won is decided by this claim's own nonce, never by the session: the threads
        # of one coordinator share its session, and each must know its own claim.
        self.nonce = new_nonce()

    def checks(self) -> list[Check]:
        """The claim's checks. The ready key must still be there (its delete alone would
        not fail on etcd), and so must the record: a ready key left over without one is
        never claimed."""
        return [Absent(self.keys.claim(self.task_id)), Present(self.ready_key),
                Present(self.keys.record(self.task_id))]

    def reads(self) -> list[str]:
        """The keys the claim reads as it applies: the record, then the claim key."""
        return [self.keys.record(self.task_id), self.keys.claim(self.task_id)]

    def ops(self, session: Session) -> list[Op]:
        return [
            Delete(self.ready_key, depth=READY_DEPTH),
            Create(self.keys.in_flight(self.task_id), b""),
            Create(self.keys.claim(self.task_id), claim_value(session, self.nonce, self.until),
                   ephemeral=True),
        ]

    def task(self, settler: Settler, session: Session, record: Entry, held: Entry) -> Task:
        """The claimed task, ``record`` being its record as it was at the claim and
        ``held`` the claim key as the claim wrote it: its stamp is the claim's."""
        header, data = decode(record.value)
        claim = Claim(session, record.version, held.version, self.until, self.nonce)
        return Task(settler, header, data, held.stamp, claim)



class Claimer:
    """Claims the ready tasks of one queue; the tasks it returns are settled by
    ``settler``."""

    def __init__(self, backend: Backend, kv: KeyValue, keys: QueueLayout, settler: Settler) -> None:
        self._backend = backend
        self._kv = kv
        self._keys = keys
        self._settler = settler
        self._contended_until = -math.inf  # lost a claim race lately: spread (see next)
        self._local = threading.local()  # per thread: did its last next() lose races?

    def next(self, time_limit: float | None = None) -> Task | None:
        """Claim the first ready task; None if there is none (or others won them all:
        then ``raced()`` is true). Consumers that lately lost races pick at random among
        the first ``_SPREAD_CONTENDED`` of the same priority instead, so that they do
        not all race for each next head (among concurrent consumers, order is not
        observable), and claim from the rest of that listing while it is younger than
        ``_FRESH_FOR``: a task put meanwhile, even of a higher priority, waits for the
        next listing."""
        self._local.raced = False
        now = time.monotonic()
        contended = now < self._contended_until
        candidates = self._spare(now) if contended else []
        if not candidates:
            ready = self._kv.leaves(self._keys.ready_root, READY_DEPTH,
                                    _SPREAD_CONTENDED if contended else _SPREAD)
            if not ready:
                return None
            top = layout.ready_band(ready[0])
            candidates = [key for key in ready if layout.ready_band(key) == top]
            if contended:
                random.shuffle(candidates)  # lately lost races for the head: any will do
                self._local.spare = (now + _FRESH_FOR, candidates[_TRIES:])
            else:  # the head first, then the others in random order
                candidates[1:] = random.sample(candidates[1:], len(candidates) - 1)
        task = self._claim(candidates[:_TRIES], time_limit)
        if self._local.raced:
            self._contended_until = time.monotonic() + _CONTENDED_FOR
        if task is None:
            self._local.spare = (0.0, [])  # all taken: the rest is no fresher, list anew
        return task

    def _spare(self, now: float) -> list[str]:
        """Up to ``_TRIES`` candidates left over from this thread's last contended
        listing, if it is fresh (listed less than ``_FRESH_FOR`` ago)."""
        fresh_until, spare = getattr(self._local, "spare", (0.0, []))
        if now >= fresh_until or not spare:
            return []
        self._local.spare = (fresh_until, spare[_TRIES:])
        return spare[:_TRIES]

    def raced(self) -> bool:
        """Whether this thread's last ``next``/``next_many`` lost a claim to another
        consumer: tasks were ready, so look again at once (no ring of the bell will
        come for them)."""
        return bool(getattr(self._local, "raced", False))

    def next_many(self, n: int, time_limit: float | None) -> list[Task]:
        """Claim up to ``n`` ready tasks, ``limits.BATCH`` a commit, each reading its
        record as it applies; [] if there are none. Uncontended, the first ``n`` in
        delivery order; after lost races, ``n`` of the first ``_WINDOW * n`` (see
        ``_pick``), so that batch claimers do not all race for the same head. Each
        task's claim applies on its own: those that another consumer took meanwhile are
        left out, so fewer than ``n`` may come back while more are ready."""
        self._local.raced = False
        contended = time.monotonic() < self._contended_until
        ready = self._kv.leaves(self._keys.ready_root, READY_DEPTH, n * _WINDOW if contended else n)
        if not ready:
            return []
        if len(ready) > n:
            ready = self._pick(ready, n)
        tasks: list[Task] = []
        for start in range(0, len(ready), limits.BATCH):
            tasks += self._claim_batch(ready[start:start + limits.BATCH], time_limit)
        return tasks

    def _pick(self, ready: list[str], n: int) -> list[str]:
        """``n`` of the listed ``ready`` keys, in their order: those of this thread's lane
        first, then others at random. The listing is cut into ``len(ready) // n`` lanes
        of about ``n`` tasks each (by a hash of the task id); a thread holds a place
        in [0, 1) that says which lane is its own, and moves when it loses a race in
        its lane, so concurrent batch claimers soon hold lanes of their own and rarely
        want the same task. A lane nobody holds still moves: its tasks age to the head
        of the listing, and fill the others' batches."""
        lanes = max(1, len(ready) // n)
        lane = int(self._place() * lanes)
        mine = [i for i, key in enumerate(ready) if _lane_of(key, lanes) == lane][:n]
        if len(mine) < n:
            others = [i for i, key in enumerate(ready) if _lane_of(key, lanes) != lane]
            mine += random.sample(others, min(n - len(mine), len(others)))
        self._local.lane = (lane, lanes)
        return [ready[i] for i in sorted(mine)]

    def _place(self) -> float:
        place = getattr(self._local, "place", None)
        if place is None:
            place = self._local.place = random.random()
        return place

    def _claim_batch(self, ready_keys: list[str], time_limit: float | None) -> list[Task]:
        """Claim each task listed at ``ready_keys`` on its own terms, all in one round
        trip: the ones another consumer took meanwhile are left out, the others are
        ours."""
        session = self._backend.session()
        until = limit_end(time_limit)
        claims = [_Claiming(ready_key, self._keys, until) for ready_key in ready_keys]
        try:
            applied = self._kv.commit_each([(claim.checks(), claim.ops(session)) for claim in claims],
                                           [claim.reads() for claim in claims], session)
        except OutcomeUnknown:
            return [task for claim in claims if (task := self._claimed_by_us(claim, session))]
        tasks = [task for claim, outcome in zip(claims, applied)
                 if outcome is not None and (task := self._taken(claim, session, *outcome[1]))]
        if None in applied:
            self._local.raced = True
            self._contended_until = time.monotonic() + _CONTENDED_FOR
            lane, lanes = getattr(self._local, "lane", (None, 1))
            if any(outcome is None and _lane_of(claim.ready_key, lanes) == lane
                   for claim, outcome in zip(claims, applied)):
                self._local.place = random.random()  # another consumer works this lane
        return tasks

    def _claim(self, ready_keys: list[str], time_limit: float | None) -> Task | None:
        """Claim the first task listed at ``ready_keys`` that no other consumer has (in
        one round trip where the backend allows); None if others have them all."""
        until = limit_end(time_limit)
        claimings = [_Claiming(ready_key, self._keys, until) for ready_key in ready_keys]
        session = self._backend.session()
        try:
            claimed = self._kv.commit_first(
                [(claiming.checks(), claiming.ops(session)) for claiming in claimings],
                [claiming.reads() for claiming in claimings], session)
        except OutcomeUnknown:
            return next(filter(None, (self._claimed_by_us(claiming, session)
                                      for claiming in claimings)), None)
        if claimed is None:
            self._local.raced = True
            return None  # a check of each failed: other consumers (maybe threads) won
        index, _stamp, (record, held) = claimed
        self._local.raced = index > 0
        return self._taken(claimings[index], session, record, held)

    def _taken(self, claiming: _Claiming, session: Session, record: Entry | None,
               held: Entry | None) -> Task | None:
        """The task of an applied claim, from its record and claim key as read with it."""
        if held is None:
            return None  # lost already (ZooKeeper, read after): the reaper puts it back
        if record is None:  # removed under our claim by another client: let the task go
            try:
                self._kv.commit([Version(held.key, held.version)],
                                [Delete(held.key), Delete(self._keys.in_flight(claiming.task_id))],
                                session)
            except OutcomeUnknown:
                pass
            return None
        return claiming.task(self._settler, session, record, held)

    def _claimed_by_us(self, claiming: _Claiming, session: Session) -> Task | None:
        """After a lost reply: our claim, read back, if it applied and still holds."""
        task_id = claiming.task_id
        held = self._kv.get(self._keys.claim(task_id))
        if held is None or not session.alive or not claimed_by(held.value, session, claiming.nonce):
            return None
        current = self._kv.get(self._keys.record(task_id))
        return None if current is None else claiming.task(self._settler, session, current, held)
