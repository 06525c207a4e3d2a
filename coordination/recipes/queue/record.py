"""The task record stored at ``t/ID``: its typed form, its state changes, and its codec.

On the servers a record is a JSON header (compact separators, ASCII), a newline, then
the payload. The header's keys are one or few letters, in this order; those marked
"once ..." are absent until then. Queues written by earlier versions read the same::

    field       key      present
    id          id       always
    priority    p        always
    key         k        always (null: no ordering key)
    attempts    a        always
    seq         s        always: put order, nanoseconds
    due         due      always: when a delayed task becomes ready, ns (0: not delayed)
    position    q        with an ordering key: its leaf name in the key's FIFO
    state       state    once settled: ready, dead or done (claimed: by versions
                         before 2026-12-07, whose claims rewrote the record)
    claims      claims   by versions before 2026-12-07: how many claims
    nonce       n        once settled: written by every ack and nack
    error       e        once failed
    done_at     done     once acked, ns

Keys this version does not know are kept, in ``extra``, and written back.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from ...errors import QueueError

State = Literal["ready", "claimed", "dead", "done"]

#: Longest error text kept in a record.
ERROR_LIMIT = 2000

_KNOWN = frozenset({"id", "p", "k", "a", "s", "due", "q", "state", "claims", "n", "e", "done"})


def new_nonce() -> str:
    """A fresh nonce: the record it is written into tells a lost reply's sender whether
    its commit applied."""
    return uuid.uuid4().hex[:12]


@dataclasses.dataclass(frozen=True)
class TaskRecord:
    """A task's header. Changes return a new record; the caller commits it."""

    id: str
    priority: int
    key: str | None
    attempts: int
    seq: int
    due: int = 0
    position: str | None = None
    state: State | None = None
    claims: int = 0
    nonce: str | None = None
    error: str | None = None
    done_at: int | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def acked(self, nonce: str, done_at: int) -> TaskRecord:
        return dataclasses.replace(self, state="done", nonce=nonce, done_at=done_at)

    def requeued(self, nonce: str, error: str, due: int) -> TaskRecord:
        """Failed, to be delivered again from ``due`` (0: now)."""
        return dataclasses.replace(self, state="ready", nonce=nonce, attempts=self.attempts + 1,
                                   error=error[:ERROR_LIMIT], due=due)

    def returned(self, nonce: str) -> TaskRecord:
        """Given back undelivered: ready now, its attempts and error as they were."""
        return dataclasses.replace(self, state="ready", nonce=nonce, due=0)

    def dead_lettered(self, nonce: str, error: str) -> TaskRecord:
        """Failed for the last time: kept, with its error, until requeued."""
        return dataclasses.replace(self, state="dead", nonce=nonce, attempts=self.attempts + 1,
                                   error=error[:ERROR_LIMIT])

    def revived(self) -> TaskRecord:
        """A dead task with its attempts back to zero, ready now."""
        return dataclasses.replace(self, state="ready", attempts=0, due=0)


def encode(record: TaskRecord, payload: bytes) -> bytes:
    """The stored value of ``record`` with ``payload``."""
    header: dict[str, Any] = {"id": record.id, "p": record.priority, "k": record.key,
                              "a": record.attempts, "s": record.seq, "due": record.due}
    optional = (("q", record.position), ("state", record.state), ("claims", record.claims or None),
                ("n", record.nonce), ("e", record.error), ("done", record.done_at))
    header.update((name, value) for name, value in optional if value is not None)
    header.update(record.extra)
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload


def decode(value: bytes) -> tuple[TaskRecord, bytes]:
    """The record and payload of a stored value. ``QueueError`` if it is no record."""
    head, _, payload = value.partition(b"\n")
    try:
        header = json.loads(head)
        record = TaskRecord(
            id=header["id"], priority=header["p"], key=header.get("k"), attempts=header["a"],
            seq=header["s"], due=header.get("due", 0), position=header.get("q"),
            state=header.get("state"), claims=header.get("claims", 0), nonce=header.get("n"),
            error=header.get("e"), done_at=header.get("done"),
            extra={name: v for name, v in header.items() if name not in _KNOWN},
        )
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise QueueError(f"not a task record: {head[:80]!r}") from e
    return record, payload
