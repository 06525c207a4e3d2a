"""Where a queue keeps what: the key of every index and record under the queue's root,
and how listed keys are read back (see the package docstring for the picture).

Index leaves are named ``NUMBER.ID`` with fixed-width numbers, so key order is the order
that matters: delivery order for the ready index, due time for the delayed one, ack time
for the done one. Ready and delayed leaves sit in time buckets (``limits.OUTER_NS`` and
``limits.INNER_NS``), done leaves in one-second buckets; the depths below say how many
levels under their index they lie, for ``KeyValue.leaves``/``counts`` and ``Create``.
"""

from __future__ import annotations

import hashlib

from ...backends.kv import Create
from . import limits
from .record import TaskRecord

#: The ``kind`` of queue roots: ``KeyValue.root(KIND, name)``.
KIND = "queues"
RECORDS, READY, DELAYED, IN_FLIGHT, CLAIMS, DEAD, DONE, KEY_FIFOS, KEY_COUNTS, BELL = (
    "t", "r", "w", "f", "c", "d", "x", "k", "n", "bell")
#: The children of a queue's root.
PARTS = frozenset({RECORDS, READY, DELAYED, IN_FLIGHT, CLAIMS, DEAD, DONE, KEY_FIFOS,
                   KEY_COUNTS, BELL})
READY_DEPTH, DELAYED_DEPTH, DONE_DEPTH = 4, 3, 2
_DEPTHS = {READY: READY_DEPTH, DELAYED: DELAYED_DEPTH, DONE: DONE_DEPTH}


def leaf(key: str) -> tuple[int, str]:
    """The number and task id of an index leaf (``.../NUMBER.ID``)."""
    number, task_id = key.rsplit("/", 1)[1].split(".", 1)
    return int(number), task_id


def last(key: str) -> str:
    """The last part of ``key``: the task id of an in-flight, claim or dead key."""
    return key.rsplit("/", 1)[1]


def ready_band(key: str) -> str:
    """The priority part of a ready key: keys of one band are of equal priority."""
    return key.rsplit("/", 4)[1]


def position(record: TaskRecord) -> str:
    """A keyed task's leaf name in its key's FIFO (stored in the record as ``position``)."""
    return f"{record.seq:020d}.{record.id}"


def key_dir(key: str) -> str:
    """The directory name of ordering key ``key`` (free text): a hash, of fixed length."""
    return hashlib.sha1(key.encode()).hexdigest()[:24]


def _buckets(ns: int) -> tuple[str, str]:
    return f"{ns // limits.OUTER_NS:010d}", f"{ns // limits.INNER_NS:013d}"


class QueueLayout:
    """The keys of the queue whose root is ``root``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.bell = self._k(BELL)
        self.ready_root, self.delayed_root, self.done_root = (
            self._k(READY), self._k(DELAYED), self._k(DONE))
        self.in_flight_root, self.dead_root, self.records_root = (
            self._k(IN_FLIGHT), self._k(DEAD), self._k(RECORDS))

    def __repr__(self) -> str:
        return f"<QueueLayout {self.root!r}>"

    def _k(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def record(self, task_id: str) -> str:
        return self._k(RECORDS, task_id)

    def in_flight(self, task_id: str) -> str:
        return self._k(IN_FLIGHT, task_id)

    def claim(self, task_id: str) -> str:
        return self._k(CLAIMS, task_id)

    def dead(self, task_id: str) -> str:
        return self._k(DEAD, task_id)

    def ready(self, record: TaskRecord) -> str:
        return self._k(READY, f"{limits.MAX_PRIORITY - record.priority:03d}",
                       *_buckets(record.seq), f"{record.seq:020d}.{record.id}")

    def delayed(self, record: TaskRecord) -> str:
        return self._k(DELAYED, *_buckets(record.due), f"{record.due:020d}.{record.id}")

    def done(self, task_id: str, done_at: int) -> str:
        return f"{self.done_bucket(done_at // 10**9)}/{done_at:020d}.{task_id}"

    def done_bucket(self, second: int) -> str:
        """The done index's bucket of the tasks acked in ``second`` (Unix time)."""
        return self._k(DONE, f"{second:011d}")

    def scheduled(self, record: TaskRecord, now: int) -> str:
        """Its delayed key if ``record`` is due after ``now`` (ns), else its ready key."""
        return self.delayed(record) if record.due > now else self.ready(record)

    def index(self, key: str, value: bytes = b"") -> Create:
        """The op adding ``key`` (a ready, delayed or done key) to its index."""
        part = key[len(self.root) + 1:].split("/", 1)[0]
        return Create(key, value, depth=_DEPTHS[part])

    def key_fifo(self, key: str) -> str:
        """The FIFO of ordering key ``key``: its tasks' ``position`` leaves, depth 1."""
        return self._k(KEY_FIFOS, key_dir(key))

    def key_fifo_leaf(self, key: str, position: str) -> str:
        return self._k(KEY_FIFOS, key_dir(key), position)

    def key_count(self, key: str) -> str:
        """How many tasks ordering key ``key`` has (a decimal; absent: none)."""
        return self._k(KEY_COUNTS, key_dir(key))
