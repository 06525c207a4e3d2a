"""An at-least-once work queue with acks, retries, priorities, delays, ordering keys and
dead letters, over the backend's transactional key-value primitive (``kv.py``).

Layout under the queue's root (fixed-width names, so key order is delivery order)::

    t/ID                        task record: JSON header, newline, payload
    r/PRI/B1/B2/SEQ.ID          ready index (PRI: 100 - priority, so higher comes first)
    w/B1/B2/DUE.ID              delayed index, by due time
    f/ID                        in flight (persistent) ...
    c/ID                        ... and its claim, tied to the worker's session
    d/ID                        dead letters
    x/SECOND/DONE.ID            acked tasks, by ack time: their t/ID (header only) stays
                                for DEDUPE_WINDOW seconds so a retried put is a no-op
    k/KEY/SEQ.ID, n/KEY         per ordering key: its FIFO and the count of its tasks
    bell                        touched by every change that may make a task ready

Every state change is one atomic commit with checks, so a task is in exactly one index.
A claim is the pair ``f/ID`` + ephemeral ``c/ID`` plus a new version of ``t/ID``; its
token is the stamp of that commit. ``ack``/``nack`` check that version: if the claim was
lost and the task handed out again, they raise ``ClaimLost`` and change nothing. A claim
whose ``c/ID`` vanished with its session is put back (attempts + 1) by any consumer.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from ..backends.base import Backend
from ..backends.kv import (
    Absent,
    Check,
    Create,
    Delete,
    Entry,
    Op,
    OutcomeUnknown,
    Present,
    Update,
    Version,
)
from ..errors import (
    AlreadyAcknowledged,
    ClaimLost,
    InvalidArgument,
    QueueError,
    SessionLost,
    TaskNotFound,
    UncertainOutcome,
    WrongQueue,
)
from ..names import validate_name
from ..payload import encode_payload
from .lock import check_timeout

MIN_PRIORITY, MAX_PRIORITY = -100, 100
#: Safe payload size: below ZooKeeper's 1 MiB packet and etcd's 1.5 MiB request limit.
MAX_PAYLOAD = 900 * 1024
#: Ready and delayed keys sit in two levels of time buckets (100 s, then 0.1 s), so no
#: ZooKeeper listing nears its 1 MB packet limit, even with a million waiting tasks.
OUTER_NS, INNER_NS = 10**11, 10**8
_READY_DEPTH, _DELAYED_DEPTH, _DONE_DEPTH = 4, 3, 2
_BATCH = 40  # tasks per put_many commit (etcd allows 128 operations per transaction)
#: How long an acked task's id is remembered: a put with that id meanwhile stores nothing.
DEDUPE_WINDOW = 300.0
_GC_BATCH, _GC_ROUNDS = 40, 25  # acked tasks forgotten per commit; commits per reap
_SPREAD = 8  # consumers pick among this many first ready tasks
_CONTENDED_FOR = 1.0  # seconds a consumer spreads its claims after losing a race
#: While tasks are ready, a consumer promotes due delayed tasks and reaps lost claims at
#: most this often (seconds); an idle consumer does it before every wait.
MAINTAIN_EVERY = 0.1


class _Clock:
    """Put order: nanoseconds, strictly increasing within this process."""

    def __init__(self) -> None:
        self._last = 0
        self._guard = threading.Lock()
        # A thread of the parent may hold the guard at a fork: the child's is new.
        os.register_at_fork(after_in_child=self._new_guard)

    def _new_guard(self) -> None:
        self._guard = threading.Lock()

    def next(self) -> int:
        with self._guard:
            self._last = max(time.time_ns(), self._last + 1)
            return self._last


_clock = _Clock()


class Task:
    """A claimed task. ``token`` is a fencing token for side effects: it grows across
    successive claims of the task. Use as a context manager to ack on success and nack
    on an exception."""

    def __init__(self, queue: Queue, header: dict[str, Any], data: bytes, version: int,
                 token: int, claim_version: int | None = None) -> None:
        self._queue = queue
        self._header = header
        self.id: str = header["id"]
        self.data = data
        self.priority: int = header["p"]
        self.key: str | None = header["k"]
        self.attempts: int = header["a"]
        self.error: str | None = header.get("e")
        self.token = token
        self._version = version
        self._claim_version = claim_version  # of c/ID; None: unknown, read it to check
        self._settled = False

    def __repr__(self) -> str:
        return f"<Task {self.id} priority={self.priority} key={self.key} attempts={self.attempts}>"

    @property
    def queue_name(self) -> str:
        return self._queue.name

    def ack(self) -> None:
        """Done: remove the task for good. ``ClaimLost`` if the claim is gone."""
        self._queue.ack(self)

    def nack(self, delay: float = 0.0, error: str | None = None) -> None:
        """Failed: back in the queue after ``delay`` (attempts + 1), or to the dead
        letters after ``max_attempts``. ``ClaimLost`` if the claim is gone."""
        self._queue.nack(self, delay=delay, error=error)

    def __enter__(self) -> Task:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.ack()
        elif not self._settled:
            self.nack(error=f"{exc_type.__name__}: {exc}")


class Queue:
    """A named work queue; the same name is the same queue in every process."""

    def __init__(self, backend: Backend, name: str, max_attempts: int = 5) -> None:
        validate_name(name, "queue name")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidArgument(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        self.name = name
        self.max_attempts = max_attempts
        self._backend = backend
        self._root = backend.kv.root("queues", name)
        self._bell = f"{self._root}/bell"
        self._bell_made = False
        self._last_reap = 0.0
        self._last_maintained = -math.inf
        self._contended_until = -math.inf  # lost a claim race lately: spread (see _try_claim)

    def __repr__(self) -> str:
        return f"<Queue {self.name!r}>"

    # --- keys ----------------------------------------------------------------------------

    def _k(self, *parts: str) -> str:
        return "/".join((self._root, *parts))

    @staticmethod
    def _buckets(ns: int) -> tuple[str, str]:
        return f"{ns // OUTER_NS:010d}", f"{ns // INNER_NS:013d}"

    def _ready_key(self, h: dict[str, Any]) -> str:
        return self._k("r", f"{MAX_PRIORITY - h['p']:03d}", *self._buckets(h["s"]),
                       f"{h['s']:020d}.{h['id']}")

    def _done_key(self, h: dict[str, Any]) -> str:
        return self._k("x", f"{h['done'] // 10**9:011d}", f"{h['done']:020d}.{h['id']}")

    def _delayed_key(self, h: dict[str, Any]) -> str:
        return self._k("w", *self._buckets(h["due"]), f"{h['due']:020d}.{h['id']}")

    def _index(self, key: str, value: bytes) -> Create:
        """Op adding ``key`` to the ready, delayed or done index (listed by depth)."""
        part = key[len(self._root) + 1]
        return Create(key, value, depth={"r": _READY_DEPTH, "w": _DELAYED_DEPTH,
                                         "x": _DONE_DEPTH}[part])

    def _key_dir(self, key: str) -> str:
        return hashlib.sha1(key.encode()).hexdigest()[:24]

    def _index_key(self, h: dict[str, Any]) -> str:
        return self._delayed_key(h) if h.get("due", 0) > time.time_ns() else self._ready_key(h)

    @staticmethod
    def _pack(h: dict[str, Any], data: bytes) -> bytes:
        return json.dumps(h, separators=(",", ":")).encode() + b"\n" + data

    @staticmethod
    def _unpack(value: bytes) -> tuple[dict[str, Any], bytes]:
        header, _, data = value.partition(b"\n")
        return json.loads(header), data

    # --- put -----------------------------------------------------------------------------

    def _header(self, priority: int, delay: float, key: str | None, id: str | None) -> dict[str, Any]:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidArgument(f"priority must be an int, got {priority!r}")
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise InvalidArgument(f"priority must be in [{MIN_PRIORITY}, {MAX_PRIORITY}]")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) \
                or delay < 0:
            raise InvalidArgument(f"delay must be a number of seconds >= 0, got {delay!r}")
        if key is not None and (not isinstance(key, str) or not key or len(key) > 256):
            raise InvalidArgument("key must be a non-empty str of at most 256 characters")
        if id is None:
            id = uuid.uuid4().hex
        elif not isinstance(id, str) or not id or len(id) > 128 or not all(
            c.isalnum() or c in "-_.:@" for c in id
        ):
            raise InvalidArgument("id must be 1-128 characters of letters, digits, -_.:@")
        seq = _clock.next()
        due = time.time_ns() + int(delay * 1e9) if delay > 0 else 0
        return {"id": id, "p": priority, "k": key, "a": 0, "s": seq, "due": due}

    def put(self, data: bytes | str, priority: int = 0, delay: float = 0.0,
            key: str | None = None, id: str | None = None) -> str:
        """Store a task; its id. With an ``id`` already in the queue, or acked less than
        ``DEDUPE_WINDOW`` seconds ago, nothing is stored again (a producer may retry
        after a lost reply, even once the task was handled). Raises ``InvalidPayload``,
        ``PayloadTooLarge``, ``InvalidArgument``, ``BackendUnavailable``."""
        payload = encode_payload(data, MAX_PAYLOAD)
        header = self._header(priority, delay, key, id)
        if key is None:
            self._commit_puts([(header, payload)])
        else:
            self._put_keyed(header, payload)
        return header["id"]

    def put_many(self, items: Iterable[bytes | str], priority: int = 0, delay: float = 0.0,
                 key: str | None = None) -> list[str]:
        """Store several tasks (one commit per batch of up to 40 where there is no key)."""
        payloads = [encode_payload(item, MAX_PAYLOAD) for item in items]
        tasks = [(self._header(priority, delay, key, None), p) for p in payloads]
        if key is not None:
            for header, payload in tasks:
                self._put_keyed(header, payload)
        else:
            for start in range(0, len(tasks), _BATCH):
                self._commit_puts(tasks[start:start + _BATCH])
        return [header["id"] for header, _ in tasks]

    def _commit_puts(self, tasks: Sequence[tuple[dict[str, Any], bytes]]) -> None:
        while tasks:
            checks = [Absent(self._k("t", h["id"])) for h, _ in tasks]
            ops: list[Op] = []
            for h, payload in tasks:
                ops += [Create(self._k("t", h["id"]), self._pack(h, payload)),
                        self._index(self._index_key(h), h["id"].encode())]
            ops.append(self._ring())
            try:
                if self._backend.kv.commit(checks, ops) is not None:
                    return
            except OutcomeUnknown:
                pass
            # A check failed (an id exists) or the outcome is unknown: store the tasks
            # that are not stored yet.
            tasks = [(h, p) for h, p in tasks
                     if self._backend.kv.get(self._k("t", h["id"])) is None]

    def _ring(self) -> Op:
        """The op that wakes waiting consumers: a write of the bell key, made once."""
        if not self._bell_made:
            if self._backend.kv.get(self._bell) is None:
                try:
                    self._backend.kv.commit([Absent(self._bell)], [Create(self._bell, b"")])
                except OutcomeUnknown:
                    pass
            self._bell_made = True
        return Update(self._bell, b"")

    def _put_keyed(self, h: dict[str, Any], payload: bytes) -> None:
        kd = self._key_dir(h["k"])
        count_key = self._k("n", kd)
        task_key = self._k("t", h["id"])
        h["q"] = f"{h['s']:020d}.{h['id']}"
        while True:
            count = self._backend.kv.get(count_key)
            n = int(count.value) if count is not None else 0
            checks = [Absent(task_key),
                      Version(count_key, count.version) if count else Absent(count_key)]
            ops: list[Op] = [
                Create(task_key, self._pack(h, payload)),
                Create(self._k("k", kd, h["q"]), h["id"].encode()),
                Update(count_key, str(n + 1).encode()) if count else
                Create(count_key, str(n + 1).encode()),
            ]
            if n == 0:  # first of its key: ready (or delayed) now; else it waits its turn
                ops += [self._index(self._index_key(h), h["id"].encode()), self._ring()]
            try:
                if self._backend.kv.commit(checks, ops) is not None:
                    return
            except OutcomeUnknown:
                pass
            if self._backend.kv.get(task_key) is not None:
                return  # stored (by us before a lost reply, or an earlier put of this id)

    # --- get -----------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Task | None:
        """Claim the next task (highest priority, then oldest); None after ``timeout``
        seconds without one (``timeout=0``: only look once)."""
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            maintained = time.monotonic() - self._last_maintained >= MAINTAIN_EVERY
            if maintained:
                self._maintain()
            task = self._try_claim()
            if task is not None:
                return task
            # Nothing ready: read the bell before the last look, so that a put after
            # that look rings a bell we wait on. Maintenance runs once per round: what it
            # made ready before that look, the look sees.
            bell = self._backend.kv.get(self._bell)
            if not maintained:
                self._maintain()
            task = self._try_claim()
            if task is not None:
                return task
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            ttl = self._backend.session_ttl
            wait = ttl / 2 if remaining is None else min(remaining, ttl / 2)
            next_due = self._next_due()
            if next_due is not None:
                wait = min(wait, max(0.01, next_due))
            self._backend.kv.wait(self._bell, bell, wait)

    def _try_claim(self) -> Task | None:
        """Claim the first ready task. Consumers that lately lost races start at a random
        one of the first few of the same priority instead, so that they do not all race
        for each next head (among concurrent consumers, order is not observable)."""
        ready = self._backend.kv.leaves(self._k("r"), _READY_DEPTH, _SPREAD)
        if not ready:
            return None
        top = ready[0].rsplit("/", 4)[1]
        candidates = [key for key in ready if key.rsplit("/", 4)[1] == top]
        if time.monotonic() < self._contended_until:
            random.shuffle(candidates)  # lately lost races for the head: any will do
        else:  # the head first, then the others in random order
            candidates[1:] = random.sample(candidates[1:], len(candidates) - 1)
        for ready_key in candidates:
            task = self._claim(ready_key)
            if task is not None:
                return task
            self._contended_until = time.monotonic() + _CONTENDED_FOR
        return None

    def _claim(self, ready_key: str) -> Task | None:
        task_id = ready_key.rsplit("/", 1)[1].split(".", 1)[1]
        record = self._backend.kv.get(self._k("t", task_id))
        if record is None:
            return None
        h, data = self._unpack(record.value)
        if h.get("state") in ("done", "dead"):
            return None  # a stale listing: the ready key is gone already
        session = self._backend.session()
        # Who won is decided by this claim's own nonce, never by the session: the threads
        # of one coordinator share its session, and each must know its own claim.
        nonce = uuid.uuid4().hex[:12]
        h.update(state="claimed", claims=h.get("claims", 0) + 1, n=nonce)
        # The ready key must still be there: its delete alone would not fail on etcd.
        checks: list[Check] = [Version(record.key, record.version), Absent(self._k("c", task_id)),
                               Present(ready_key)]
        ops: list[Op] = [
            Delete(ready_key),
            Update(record.key, self._pack(h, data)),
            Create(self._k("f", task_id), b""),
            Create(self._k("c", task_id), f"{session.id}:{nonce}".encode(), ephemeral=True),
        ]
        try:
            stamp = self._backend.kv.commit(checks, ops, session)
        except OutcomeUnknown:
            return self._claimed_by_us(record.key, task_id, nonce, session)
        if stamp is None:
            return None  # a check failed: another consumer (maybe another thread) won
        written = self._backend.kv.written_version
        task = Task(self, h, data, written(stamp, record), stamp, written(stamp, None))
        task._session = session  # type: ignore[attr-defined]
        return task

    def _claimed_by_us(self, record_key: str, task_id: str, nonce: str, session: Any) -> Task | None:
        """After a lost reply: our claim, read back, if it applied and still holds. The
        record carries the nonce of the claim that wrote it last."""
        if self._backend.kv.get(self._k("c", task_id)) is None or not session.alive:
            return None
        current = self._backend.kv.get(record_key)
        if current is None:
            return None
        h, data = self._unpack(current.value)
        if h.get("state") != "claimed" or h.get("n") != nonce:
            return None
        task = Task(self, h, data, current.version, current.stamp)
        task._session = session  # type: ignore[attr-defined]
        return task

    # --- settle --------------------------------------------------------------------------

    def _check_mine(self, task: Task) -> None:
        """The checks that need no server: the right queue, not settled, session alive."""
        if task._queue is not self and (task._queue.name != self.name
                                         or task._queue._backend is not self._backend):
            raise WrongQueue(f"task {task.id} belongs to queue {task.queue_name!r}")
        if task._settled:
            raise AlreadyAcknowledged(f"task {task.id} was already acked or nacked")
        session = getattr(task, "_session", None)
        if session is None or not session.alive:
            raise ClaimLost(f"the claim on task {task.id} is lost")

    def _own(self, task: Task) -> Entry:
        """The task's record, read back, if our claim on it still holds; else ClaimLost."""
        self._check_mine(task)
        record = self._backend.kv.get(self._k("t", task.id))
        claim = self._backend.kv.get(self._k("c", task.id))
        if record is None or record.version != task._version or claim is None:
            raise ClaimLost(f"the claim on task {task.id} is lost")
        return record

    def ack(self, task: Task) -> None:
        """See :meth:`Task.ack`."""
        self._settle(task, done=True)

    def nack(self, task: Task, delay: float = 0.0, error: str | None = None) -> None:
        """See :meth:`Task.nack`."""
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0 \
                or not math.isfinite(delay):
            raise InvalidArgument(f"delay must be a number of seconds >= 0, got {delay!r}")
        self._settle(task, done=False, delay=delay, error=error or "nack")

    def _settle(self, task: Task, done: bool, delay: float = 0.0, error: str = "") -> None:
        try:
            self._settle_once(task, done, delay, error)
        except SessionLost:
            raise ClaimLost(f"the claim on task {task.id} is lost with its session") from None

    def _settle_once(self, task: Task, done: bool, delay: float, error: str) -> None:
        self._check_mine(task)
        if task._claim_version is None:
            record = self._own(task)
        else:  # what our claim wrote; the checks below fail if anything changed since
            record = Entry(self._k("t", task.id), self._pack(dict(task._header), task.data),
                           task._version, task.token)
        while True:
            h, data = self._unpack(record.value)
            checks: list[Any] = [Version(record.key, record.version)]
            if task._claim_version is not None:
                checks.append(Version(self._k("c", task.id), task._claim_version))
            ops: list[Op] = [Delete(self._k("c", task.id)), Delete(self._k("f", task.id))]
            if done:
                # Keep the header as a tombstone (a retried put finds it); a fresh nonce
                # tells a lost reply's sender whether this ack applied.
                ops += self._release_key(h, checks)
                h.update(state="done", n=uuid.uuid4().hex[:12], done=time.time_ns())
                ops += [Update(record.key, self._pack(h, b"")), self._index(self._done_key(h), b"")]
            else:
                ops += self._requeue(h, data, record.key, delay, error)
            session = getattr(task, "_session", None)
            try:
                if self._backend.kv.commit(checks, ops, session) is not None:
                    task._settled = True
                    return
            except OutcomeUnknown:
                if self._settled_by_us(task, record, done, h.get("n"), session):
                    task._settled = True
                    return
            # Not applied: a concurrent put of the same key, or the claim was lost;
            # _own() tells which (ClaimLost, or the record for another round).
            record = self._own(task)

    def _settled_by_us(self, task: Task, record: Entry, done: bool, nonce: str | None,
                       session: Any) -> bool:
        """After a lost reply: did our ack/nack apply? False if it did not (the caller
        retries, and finds out whether the claim is still ours); ``ClaimLost`` if the
        task changed hands; ``UncertainOutcome`` if nobody can tell."""
        current = self._backend.kv.get(record.key)
        if current is not None and current.version == record.version:
            return False  # nothing happened
        if current is not None:  # our ack or nack wrote our nonce into the record
            if self._unpack(current.value)[0].get("n") == nonce:
                return True
            raise ClaimLost(f"task {task.id} changed hands while its "
                            f"{'ack' if done else 'nack'} was in flight")
        if done and session is not None and session.alive:
            return True  # our claim kept others out: our ack, then forgotten after the window
        raise UncertainOutcome(
            f"the ack of task {task.id} may or may not have applied: the reply and the "
            "session were lost; the task is either done or will be delivered again")

    def _requeue(self, h: dict[str, Any], data: bytes, record_key: str, delay: float,
                 error: str) -> list[Op]:
        """Ops putting a failed task back, or into the dead letters after max_attempts.
        A fresh nonce in the record tells a lost reply's sender whether it applied."""
        h["n"] = uuid.uuid4().hex[:12]
        h["a"] += 1
        h["e"] = error[:2000]
        h["state"] = "ready"
        if h["a"] >= self.max_attempts:
            h["state"] = "dead"
            return [Update(record_key, self._pack(h, data)), Create(self._k("d", h["id"]), b"")]
        h["due"] = time.time_ns() + int(delay * 1e9) if delay > 0 else 0
        return [Update(record_key, self._pack(h, data)), self._index(self._index_key(h), b""),
                self._ring()]

    def _release_key(self, h: dict[str, Any], checks: list[Any]) -> list[Op]:
        """Ops ending a keyed task's turn: the next task of its key becomes ready."""
        if h.get("k") is None:
            return []
        kd = self._key_dir(h["k"])
        count_key = self._k("n", kd)
        count = self._backend.kv.get(count_key)
        if count is None:
            raise QueueError(f"queue {self.name!r}: the task count of ordering key "
                             f"{h['k']!r} is gone (removed by another client?)")
        checks.append(Version(count_key, count.version))
        n = int(count.value) - 1
        ops: list[Op] = [Delete(self._k("k", kd, h["q"]))]
        ops.append(Update(count_key, str(n).encode()) if n > 0 else Delete(count_key))
        if n > 0:
            following = [k for k in self._backend.kv.leaves(self._k("k", kd), 1, 2)
                         if not k.endswith("/" + h["q"])]
            if following:
                next_id = following[0].rsplit("/", 1)[1].split(".", 1)[1]
                nxt = self._backend.kv.get(self._k("t", next_id))
                if nxt is not None:
                    nh, _ = self._unpack(nxt.value)
                    checks.append(Version(nxt.key, nxt.version))
                    ops += [self._index(self._index_key(nh), b""), self._ring()]
        return ops

    # --- maintenance: due delayed tasks, and claims lost with their session -----------------

    def _next_due(self) -> float | None:
        first = self._backend.kv.leaves(self._k("w"), _DELAYED_DEPTH, 1)
        if not first:
            return None
        due = int(first[0].rsplit("/", 1)[1].split(".", 1)[0])
        return (due - time.time_ns()) / 1e9

    def _maintain(self) -> None:
        self._last_maintained = time.monotonic()
        now = time.time_ns()
        for delayed in self._backend.kv.leaves(self._k("w"), _DELAYED_DEPTH, 16):
            due, task_id = delayed.rsplit("/", 1)[1].split(".", 1)
            if int(due) > now:
                break
            record = self._backend.kv.get(self._k("t", task_id))
            if record is None:
                continue
            h, _ = self._unpack(record.value)
            h["due"] = 0
            try:
                self._backend.kv.commit(
                    [Version(record.key, record.version), Version(delayed, self._version_of(delayed))],
                    [Delete(delayed), self._index(self._ready_key(h), b"")],
                )
            except OutcomeUnknown:
                pass
        ttl = self._backend.session_ttl
        if time.monotonic() - self._last_reap >= ttl / 4:
            self._last_reap = time.monotonic()
            self._reap()
            for _round in range(_GC_ROUNDS):
                if self._forget_acked() < _GC_BATCH:
                    break

    def _forget_acked(self) -> int:
        """Delete the tombstones of up to ``_GC_BATCH`` tasks acked more than
        ``DEDUPE_WINDOW`` ago; how many were due. The ``Present`` check keeps two
        consumers from deleting a newer task of the same id."""
        horizon = time.time_ns() - int(DEDUPE_WINDOW * 1e9)
        expired = []
        for done in self._backend.kv.leaves(self._k("x"), _DONE_DEPTH, _GC_BATCH):
            when, task_id = done.rsplit("/", 1)[1].split(".", 1)
            if int(when) > horizon:
                break
            expired.append((done, task_id))
        if not expired:
            return 0
        checks: list[Check] = [Present(done) for done, _ in expired]
        ops: list[Op] = [Delete(done) for done, _ in expired]
        ops += [Delete(self._k("t", task_id)) for _, task_id in expired]
        try:
            self._backend.kv.commit(checks, ops)
        except OutcomeUnknown:
            pass  # done or not, the next round sees
        return len(expired)

    def _version_of(self, key: str) -> int:
        entry = self._backend.kv.get(key)
        return -1 if entry is None else entry.version

    def _reap(self) -> None:
        """Put back the tasks whose claim vanished with its worker's session."""
        for flight in self._backend.kv.leaves(self._k("f"), 1, 1000):
            task_id = flight.rsplit("/", 1)[1]
            if self._backend.kv.get(self._k("c", task_id)) is not None:
                continue
            record = self._backend.kv.get(self._k("t", task_id))
            if record is None:
                continue
            h, data = self._unpack(record.value)
            if h.get("state") != "claimed":
                continue  # acked or nacked since we listed it
            # The in-flight key must still be there: its delete alone would not fail on etcd.
            checks: list[Any] = [Version(record.key, record.version), Absent(self._k("c", task_id)),
                                 Present(flight)]
            ops: list[Op] = [Delete(flight)]
            ops += self._requeue(h, data, record.key, 0.0, "claim lost: worker session ended")
            try:
                self._backend.kv.commit(checks, ops)
            except OutcomeUnknown:
                pass

    # --- inspection ----------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counts: ``pending`` (ready now), ``delayed``, ``blocked`` (behind an earlier
        task of their key), ``in_flight``, ``dead``; read as of one instant, so a task
        moving meanwhile is counted once (see ``Backend.kv_counts``)."""
        pending, delayed, in_flight, dead, records, done = self._backend.kv.counts([
            (self._k("r"), _READY_DEPTH), (self._k("w"), _DELAYED_DEPTH), (self._k("f"), 1),
            (self._k("d"), 1), (self._k("t"), 1), (self._k("x"), _DONE_DEPTH)])
        total = records - done
        blocked = max(0, total - pending - delayed - in_flight - dead)
        return {"pending": pending, "delayed": delayed, "blocked": blocked,
                "in_flight": in_flight, "dead": dead}

    def __len__(self) -> int:
        stats = self.stats()
        return stats["pending"] + stats["delayed"] + stats["blocked"]

    def dead_letters(self) -> list[Task]:
        """The dead tasks, with their last error in ``task.error`` (not claimed)."""
        result = []
        for dead in self._backend.kv.leaves(self._k("d"), 1, 10_000):
            record = self._backend.kv.get(self._k("t", dead.rsplit("/", 1)[1]))
            if record is not None:
                h, data = self._unpack(record.value)
                task = Task(self, h, data, record.version, record.stamp)
                task._settled = True
                result.append(task)
        return result

    def requeue_dead(self, task_id: str) -> None:
        """Give a dead task ``max_attempts`` new attempts. ``TaskNotFound`` if not dead."""
        while True:
            record = self._backend.kv.get(self._k("t", str(task_id)))
            dead = self._backend.kv.get(self._k("d", str(task_id)))
            if record is None or dead is None:
                raise TaskNotFound(f"no dead task {task_id!r} in queue {self.name!r}")
            h, data = self._unpack(record.value)
            h.update(a=0, state="ready", due=0)
            try:
                if self._backend.kv.commit(
                    [Version(record.key, record.version), Version(dead.key, dead.version)],
                    [Delete(dead.key), Update(record.key, self._pack(h, data)),
                     self._index(self._ready_key(h), b""), self._ring()],
                ) is not None:
                    return
            except OutcomeUnknown:
                pass
