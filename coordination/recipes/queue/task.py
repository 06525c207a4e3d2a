"""A claimed task, and how its claim is settled: ``ack`` (done), ``nack`` (failed),
``extend`` (more time) and ``ack_many`` (up to ``limits.BATCH`` acks a commit).

Settling is one commit that checks the version of the record as it was claimed (see
:mod:`.claims`), and the claim key's where it is known: if the claim was lost and the
task handed out again, a check fails, ``ClaimLost`` is raised and nothing changes. Every
ack and nack writes a fresh nonce into the record: after a lost reply, the record read
back tells whether our commit applied (``Settler._settled_by_us``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ...backends.kv import Check, Create, Delete, Entry, KeyValue, Op, OutcomeUnknown, Update, Version
from ...errors import (
    AlreadyAcknowledged,
    ClaimLost,
    QueueError,
    SessionLost,
    UncertainOutcome,
    WrongQueue,
)
from . import layout, limits
from .bell import Bell
from .claims import Claim, check_time_limit, claim_value, claimed_by, limit_end
from .codec import Codec
from .layout import QueueLayout
from .put import check_delay, due_after
from .record import TaskRecord, decode, encode, new_nonce

if TYPE_CHECKING:
    from ...backends.base import Backend
    from ...session import Session


class Task:
    """A claimed task. ``token`` is a fencing token for side effects: it grows across
    successive claims of the task. Use as a context manager to ack on success and nack
    on an exception.

    A task listed by ``Queue.dead_letters`` has no claim: it cannot be settled."""

    def __init__(self, settler: Settler, record: TaskRecord, data: bytes, token: int,
                 claim: Claim | None) -> None:
        self._settler = settler
        self._record = record
        self._data = data
        self._token = token
        self._claim = claim
        self._settled = claim is None
        self._claimed_at = time.monotonic()

    def __repr__(self) -> str:
        return f"<Task {self.id} priority={self.priority} key={self.key} attempts={self.attempts}>"

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def data(self) -> Any:
        """The payload, decoded by the queue's codec (bytes by default); a payload the
        codec cannot decode raises ``InvalidPayload``."""
        return self._settler.codec.decode(self._data)

    @property
    def raw(self) -> bytes:
        """The payload as stored."""
        return self._data

    @property
    def priority(self) -> int:
        return self._record.priority

    @property
    def key(self) -> str | None:
        return self._record.key

    @property
    def attempts(self) -> int:
        """Failed deliveries so far: nacks and lost claims."""
        return self._record.attempts

    @property
    def error(self) -> str | None:
        """The error text of the last failed delivery."""
        return self._record.error

    @property
    def token(self) -> int:
        return self._token

    @property
    def headers(self) -> dict[str, str]:
        """What the coordinator's task hooks stored with the task at its put (e.g. the
        producer's trace context, see ``coordination.tracing``); {} without hooks."""
        headers = self._record.extra.get("h")
        return dict(headers) if isinstance(headers, dict) else {}

    @property
    def enqueued_at(self) -> float:
        """When the task was put (``time.time()`` seconds, by its producer's clock)."""
        return self._record.seq / 1e9

    @property
    def queue_name(self) -> str:
        return self._settler.name

    @property
    def expires_at(self) -> float | None:
        """When this claim's time limit ends (``time.time()`` seconds), after which any
        consumer may take the task back; None without a limit."""
        claim = self._claim
        return claim.until / 1e9 if claim is not None and claim.until else None

    @property
    def settled(self) -> bool:
        """Whether this delivery was acked, nacked or given back through this object."""
        return self._settled

    def give_back(self) -> None:
        """Not handled: back in the queue at once as it was claimed (no attempt
        counted, its error kept), for a consumer that claimed it but will not run it.
        ``ClaimLost`` if the claim is gone."""
        self._settler.give_back(self)

    def extend(self, seconds: float) -> None:
        """Push this claim's time limit to ``seconds`` from now (setting one if it had
        none), for a task that takes longer. ``ClaimLost`` if the claim is gone (a task
        already taken back stays taken back)."""
        self._settler.extend(self, seconds)

    def ack(self) -> None:
        """Done: remove the task for good. ``ClaimLost`` if the claim is gone."""
        self._settler.ack(self)

    def nack(self, delay: float = 0.0, error: str | None = None, dead: bool = False) -> None:
        """Failed: back in the queue after ``delay`` (attempts + 1), or to the dead
        letters after ``max_attempts`` (at once with ``dead=True``: a failure that no
        retry will mend). ``ClaimLost`` if the claim is gone."""
        self._settler.nack(self, delay=delay, error=error, dead=dead)

    def __enter__(self) -> Task:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.ack()
        elif not self._settled:
            self.nack(error=f"{exc_type.__name__}: {exc}")


def requeue(keys: QueueLayout, bell: Bell, record: TaskRecord, data: bytes, delay: float,
            error: str | None, max_attempts: int) -> tuple[TaskRecord, list[Op]]:
    """The record of a failed delivery and the ops that write it: back in the queue
    after ``delay`` seconds, or into the dead letters once it had ``max_attempts``.
    ``error`` None: given back undelivered (ready now, no attempt counted)."""
    nonce = new_nonce()
    if error is None:
        back = record.returned(nonce)
        return back, [Update(keys.record(record.id), encode(back, data)),
                      keys.index(keys.scheduled(back, time.time_ns())), bell.ring()]
    if record.attempts + 1 >= max_attempts:
        dead = record.dead_lettered(nonce, error)
        return dead, [Update(keys.record(record.id), encode(dead, data)),
                      Create(keys.dead(record.id), b"")]
    again = record.requeued(nonce, error, due_after(delay))
    return again, [Update(keys.record(record.id), encode(again, data)),
                   keys.index(keys.scheduled(again, time.time_ns())), bell.ring()]


class Settler:
    """Acks and nacks the claimed tasks of queue ``name``."""

    def __init__(self, backend: Backend, kv: KeyValue, keys: QueueLayout, bell: Bell,
                 name: str, max_attempts: int, codec: Codec) -> None:
        self._backend = backend  # only to tell our tasks from another client's
        self._kv = kv
        self._keys = keys
        self._bell = bell
        self.name = name
        self.max_attempts = max_attempts
        self.codec = codec

    def ack(self, task: Task) -> None:
        """See ``Task.ack``."""
        self._settle(task, done=True)

    def ack_many(self, tasks: Sequence[Task]) -> list[Task]:
        """See ``Queue.ack_many``."""
        lost: list[Task] = []
        batched: dict[Session, list[tuple[Task, Claim]]] = {}
        one_by_one: list[Task] = []
        for task in tasks:  # a task of another queue, or settled, fails the call first
            try:
                claim = self._check_mine(task)
            except ClaimLost:
                self._told("queue.claim_lost", task)
                lost.append(task)
                continue
            if task.key is None and claim.claim_version is not None:
                batched.setdefault(claim.session, []).append((task, claim))
            else:  # a keyed task's ack also hands its key to the next task
                one_by_one.append(task)
        for session, claimed in batched.items():
            for start in range(0, len(claimed), limits.BATCH):
                one_by_one += self._ack_batch(session, claimed[start:start + limits.BATCH])
        for task in one_by_one:
            try:
                self.ack(task)
            except ClaimLost:
                lost.append(task)
        return lost

    def _ack_batch(self, session: Session, claimed: list[tuple[Task, Claim]]) -> list[Task]:
        """Ack the ``claimed`` tasks of ``session`` (no ordering key, claim versions
        known) in one commit; the ones left to ack one at a time (all, if a check
        failed: which one is not told)."""
        checks: list[Check] = []
        ops: list[Op] = []
        nonces: dict[str, str] = {}
        done_at = time.time_ns()
        for task, claim in claimed:
            record_key, claim_key = self._keys.record(task.id), self._keys.claim(task.id)
            written = task._record.acked(new_nonce(), done_at)
            nonces[task.id] = written.nonce or ""
            checks += [Version(record_key, claim.version),
                       Version(claim_key, claim.claim_version or 0)]
            ops += [Delete(claim_key), Delete(self._keys.in_flight(task.id)),
                    Update(record_key, encode(written, b"")),
                    self._keys.index(self._keys.done(task.id, done_at))]
        tasks = [task for task, _ in claimed]
        try:
            applied = self._kv.commit(checks, ops, session) is not None
        except (OutcomeUnknown, SessionLost):
            return self._after_lost_batch(tasks, nonces)
        if not applied:
            return tasks
        for task in tasks:
            task._settled = True
            self._told("queue.acked", task)
        return []

    def _after_lost_batch(self, tasks: list[Task], nonces: dict[str, str]) -> list[Task]:
        """After a lost reply to a batch ack: the tasks it did not ack (read back)."""
        entries = self._kv.get_many([self._keys.record(task.id) for task in tasks])
        left = []
        for task, entry in zip(tasks, entries):
            if entry is not None and decode(entry.value)[0].nonce == nonces[task.id]:
                task._settled = True
                self._told("queue.acked", task)
            else:
                left.append(task)  # not applied, or gone: ack() tells which
        return left

    def nack(self, task: Task, delay: float = 0.0, error: str | None = None,
             dead: bool = False) -> None:
        """See ``Task.nack``."""
        check_delay(delay)
        self._settle(task, done=False, delay=delay, error=error or "nack",
                     attempts=0 if dead else self.max_attempts)

    def give_back(self, task: Task) -> None:
        """See ``Task.give_back``."""
        self._settle(task, done=False, error=None)

    def extend(self, task: Task, seconds: float) -> None:
        """See ``Task.extend``."""
        check_time_limit(seconds)
        claim = self._check_mine(task)
        key = self._keys.claim(task.id)
        held = self._kv.get(key)
        if held is None or not claimed_by(held.value, claim.session, claim.nonce):
            raise ClaimLost(f"the claim on task {task.id} is lost")
        until = limit_end(seconds)
        value = claim_value(claim.session, claim.nonce, until)
        try:
            stamp = self._kv.commit(
                [Version(self._keys.record(task.id), claim.version), Version(key, held.version)],
                [Update(key, value, ephemeral=True)], claim.session)
        except OutcomeUnknown:
            stamp = None
            current = self._kv.get(key)
            if current is not None and current.value == value:  # it applied
                task._claim = dataclasses.replace(claim, claim_version=None, until=until)
                return
        except SessionLost:
            raise ClaimLost(f"the claim on task {task.id} is lost with its session") from None
        if stamp is None:
            raise ClaimLost(f"the claim on task {task.id} is lost")
        task._claim = dataclasses.replace(
            claim, claim_version=self._kv.written_version(stamp, held), until=until)

    def _settle(self, task: Task, done: bool, delay: float = 0.0, error: str | None = "",
                attempts: int = 0) -> None:
        try:
            with self._backend.events.settling(task, "ack" if done else "nack"):
                state = self._settle_once(task, done, delay, error, attempts)
        except SessionLost:
            self._told("queue.claim_lost", task)
            raise ClaimLost(f"the claim on task {task.id} is lost with its session") from None
        except ClaimLost:
            self._told("queue.claim_lost", task)
            raise
        self._told({"done": "queue.acked", "dead": "queue.dead"}.get(state or "", "queue.nacked"),
                   task)

    def _told(self, kind: str, task: Task) -> None:
        """The event ``kind`` of ``task``, with the age of its claim."""
        events = self._backend.events
        if events:
            events.emit(kind, self.name, time.monotonic() - task._claimed_at)

    def _check_mine(self, task: Task) -> Claim:
        """The checks that need no server: the right queue, not settled, session alive."""
        owner = task._settler
        if owner is not self and (owner.name != self.name or owner._backend is not self._backend):
            raise WrongQueue(f"task {task.id} belongs to queue {task.queue_name!r}")
        claim = task._claim
        if task._settled or claim is None:
            raise AlreadyAcknowledged(f"task {task.id} was already acked or nacked")
        if not claim.session.alive:
            raise ClaimLost(f"the claim on task {task.id} is lost")
        return claim

    def _own(self, task: Task) -> Entry:
        """The task's record, read back, if our claim on it still holds; else ClaimLost."""
        claim = self._check_mine(task)
        record = self._kv.get(self._keys.record(task.id))
        held = self._kv.get(self._keys.claim(task.id))
        if record is None or record.version != claim.version or held is None:
            raise ClaimLost(f"the claim on task {task.id} is lost")
        return record

    def _settle_once(self, task: Task, done: bool, delay: float, error: str | None,
                     max_attempts: int) -> str | None:
        """Settle ``task``; the state it was left in (done, ready, dead)."""
        claim = self._check_mine(task)
        keys, task_id = self._keys, task.id
        if claim.claim_version is None:
            entry = self._own(task)
            (record, data), version = decode(entry.value), entry.version
        else:  # as claimed; the checks below fail if anything changed since
            record, data, version = task._record, task._data, claim.version
        while True:
            checks: list[Check] = [Version(keys.record(task_id), version)]
            if claim.claim_version is not None:
                checks.append(Version(keys.claim(task_id), claim.claim_version))
            ops: list[Op] = [Delete(keys.claim(task_id)), Delete(keys.in_flight(task_id))]
            if done:
                # Keep the header as a tombstone (a retried put finds it); a fresh nonce
                # tells a lost reply's sender whether this ack applied.
                ops += self._release_key(record, checks)
                done_at = time.time_ns()
                written = record.acked(new_nonce(), done_at)
                ops += [Update(keys.record(task_id), encode(written, b"")),
                        keys.index(keys.done(task_id, done_at))]
            else:
                written, failed = requeue(keys, self._bell, record, data, delay, error,
                                          max_attempts)
                ops += failed
            try:
                if self._kv.commit(checks, ops, claim.session) is not None:
                    task._settled = True
                    return written.state
            except OutcomeUnknown:
                if self._settled_by_us(task, version, done, written.nonce, claim.session):
                    task._settled = True
                    return written.state
            # Not applied: a concurrent put of the same key, or the claim was lost;
            # _own() tells which (ClaimLost, or the record for another round).
            entry = self._own(task)
            (record, data), version = decode(entry.value), entry.version

    def _settled_by_us(self, task: Task, version: int, done: bool, nonce: str | None,
                       session: Session) -> bool:
        """After a lost reply: did our ack/nack (which wrote ``nonce`` over ``version``
        of the record) apply? False if it did not (the caller retries, and finds out
        whether the claim is still ours); ``ClaimLost`` if the task changed hands;
        ``UncertainOutcome`` if nobody can tell."""
        current = self._kv.get(self._keys.record(task.id))
        if current is not None and current.version == version:
            return False  # nothing happened
        if current is not None:  # our ack or nack wrote our nonce into the record
            if decode(current.value)[0].nonce == nonce:
                return True
            raise ClaimLost(f"task {task.id} changed hands while its "
                            f"{'ack' if done else 'nack'} was in flight")
        if done and session.alive:
            return True  # our claim kept others out: our ack, then forgotten after the window
        raise UncertainOutcome(
            f"the ack of task {task.id} may or may not have applied: the reply and the "
            "session were lost; the task is either done or will be delivered again")

    def _release_key(self, record: TaskRecord, checks: list[Check]) -> list[Op]:
        """Ops ending a keyed task's turn: the next task of its key becomes ready."""
        if record.key is None:
            return []
        count_key = self._keys.key_count(record.key)
        count = self._kv.get(count_key)
        if count is None:
            raise QueueError(f"queue {self.name!r}: the task count of ordering key "
                             f"{record.key!r} is gone (removed by another client?)")
        position = record.position if record.position is not None else layout.position(record)
        checks.append(Version(count_key, count.version))
        n = int(count.value) - 1
        ops: list[Op] = [Delete(self._keys.key_fifo_leaf(record.key, position))]
        ops.append(Update(count_key, str(n).encode()) if n > 0 else Delete(count_key))
        if n > 0:
            following = [k for k in self._kv.leaves(self._keys.key_fifo(record.key), 1, 2)
                         if not k.endswith("/" + position)]
            if following:
                _, next_id = layout.leaf(following[0])
                nxt = self._kv.get(self._keys.record(next_id))
                if nxt is not None:
                    next_record, _ = decode(nxt.value)
                    checks.append(Version(nxt.key, nxt.version))
                    ops += [self._keys.index(self._keys.scheduled(next_record, time.time_ns())),
                            self._bell.ring()]
        return ops
