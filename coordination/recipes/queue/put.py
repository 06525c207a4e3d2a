"""Putting tasks: a new record and its index entry in one commit that checks the id is
new, so that a producer retrying after a lost reply stores nothing twice.

A task without an ordering key goes straight to the ready (or delayed) index, up to
``_BATCH`` tasks a commit. A keyed task also joins its key's FIFO and bumps the key's
count; only the first task of a key is indexed at once, the others wait their turn
(``task.Settler`` indexes the next one when a keyed task is acked).
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...backends.kv import Absent, Check, Create, KeyValue, Op, OutcomeUnknown, Update, Version
from ...errors import InvalidArgument
from ...payload import encode_payload
from . import layout, limits
from .bell import Bell
from .codec import Codec
from .layout import QueueLayout
from .record import TaskRecord, encode

_BATCH = 40  # tasks per put_many commit (etcd allows 128 operations per transaction)


class _Clock:
    """Put order: nanoseconds, strictly increasing within this process."""

    def __init__(self) -> None:
        self._last = 0
        self._guard = threading.Lock()
        # A thread of the parent may hold the guard at a fork: the child's is new.
        os.register_at_fork(after_in_child=self._new_guard)

    def _new_guard(self) -> None:
        self._guard = threading.Lock()

    def next(self, count: int = 1) -> int:
        """The first of ``count`` consecutive values, all after any given before: the
        tasks of one ``put_many`` get consecutive nanoseconds, so that they land in one
        time bucket of the ready index (a listing may stop at a bucket's end)."""
        with self._guard:
            first = max(time.time_ns(), self._last + 1)
            self._last = first + count - 1
            return first


_clock = _Clock()


def check_delay(delay: float) -> None:
    """``InvalidArgument`` unless ``delay`` is a finite number of seconds >= 0."""
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) \
            or delay < 0:
        raise InvalidArgument(f"delay must be a number of seconds >= 0, got {delay!r}")


def due_after(delay: float) -> int:
    """The ``due`` of a task held back ``delay`` seconds from now (0: not held back)."""
    return time.time_ns() + int(delay * 1e9) if delay > 0 else 0


def new_record(priority: int, delay: float, key: str | None, id: str | None,
               headers: Mapping[str, str] | None = None, seq: int | None = None) -> TaskRecord:
    """The record of a task about to be put; ``InvalidArgument`` for bad arguments."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidArgument(f"priority must be an int, got {priority!r}")
    if not limits.MIN_PRIORITY <= priority <= limits.MAX_PRIORITY:
        raise InvalidArgument(f"priority must be in [{limits.MIN_PRIORITY}, {limits.MAX_PRIORITY}]")
    check_delay(delay)
    if key is not None and (not isinstance(key, str) or not key or len(key) > 256):
        raise InvalidArgument("key must be a non-empty str of at most 256 characters")
    if id is None:
        id = uuid.uuid4().hex
    elif not isinstance(id, str) or not id or len(id) > 128 or not all(
        c.isalnum() or c in "-_.:@" for c in id
    ):
        raise InvalidArgument("id must be 1-128 characters of letters, digits, -_.:@")
    return TaskRecord(id=id, priority=priority, key=key, attempts=0,
                      seq=_clock.next() if seq is None else seq,
                      due=due_after(delay), extra={"h": dict(headers)} if headers else {})


class Producer:
    """Stores the new tasks of one queue."""

    def __init__(self, kv: KeyValue, keys: QueueLayout, bell: Bell, codec: Codec) -> None:
        self._kv = kv
        self._keys = keys
        self._bell = bell
        self._codec = codec

    def _payload(self, data: Any) -> bytes:
        return encode_payload(self._codec.encode(data), limits.MAX_PAYLOAD)

    def put(self, data: Any, priority: int, delay: float, key: str | None,
            id: str | None, headers: Mapping[str, str]) -> str:
        """See ``Queue.put``; ``headers`` are stored with the task (``Task.headers``)."""
        payload = self._payload(data)
        record = new_record(priority, delay, key, id, headers)
        if record.key is None:
            self._put_unkeyed([(record, payload)])
        else:
            self._put_keyed(record, record.key, payload)
        return record.id

    def put_many(self, items: Iterable[Any], priority: int, delay: float,
                 key: str | None, headers: Mapping[str, str]) -> list[str]:
        """See ``Queue.put_many``."""
        payloads = [self._payload(item) for item in items]
        first = _clock.next(len(payloads))
        tasks = [(new_record(priority, delay, key, None, headers, first + i), payload)
                 for i, payload in enumerate(payloads)]
        if key is not None:
            for record, payload in tasks:
                self._put_keyed(record, key, payload)
        else:
            for start in range(0, len(tasks), _BATCH):
                self._put_unkeyed(tasks[start:start + _BATCH])
        return [record.id for record, _ in tasks]

    def _put_unkeyed(self, tasks: Sequence[tuple[TaskRecord, bytes]]) -> None:
        while tasks:
            checks: list[Check] = [Absent(self._keys.record(r.id)) for r, _ in tasks]
            ops: list[Op] = []
            now = time.time_ns()
            for record, payload in tasks:
                ops += [Create(self._keys.record(record.id), encode(record, payload)),
                        self._keys.index(self._keys.scheduled(record, now), record.id.encode())]
            ops.append(self._bell.ring())
            try:
                if self._kv.commit(checks, ops) is not None:
                    return
            except OutcomeUnknown:
                pass
            # A check failed (an id exists) or the outcome is unknown: store the tasks
            # that are not stored yet.
            tasks = [(r, p) for r, p in tasks if self._kv.get(self._keys.record(r.id)) is None]

    def _put_keyed(self, record: TaskRecord, key: str, payload: bytes) -> None:
        position = layout.position(record)
        record = dataclasses.replace(record, position=position)
        count_key = self._keys.key_count(key)
        task_key = self._keys.record(record.id)
        while True:
            count = self._kv.get(count_key)
            n = int(count.value) if count is not None else 0
            checks: list[Check] = [
                Absent(task_key),
                Version(count_key, count.version) if count else Absent(count_key)]
            ops: list[Op] = [
                Create(task_key, encode(record, payload)),
                Create(self._keys.key_fifo_leaf(key, position), record.id.encode()),
                Update(count_key, str(n + 1).encode()) if count else
                Create(count_key, str(n + 1).encode()),
            ]
            if n == 0:  # first of its key: ready (or delayed) now; else it waits its turn
                ops += [self._keys.index(self._keys.scheduled(record, time.time_ns()),
                                         record.id.encode()),
                        self._bell.ring()]
            try:
                if self._kv.commit(checks, ops) is not None:
                    return
            except OutcomeUnknown:
                pass
            if self._kv.get(task_key) is not None:
                return  # stored (by us before a lost reply, or an earlier put of this id)
