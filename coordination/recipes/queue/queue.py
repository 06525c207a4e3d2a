"""``Queue``: the queue's public face. Each operation is one of the recipe's parts
(``put``, ``claim``, ``task``, ``maintenance``, ``dead_letters``); ``get`` is the loop
that ties claiming, upkeep and waiting on the bell together."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import InvalidArgument
from ...events import Events
from ...names import validate_name
from ..lock import check_timeout
from ..steps import Steps, call, run
from . import limits
from .bell import Bell
from .browse import Browser
from .claim import Claimer
from .claims import check_time_limit
from .codec import Codec, codec_for
from .dead_letters import DeadLetters
from .layout import DELAYED_DEPTH, DONE_DEPTH, KIND, READY_DEPTH, QueueLayout
from .maintenance import Maintainer
from .put import Producer
from .task import Settler, Task
from .worker import Handler, Retry, SettledCallback, Worker, WorkerStats

if TYPE_CHECKING:
    from ...backends.base import Backend


#: Rounds of ``get`` in a row that may look again at once after losing every claim
#: they tried; then it waits on the bell as when nothing is ready.
_RACED_ROUNDS = 8


class Queue:
    """A named work queue; the same name is the same queue in every process."""

    def __init__(self, backend: Backend, name: str, max_attempts: int = 5,
                 codec: str | Codec = "bytes", time_limit: float | None = None) -> None:
        validate_name(name, "queue name")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidArgument(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        self.name = name
        self._max_attempts = max_attempts
        self.codec = codec_for(codec)
        self.time_limit = check_time_limit(time_limit)
        self._backend = backend
        self._kv = backend.kv
        self._keys = QueueLayout(self._kv.root(KIND, name))
        self._bell = Bell(self._kv, self._keys.bell)
        self._producer = Producer(self._kv, self._keys, self._bell, self.codec)
        self._settler = Settler(backend, self._kv, self._keys, self._bell, name, max_attempts,
                                self.codec)
        self._claimer = Claimer(backend, self._kv, self._keys, self._settler)
        self._maintainer = Maintainer(backend, self._kv, self._keys, self._bell, max_attempts)
        self._dead = DeadLetters(self._kv, self._keys, self._bell, self._settler)
        self._browser = Browser(self._kv, self._keys, self._settler)

    def __repr__(self) -> str:
        return f"<Queue {self.name!r}>"

    @property
    def max_attempts(self) -> int:
        """Deliveries of a task before it goes to the dead letters (set at creation)."""
        return self._max_attempts

    @property
    def events(self) -> Events:
        """The event hub of this queue's coordinator (see ``coordination.events``): the
        worker loop runs its handlers inside ``events.processing(task)``."""
        return self._backend.events

    @property
    def layout(self) -> QueueLayout:
        """Where this queue keeps what on the servers."""
        return self._keys

    def put(self, data: Any, priority: int = 0, delay: float = 0.0,
            key: str | None = None, id: str | None = None) -> str:
        """Store a task (``data``: bytes or str, or what the queue's codec takes); its
        id. With an ``id`` already in the queue, or acked less than ``DEDUPE_WINDOW``
        seconds ago, nothing is stored again (a producer may retry after a lost reply,
        even once the task was handled). Raises ``InvalidPayload``, ``PayloadTooLarge``,
        ``InvalidArgument``, ``BackendUnavailable``."""
        with self.events.sending(self.name) as headers:
            task_id = self._producer.put(data, priority, delay, key, id, headers)
        self.events.emit("queue.put", self.name)
        return task_id

    def put_many(self, items: Iterable[Any], priority: int = 0, delay: float = 0.0,
                 key: str | None = None) -> list[str]:
        """Store several tasks (one commit per batch of up to 40 where there is no key)."""
        with self.events.sending(self.name) as headers:
            ids = self._producer.put_many(items, priority, delay, key, headers)
        self.events.emit("queue.put", self.name, count=len(ids))
        return ids

    def get(self, timeout: float | None = None, time_limit: float | None = None) -> Task | None:
        """Claim the next task (highest priority, then oldest); None after ``timeout``
        seconds without one (``timeout=0``: only look once). With a ``time_limit`` (or
        the queue's), a claim held longer is taken back by any consumer (attempts + 1)
        and its late ack raises ``ClaimLost``; ``task.extend()`` pushes the limit."""
        tasks = run(self.get_steps(None, timeout, time_limit))
        return tasks[0] if tasks else None

    def get_many(self, n: int, timeout: float | None = None,
                 time_limit: float | None = None) -> list[Task]:
        """Claim up to ``n`` ready tasks at once, in delivery order, in as few commits as
        the backend allows (``limits.BATCH`` tasks a commit); waits up to ``timeout``
        for at least one ([] then). Each task is claimed and settled on its own terms,
        as from ``get``: never two tasks of one ordering key at once."""
        return run(self.get_steps(n, timeout, time_limit))

    def get_steps(self, n: int | None, timeout: float | None = None,
                  time_limit: float | None = None) -> Steps[list[Task]]:
        """``get`` (``n`` None) or ``get_many(n)`` as steps for a driver
        (``recipes.steps``): the tasks claimed. Upkeep, then a claim; while it finds
        nothing, wait on the bell (and for the next delayed task) until ``timeout``."""
        if n is not None and (isinstance(n, bool) or not isinstance(n, int)
                              or not 1 <= n <= 1000):
            raise InvalidArgument(f"n must be an int in [1, 1000], got {n!r}")
        limit = self.time_limit if time_limit is None else check_time_limit(time_limit)
        timeout = check_timeout(timeout)

        def claim() -> tuple[list[Task], bool]:
            """The tasks claimed, and whether claims were lost to other consumers
            (asked in the same thread: the claimer tells it per thread)."""
            if n is None:
                task = self._claimer.next(limit)
                tasks = [] if task is None else [task]
            else:
                tasks = self._claimer.next_many(n, limit)
            return tasks, self._claimer.raced()

        deadline = None if timeout is None else time.monotonic() + timeout
        raced = 0  # rounds in a row that lost every claim they tried
        while True:
            maintained = self._maintainer.due()
            if maintained:
                yield call(self._maintainer.run)
            tasks, lost = yield call(claim)
            if tasks:
                return self._delivered(tasks)
            raced = raced + 1 if lost else 0
            if 0 < raced <= _RACED_ROUNDS and (deadline is None or time.monotonic() < deadline):
                continue  # tasks are ready, others took the ones we tried: look again
            # Nothing ready: read the bell before the last look, so that a put after
            # that look rings a bell we wait on. Maintenance runs once per round: what it
            # made ready before that look, the look sees.
            bell = yield call(self._bell.read)
            if not maintained:
                yield call(self._maintainer.run)
            tasks, lost = yield call(claim)
            if tasks:
                return self._delivered(tasks)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            if lost and raced < _RACED_ROUNDS:
                raced += 1
                continue
            ttl = self._backend.session_ttl
            wait = ttl / 2 if remaining is None else min(remaining, ttl / 2)
            next_due = yield call(self._maintainer.next_due)
            if next_due is not None:
                wait = min(wait, max(0.01, next_due))
            yield self._bell.waiting(bell, wait)
            raced = 0

    def _delivered(self, tasks: list[Task]) -> list[Task]:
        events = self._backend.events
        if events:
            events.emit("queue.delivered", self.name, count=len(tasks))
            again = sum(1 for task in tasks if task.attempts)
            if again:
                events.emit("queue.redelivered", self.name, count=again)
        return tasks

    def worker(self, handler: Handler, concurrency: int = 8, retry: Retry | None = None,
               grace: float = 30.0, batch: int = 1,
               on_settled: SettledCallback | None = None) -> Worker:
        """A worker loop running ``handler(task)`` over this queue's tasks on
        ``concurrency`` threads, not started yet: see :class:`Worker`."""
        return Worker(self, handler, concurrency, retry, grace, batch, on_settled)

    def consume(self, handler: Handler, concurrency: int = 8, retry: Retry | None = None,
                grace: float = 30.0, batch: int = 1) -> WorkerStats:
        """Run ``handler(task)`` over this queue's tasks on ``concurrency`` threads until
        SIGTERM or SIGINT (call it from the main thread; elsewhere use :meth:`worker`
        and stop it yourself): each task is acked when the handler returns, nacked by
        ``retry`` when it raises. The first signal stops claiming and waits ``grace``
        seconds for the running handlers; a second gives their tasks back at once.
        ``batch`` > 1: each thread claims up to that many tasks at once and acks its
        successes together (for short handlers: the batch waits its turn in the thread).
        Returns what the worker did."""
        return self.worker(handler, concurrency, retry, grace, batch).run()

    def ack(self, task: Task) -> None:
        """See :meth:`Task.ack`."""
        self._settler.ack(task)

    def ack_many(self, tasks: Sequence[Task]) -> list[Task]:
        """Ack several tasks, ``limits.BATCH`` a commit where they have no ordering key;
        the tasks whose claims were lost (not acked: each is another delivery's now).
        One lost claim never fails the others. ``AlreadyAcknowledged``/``WrongQueue``
        for a task settled already or of another queue (then nothing is acked)."""
        return self._settler.ack_many(tasks)

    def nack(self, task: Task, delay: float = 0.0, error: str | None = None,
             dead: bool = False) -> None:
        """See :meth:`Task.nack`."""
        self._settler.nack(task, delay=delay, error=error, dead=dead)

    def stats(self) -> dict[str, int]:
        """Counts: ``pending`` (ready now), ``delayed``, ``blocked`` (behind an earlier
        task of their key), ``in_flight``, ``dead``; read as of one instant, so a task
        moving meanwhile is counted once (see ``KeyValue.counts``)."""
        keys = self._keys
        pending, delayed, in_flight, dead, records, done = self._kv.counts([
            (keys.ready_root, READY_DEPTH), (keys.delayed_root, DELAYED_DEPTH),
            (keys.in_flight_root, 1), (keys.dead_root, 1), (keys.records_root, 1),
            (keys.done_root, DONE_DEPTH)])
        blocked = max(0, records - done - pending - delayed - in_flight - dead)
        return {"pending": pending, "delayed": delayed, "blocked": blocked,
                "in_flight": in_flight, "dead": dead}

    def acked(self, seconds: int = 5) -> int:
        """Tasks acked in the last ``seconds`` whole seconds (by this client's clock),
        read from the done index (which keeps them ``DEDUPE_WINDOW`` seconds): divided
        by ``seconds``, the rate at which the queue is worked off."""
        if isinstance(seconds, bool) or not isinstance(seconds, int) or \
                not 1 <= seconds <= int(limits.DEDUPE_WINDOW):
            raise InvalidArgument(f"seconds must be an int in [1, {int(limits.DEDUPE_WINDOW)}], "
                                  f"got {seconds!r}")
        now = int(time.time())
        return sum(self._kv.counts([(self._keys.done_bucket(second), 1)
                                    for second in range(now - seconds, now)]))

    def __len__(self) -> int:
        stats = self.stats()
        return stats["pending"] + stats["delayed"] + stats["blocked"]

    def peek(self, n: int = 10) -> list[Task]:
        """The next ready tasks, in the order ``get`` would hand them out, without
        claiming them (they cannot be settled): up to ``n``, fewer when the first ones
        of the queue's head sit in a time bucket of their own (at least one if any task
        is ready)."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10_000:
            raise InvalidArgument(f"n must be an int in [1, 10000], got {n!r}")
        return self._browser.peek(n)

    def purge(self) -> int:
        """Remove every task that is not in flight (pending, delayed, blocked behind its
        key, dead); how many. Tasks in flight are left to their workers: an ack works,
        a nack puts the task back. Tasks put meanwhile may or may not be removed."""
        return self._browser.purge()

    def dead_letters(self) -> list[Task]:
        """The dead tasks, with their last error in ``task.error`` (not claimed)."""
        return self._dead.list()

    def requeue_dead(self, task_id: str) -> None:
        """Give a dead task ``max_attempts`` new attempts. ``TaskNotFound`` if not dead."""
        self._dead.requeue(task_id)
