"""Claiming a ready task: one commit that moves it from the ready index to in flight.

The commit deletes the ready key, writes the record (state ``claimed``, a fresh nonce),
creates the in-flight key ``f/ID`` and the claim key ``c/ID`` tied to our session; it
checks the record's version, that no claim key exists and that the ready key is still
there. Its stamp is the task's fencing token. Of concurrent claimers exactly one commit
applies; who won is told by the commit's result, or after a lost reply by the nonce read
back from the record (``Claimer._claimed_by_us``).
"""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING

from ...backends.kv import (
    Absent,
    Check,
    Create,
    Delete,
    KeyValue,
    Op,
    OutcomeUnknown,
    Present,
    Update,
    Version,
)
from . import layout
from .layout import READY_DEPTH, QueueLayout
from .record import decode, encode, new_nonce
from .task import Claim, Settler, Task, claim_until, claim_value, limit_end

if TYPE_CHECKING:
    from ...backends.base import Backend
    from ...session import Session

_SPREAD = 8  # consumers pick among this many first ready tasks
_CONTENDED_FOR = 1.0  # seconds a consumer spreads its claims after losing a race


class Claimer:
    """Claims the ready tasks of one queue; the tasks it returns are settled by
    ``settler``."""

    def __init__(self, backend: Backend, kv: KeyValue, keys: QueueLayout, settler: Settler) -> None:
        self._backend = backend
        self._kv = kv
        self._keys = keys
        self._settler = settler
        self._contended_until = -math.inf  # lost a claim race lately: spread (see next)

    def next(self, time_limit: float | None = None) -> Task | None:
        """Claim the first ready task; None if there is none (or others won them all).
        Consumers that lately lost races start at a random one of the first few of the
        same priority instead, so that they do not all race for each next head (among
        concurrent consumers, order is not observable)."""
        ready = self._kv.leaves(self._keys.ready_root, READY_DEPTH, _SPREAD)
        if not ready:
            return None
        top = layout.ready_band(ready[0])
        candidates = [key for key in ready if layout.ready_band(key) == top]
        if time.monotonic() < self._contended_until:
            random.shuffle(candidates)  # lately lost races for the head: any will do
        else:  # the head first, then the others in random order
            candidates[1:] = random.sample(candidates[1:], len(candidates) - 1)
        for ready_key in candidates:
            task = self._claim(ready_key, time_limit)
            if task is not None:
                return task
            self._contended_until = time.monotonic() + _CONTENDED_FOR
        return None

    def _claim(self, ready_key: str, time_limit: float | None) -> Task | None:
        _, task_id = layout.leaf(ready_key)
        entry = self._kv.get(self._keys.record(task_id))
        if entry is None:
            return None
        record, data = decode(entry.value)
        if record.state in ("done", "dead"):
            return None  # a stale listing: the ready key is gone already
        session = self._backend.session()
        # Who won is decided by this claim's own nonce, never by the session: the threads
        # of one coordinator share its session, and each must know its own claim.
        nonce = new_nonce()
        until = limit_end(time_limit)
        claimed = record.claimed(nonce)
        # The ready key must still be there: its delete alone would not fail on etcd.
        checks: list[Check] = [Version(entry.key, entry.version),
                               Absent(self._keys.claim(task_id)), Present(ready_key)]
        ops: list[Op] = [
            Delete(ready_key),
            Update(entry.key, encode(claimed, data)),
            Create(self._keys.in_flight(task_id), b""),
            Create(self._keys.claim(task_id), claim_value(session, nonce, until), ephemeral=True),
        ]
        try:
            stamp = self._kv.commit(checks, ops, session)
        except OutcomeUnknown:
            return self._claimed_by_us(task_id, nonce, session)
        if stamp is None:
            return None  # a check failed: another consumer (maybe another thread) won
        written = self._kv.written_version
        claim = Claim(session, written(stamp, entry), written(stamp, None), until)
        return Task(self._settler, claimed, data, stamp, claim)

    def _claimed_by_us(self, task_id: str, nonce: str, session: Session) -> Task | None:
        """After a lost reply: our claim, read back, if it applied and still holds. The
        record carries the nonce of the claim that wrote it last."""
        held = self._kv.get(self._keys.claim(task_id))
        if held is None or not session.alive:
            return None
        current = self._kv.get(self._keys.record(task_id))
        if current is None:
            return None
        record, data = decode(current.value)
        if record.state != "claimed" or record.nonce != nonce:
            return None
        return Task(self._settler, record, data, current.stamp,
                    Claim(session, current.version, claim_version=None,
                          until=claim_until(held.value)))
