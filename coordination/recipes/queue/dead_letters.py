"""The dead letters: tasks that failed ``max_attempts`` times, kept with their last
error (``d/ID``, the record's state ``dead``) until given new attempts."""

from __future__ import annotations

from ...backends.kv import Delete, KeyValue, OutcomeUnknown, Update, Version
from ...errors import TaskNotFound
from . import layout
from .bell import Bell
from .layout import QueueLayout
from .record import decode, encode
from .task import Settler, Task

_LIST_LIMIT = 10_000


class DeadLetters:
    """The dead letters of the queue that ``settler`` settles tasks of."""

    def __init__(self, kv: KeyValue, keys: QueueLayout, bell: Bell, settler: Settler) -> None:
        self._kv = kv
        self._keys = keys
        self._bell = bell
        self._settler = settler

    def list(self) -> list[Task]:
        """See ``Queue.dead_letters``."""
        result = []
        for dead in self._kv.leaves(self._keys.dead_root, 1, _LIST_LIMIT):
            entry = self._kv.get(self._keys.record(layout.last(dead)))
            if entry is not None:
                record, data = decode(entry.value)
                result.append(Task(self._settler, record, data, entry.stamp, claim=None))
        return result

    def requeue(self, task_id: str) -> None:
        """See ``Queue.requeue_dead``."""
        while True:
            entry = self._kv.get(self._keys.record(str(task_id)))
            dead = self._kv.get(self._keys.dead(str(task_id)))
            if entry is None or dead is None:
                raise TaskNotFound(f"no dead task {task_id!r} in queue {self._settler.name!r}")
            record, data = decode(entry.value)
            revived = record.revived()
            try:
                if self._kv.commit(
                    [Version(entry.key, entry.version), Version(dead.key, dead.version)],
                    [Delete(dead.key), Update(entry.key, encode(revived, data)),
                     self._keys.index(self._keys.ready(revived)), self._bell.ring()],
                ) is not None:
                    return
            except OutcomeUnknown:
                pass
