"""A worker loop over one queue: claim, run the handler, settle, back off, stop cleanly.

``concurrency`` threads each claim a task (or up to ``batch`` tasks, whose successes are
acked together), run ``handler(task)``, and ack it when the handler returns or nack it
when it raises: after a backoff (``Retry``) while attempts
remain and the exception is one that retries, else into the dead letters with the
exception's text. ``stop()`` stops claiming, gives the handlers running then ``grace``
seconds to finish and settles them; a task whose handler is still running after that
is given back at once (attempts + 1), as a crash would give it back. ``run()`` does all
this until SIGTERM or SIGINT (a second signal: no grace).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ...errors import (
    AlreadyAcknowledged,
    ClaimLost,
    ClientClosed,
    CoordinationError,
    InvalidArgument,
    UncertainOutcome,
)

if TYPE_CHECKING:
    from .queue import Queue
    from .task import Task

log = logging.getLogger(__name__)

Handler = Callable[["Task"], Any]
#: ``on_settled(task, outcome)``: ``acked``, ``retried``, ``dead``, ``lost`` (the claim
#: was gone: the task is another delivery's) or ``abandoned`` (given back at a stop).
SettledCallback = Callable[["Task", str], None]

#: How long a claiming thread waits for a task before it looks at ``stop()`` again.
_POLL = 1.0
#: Backoff of a claiming thread after the backend failed it (doubling up to the max).
_FAIL_BACKOFF = (0.1, 5.0)


@dataclasses.dataclass(frozen=True)
class Retry:
    """When a failed task is tried again, and after how long.

    A task whose handler raised one of ``on`` comes back after ``min(max, base * 2 **
    attempts)`` seconds, of which up to ``jitter`` (a fraction) is random, so that tasks
    that failed together do not all come back together. Any other exception, or the
    ``max_attempts``-th failure (``None``: the queue's ``max_attempts``; never more than
    it), sends the task to the dead letters with the exception's text."""

    base: float = 1.0
    max: float = 300.0
    jitter: float = 0.5
    max_attempts: int | None = None
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        for name in ("base", "max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
                raise InvalidArgument(f"Retry.{name} must be a number of seconds >= 0, got {value!r}")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, int | float) \
                or not 0 <= self.jitter <= 1:
            raise InvalidArgument(f"Retry.jitter must be in [0, 1], got {self.jitter!r}")
        if self.max_attempts is not None and (isinstance(self.max_attempts, bool) or not isinstance(
                self.max_attempts, int) or self.max_attempts < 1):
            raise InvalidArgument(f"Retry.max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if not isinstance(self.on, tuple) or not all(
                isinstance(kind, type) and issubclass(kind, BaseException) for kind in self.on):
            raise InvalidArgument("Retry.on must be a tuple of exception classes")

    def delay(self, attempts: int) -> float:
        """The backoff before the next delivery of a task that failed ``attempts`` times
        before this failure."""
        ceiling = min(self.max, self.base * 2.0 ** min(attempts, 64))
        return ceiling * (1.0 - self.jitter * random.random())

    def retries(self, exc: BaseException, attempts: int, queue_max: int) -> bool:
        """Whether a task that failed with ``exc`` after ``attempts`` earlier failures
        gets another delivery."""
        limit = queue_max if self.max_attempts is None else min(self.max_attempts, queue_max)
        return isinstance(exc, self.on) and attempts + 1 < limit


@dataclasses.dataclass
class WorkerStats:
    """What a worker did so far. ``retried``: nacked for another try; ``dead``: sent to
    the dead letters; ``lost``: settled too late (the claim had gone, the task is
    another delivery's now); ``abandoned``: given back at a stop without grace."""

    processed: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0
    abandoned: int = 0
    in_flight: int = 0


class Worker:
    """Runs ``handler`` over the tasks of ``queue`` on ``concurrency`` threads (see the
    module docstring). ``start()``/``stop()``, or ``run()`` to block until a signal;
    also a context manager (``stop()`` on exit)."""

    def __init__(self, queue: Queue, handler: Handler, concurrency: int = 8,
                 retry: Retry | None = None, grace: float = 30.0, batch: int = 1,
                 on_settled: SettledCallback | None = None) -> None:
        if not callable(handler):
            raise InvalidArgument(f"handler must be callable, got {handler!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) \
                or not 1 <= concurrency <= 1024:
            raise InvalidArgument(f"concurrency must be an int in [1, 1024], got {concurrency!r}")
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace < 1e9:
            raise InvalidArgument(f"grace must be a number of seconds >= 0, got {grace!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 1000:
            raise InvalidArgument(f"batch must be an int in [1, 1000], got {batch!r}")
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.retry = retry if retry is not None else Retry()
        self.grace = float(grace)
        self.batch = batch
        self.on_settled = on_settled
        self.stats = WorkerStats()
        self._guard = threading.Condition()  # notified when a thread ends a claim
        self._stopping = threading.Event()  # no more claims
        self._stopped = threading.Event()  # every thread settled or abandoned
        self._claiming = 0  # threads inside Queue.get
        self._closed = False  # stop() gave back what ran: a task claimed now goes back
        self._running: dict[int, list[Task]] = {}  # thread id -> its claimed, unsettled tasks
        self._abandoned: set[str] = set()  # task ids given back under their handler
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"<Worker {self.queue.name!r} concurrency={self.concurrency}>"

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> Worker:
        """Start the claiming threads (once)."""
        if self._threads:
            raise InvalidArgument("this worker was started already")
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._loop, name=f"coordination-worker-{n}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self, grace: float | None = None) -> WorkerStats:
        """Stop claiming; wait up to ``grace`` seconds (default: the worker's) for the
        running handlers and their settlements; give back the tasks whose handlers are
        still running. Returns the stats; safe to call from several threads."""
        self._stopping.set()
        grace = self.grace if grace is None else grace
        deadline = time.monotonic() + grace
        with self._guard:  # a claim under way ends within the poll; its task is run
            self._guard.wait_for(lambda: self._claiming == 0, max(grace, 2 * _POLL))
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._abandon_running()
        self._stopped.set()
        return self.stats

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the worker has stopped; False if ``timeout`` passed first."""
        return self._stopped.wait(timeout)

    def run(self) -> WorkerStats:
        """Start, then block until ``stop()`` (from another thread) or, when called from
        the main thread, SIGTERM/SIGINT: the first stops with grace, a second at once."""
        self.start()
        with self._signals():
            while not self._stopped.wait(0.5):  # short waits: signal handlers run between
                if not any(thread.is_alive() for thread in self._threads):
                    self.stop(0)  # the coordinator was closed under the worker
        return self.stats

    # --- the claiming threads ------------------------------------------------------------

    def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                tasks = self._claim()
            except ClientClosed:
                self._stopping.set()
                break
            except Exception as exc:  # a library bug too must not end the thread quietly
                failures += 1
                backoff = min(_FAIL_BACKOFF[1], _FAIL_BACKOFF[0] * 2 ** min(failures, 16))
                log.warning("worker of queue %r could not claim (retrying in %.1fs): %s",
                            self.queue.name, backoff, exc,
                            exc_info=not isinstance(exc, CoordinationError))
                self._stopping.wait(backoff)
                continue
            failures = 0
            self._process(tasks)

    def _claim(self) -> list[Task]:
        """The next tasks (up to ``batch``), registered as running (``stop()`` sees
        every claim either under way or running); none if there was none, or they were
        given back at once because ``stop()`` has finished."""
        tasks: list[Task] = []
        with self._guard:
            self._claiming += 1
        try:
            if self.batch > 1:
                tasks = self.queue.get_many(self.batch, timeout=_POLL)
            elif (task := self.queue.get(timeout=_POLL)) is not None:
                tasks = [task]
        finally:
            with self._guard:
                self._claiming -= 1
                late = bool(tasks) and self._closed
                if tasks and not late:
                    self._running[threading.get_ident()] = list(tasks)
                    self.stats.in_flight += len(tasks)
                self._guard.notify_all()
        if late:
            self._give_back(tasks)
            return []
        return tasks

    def _process(self, tasks: list[Task]) -> None:
        """Run the handler over ``tasks`` in turn; settle each failure at once and the
        successes together (one ``ack_many``) when there are several."""
        succeeded: list[Task] = []
        for n, task in enumerate(tasks):
            if task.id in self._abandoned:  # stop() gave the rest back: not ours now
                self._done_with(tasks[n:])
                break
            with self.queue.events.processing(task):
                try:
                    self.handler(task)
                except Exception as exc:
                    self._settle(task, exc)
                    self._done_with([task])
                    continue
                if self.batch == 1:
                    self._settle(task, None)
                    self._done_with([task])
                else:
                    succeeded.append(task)
        if succeeded:
            self._ack_together(succeeded)
            self._done_with(succeeded)

    def _done_with(self, tasks: list[Task]) -> None:
        with self._guard:
            running = self._running.get(threading.get_ident(), [])
            for task in tasks:
                if task in running:
                    running.remove(task)
            self.stats.in_flight -= len(tasks)

    def _ack_together(self, tasks: list[Task]) -> None:
        with self._guard:
            mine = [task for task in tasks if task.id not in self._abandoned]
        try:
            lost = self.queue.ack_many(mine)
        except AlreadyAcknowledged:  # given back by stop() meanwhile: one at a time
            for task in mine:
                self._settle(task, None)
            return
        except CoordinationError as failed:
            log.warning("%d tasks of queue %r could not be acked: %s", len(mine),
                        self.queue.name, failed)
            self._count("lost", mine)
            return
        for task in lost:
            log.warning("task %s of queue %r: its claim was lost before the ack", task.id,
                        self.queue.name)
        self._count("acked", [task for task in mine if task not in lost])
        self._count("lost", lost)

    def _settle(self, task: Task, exc: Exception | None) -> None:
        try:
            if exc is None:
                task.ack()
                self._count("acked", [task])
            elif self.retry.retries(exc, task.attempts, self.queue.max_attempts):
                task.nack(delay=self.retry.delay(task.attempts), error=_error_text(exc))
                self._count("retried", [task])
            else:
                task.nack(error=_error_text(exc), dead=True)
                self._count("dead", [task])
        except (ClaimLost, AlreadyAcknowledged) as lost:
            if task.id not in self._abandoned:
                log.warning("task %s of queue %r: %s", task.id, self.queue.name, lost)
                self._count("lost", [task])
        except UncertainOutcome as unsure:
            log.warning("task %s of queue %r: %s", task.id, self.queue.name, unsure)
            self._count("lost", [task])
        except CoordinationError as failed:  # the claim ends with the session if it must
            log.warning("task %s of queue %r could not be settled: %s",
                        task.id, self.queue.name, failed)
            self._count("lost", [task])

    def _abandon_running(self) -> None:
        """Give back the tasks whose handlers outlived the grace period: each comes back
        at once, attempts + 1, as after a crash; their handlers' settlements are refused."""
        with self._guard:
            self._closed = True
            running = [task for tasks in self._running.values() for task in tasks]
        self._give_back(running)

    def _give_back(self, tasks: list[Task]) -> None:
        with self._guard:
            self._abandoned.update(task.id for task in tasks)
        for task in tasks:
            try:
                task.nack(error="the worker stopped before the handler finished")
                self._count("abandoned", [task])
            except CoordinationError:
                pass  # settled meanwhile, or lost: either way not ours to give back

    def _count(self, what: str, tasks: list[Task]) -> None:
        """Count ``tasks`` as settled with outcome ``what`` and tell ``on_settled``."""
        if not tasks:
            return
        with self._guard:
            setattr(self.stats, _STAT[what], getattr(self.stats, _STAT[what]) + len(tasks))
        if self.on_settled is not None:
            for task in tasks:
                try:
                    self.on_settled(task, what)
                except Exception:  # the callback's bug must not stop the worker
                    log.exception("on_settled callback failed for task %s", task.id)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        received = []

        def on_signal(signum: int, frame: object) -> None:
            received.append(signum)
            grace = self.grace if len(received) == 1 else 0.0
            log.info("worker of queue %r: %s, stopping (grace %gs)", self.queue.name,
                     signal.Signals(signum).name, grace)
            threading.Thread(target=self.stop, args=(grace,), name="coordination-worker-stop",
                             daemon=True).start()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


_STAT = {"acked": "processed", "retried": "retried", "dead": "dead", "lost": "lost",
         "abandoned": "abandoned"}


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
