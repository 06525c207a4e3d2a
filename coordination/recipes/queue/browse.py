"""Looking at a queue and clearing it without claiming: ``peek`` and ``purge``.

``purge`` removes every task that is not in flight: ready, delayed, blocked behind its
ordering key, dead. Each removal is a commit that checks the task is still where it was
listed (a task claimed meanwhile is left to its worker), up to ``_BATCH`` tasks a
commit. Tasks with an ordering key go a key at a time: the key's FIFO and count are
rewritten in the same commit, keeping the one task of the key that may be in flight.
Acked tasks' headers stay until the dedupe window has passed, as after any ack.
"""

from __future__ import annotations

from collections.abc import Callable

from ...backends.kv import (
    Absent,
    Check,
    Delete,
    Entry,
    KeyValue,
    Op,
    OutcomeUnknown,
    Present,
    Update,
    Version,
)
from . import layout
from .layout import DELAYED_DEPTH, KEY_COUNTS, READY_DEPTH, QueueLayout
from .record import TaskRecord, decode
from .task import Settler, Task

_BATCH = 25  # tasks per purge commit: etcd allows 128 operations per transaction
_ROUNDS = 1000  # commits that failed a check before purge gives up on a listing


class Browser:
    """``peek`` and ``purge`` of the queue whose tasks ``settler`` settles."""

    def __init__(self, kv: KeyValue, keys: QueueLayout, settler: Settler) -> None:
        self._kv = kv
        self._keys = keys
        self._settler = settler

    def peek(self, n: int) -> list[Task]:
        """See ``Queue.peek``."""
        tasks = []
        for ready_key in self._kv.leaves(self._keys.ready_root, READY_DEPTH, n):
            entry = self._kv.get(self._keys.record(layout.leaf(ready_key)[1]))
            if entry is not None:
                record, data = decode(entry.value)
                if record.state in (None, "ready"):
                    tasks.append(Task(self._settler, record, data, entry.stamp, claim=None))
        return tasks

    def purge(self) -> int:
        """See ``Queue.purge``."""
        removed = 0
        keys = self._keys
        for root, depth, leaf_id in ((keys.ready_root, READY_DEPTH, _indexed),
                                     (keys.delayed_root, DELAYED_DEPTH, _indexed),
                                     (keys.dead_root, 1, layout.last)):
            for _round in range(_ROUNDS):
                listed = self._kv.leaves(root, depth, _BATCH)
                if not listed:
                    break
                removed += self._remove(listed, leaf_id)
        for count_key in self._kv.leaves(f"{keys.root}/{KEY_COUNTS}", 1, 100_000):
            removed += self._purge_key_by_count(count_key)
        return removed

    def _remove(self, listed: list[str], leaf_id: Callable[[str], str]) -> int:
        """Remove the listed tasks (index or dead keys); keyed ones with their key."""
        plain: list[tuple[str, Entry]] = []
        removed = 0
        for key in listed:
            entry = self._kv.get(self._keys.record(leaf_id(key)))
            if entry is None:  # a listing whose task is gone: left over, remove it too
                self._apply([Present(key)], [Delete(key)])
                continue
            record, _ = decode(entry.value)
            if record.key is not None:
                removed += self._purge_key(record.key)
            else:
                plain.append((key, entry))
        if plain and self._commit_removals(plain):
            return removed + len(plain)
        for one in plain:  # a check failed: one at a time, each as it is now
            removed += self._commit_removals([one])
        return removed

    def _commit_removals(self, tasks: list[tuple[str, Entry]]) -> int:
        checks: list[Check] = []
        ops: list[Op] = []
        for listed_key, entry in tasks:
            checks += [Version(entry.key, entry.version), Present(listed_key)]
            ops += [Delete(listed_key), Delete(entry.key)]
        return len(tasks) if self._apply(checks, ops) else 0

    def _purge_key_by_count(self, count_key: str) -> int:
        """The tasks of the key whose count is ``count_key``: found by its FIFO's first."""
        fifo = f"{self._keys.root}/{layout.KEY_FIFOS}/{layout.last(count_key)}"
        first = self._kv.leaves(fifo, 1, 1)
        if not first:
            return 0
        entry = self._kv.get(self._keys.record(_indexed(first[0])))
        if entry is None:
            return 0
        record, _ = decode(entry.value)
        return self._purge_key(record.key) if record.key is not None else 0

    def _purge_key(self, key: str) -> int:
        """Remove the tasks of ordering key ``key`` that are not in flight, from the
        last: after every commit the key's first task is still the indexed one (or in
        flight), so a purge cut short leaves a key that works."""
        removed = 0
        for _round in range(_ROUNDS):
            count = self._kv.get(self._keys.key_count(key))
            if count is None:
                return removed
            listed = self._kv.leaves(self._keys.key_fifo(key), 1, 1000)
            checks: list[Check] = [Version(count.key, count.version)]
            ops: list[Op] = []
            going = 0
            for leaf in reversed(listed):
                entry = self._kv.get(self._keys.record(_indexed(leaf)))
                if entry is None:
                    continue
                record, _ = decode(entry.value)
                checks.append(Version(entry.key, entry.version))
                in_flight = self._keys.in_flight(record.id)
                if self._kv.get(in_flight) is not None:
                    continue  # its worker settles it; its turn ends then
                checks.append(Absent(in_flight))  # a claim does not rewrite the record
                ops += [Delete(entry.key), Delete(leaf), *self._listings(record, checks)]
                going += 1
                if going == _BATCH:
                    break
            if going == 0:
                return removed
            left = int(count.value) - going
            ops.append(Update(count.key, str(left).encode()) if left > 0 else Delete(count.key))
            if self._apply(checks, ops):
                removed += going
        return removed

    def _listings(self, record: TaskRecord, checks: list[Check]) -> list[Op]:
        """The deletes of the index or dead keys that list ``record`` now."""
        ops: list[Op] = []
        for key in (self._keys.ready(record), self._keys.delayed(record), self._keys.dead(record.id)):
            if self._kv.get(key) is not None:
                checks.append(Present(key))
                ops.append(Delete(key))
        return ops

    def _apply(self, checks: list[Check], ops: list[Op]) -> bool:
        try:
            return self._kv.commit(checks, ops) is not None
        except OutcomeUnknown:
            return False  # the next listing shows what is left


def _indexed(key: str) -> str:
    """The task id of an index or FIFO leaf (``.../NUMBER.ID``)."""
    return layout.leaf(key)[1]
