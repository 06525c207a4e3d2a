"""How a worker settles what its handler did with each task, and what it counts: the
retry policy, the settlement of a success or a failure, the give-back of tasks at a
stop. Shared by the thread worker (``worker``) and the asyncio one
(``coordination.aio``), which runs these calls in its request threads."""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import (
    AlreadyAcknowledged,
    ClaimLost,
    CoordinationError,
    InvalidArgument,
    UncertainOutcome,
)

if TYPE_CHECKING:
    from .queue import Queue
    from .task import Task

log = logging.getLogger(__name__)

#: Backoff of a claiming loop after the backend failed it (doubling up to the max).
_FAIL_BACKOFF = (0.1, 5.0)

#: ``on_settled(task, outcome)``: ``acked``, ``retried``, ``dead``, ``lost`` (the claim
#: was gone: the task is another delivery's) or ``abandoned`` (given back at a stop).
SettledCallback = Callable[["Task", str], None]


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


def check_worker(handler: Callable[..., Any], concurrency: int, grace: float, batch: int) -> None:
    """``InvalidArgument`` unless these are a worker's valid settings."""
    if not callable(handler):
        raise InvalidArgument(f"handler must be callable, got {handler!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) \
            or not 1 <= concurrency <= 1024:
        raise InvalidArgument(f"concurrency must be an int in [1, 1024], got {concurrency!r}")
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace < 1e9:
        raise InvalidArgument(f"grace must be a number of seconds >= 0, got {grace!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 1000:
        raise InvalidArgument(f"batch must be an int in [1, 1000], got {batch!r}")


class Outcomes:
    """Settles the tasks a worker's handler ran over ``queue`` (acks, retries with
    ``retry``, dead letters, give-backs) and counts them in ``stats``, telling
    ``on_settled``. Thread-safe."""

    def __init__(self, queue: Queue, retry: Retry, on_settled: SettledCallback | None) -> None:
        self.queue = queue
        self.retry = retry
        self.on_settled = on_settled
        self.stats = WorkerStats()
        self._guard = threading.Lock()
        self._abandoned: set[str] = set()  # task ids given back under their handler

    def abandoned(self, task: Task) -> bool:
        """Whether ``task`` was given back at a stop (not ours to settle now)."""
        with self._guard:
            return task.id in self._abandoned

    def claim_failed(self, exc: Exception, failures: int) -> float:
        """Log a claim that failed (the ``failures``-th in a row); the seconds to back
        off before the next."""
        backoff = min(_FAIL_BACKOFF[1], _FAIL_BACKOFF[0] * 2 ** min(failures, 16))
        log.warning("worker of queue %r could not claim (retrying in %.1fs): %s",
                    self.queue.name, backoff, exc, exc_info=not isinstance(exc, CoordinationError))
        return backoff

    def running(self, count: int) -> None:
        """``count`` more tasks (or fewer, if negative) are in the handler's hands."""
        with self._guard:
            self.stats.in_flight += count

    def ack_together(self, tasks: list[Task]) -> None:
        """Ack the successes ``tasks`` in one ``ack_many``."""
        with self._guard:
            mine = [task for task in tasks if task.id not in self._abandoned]
        try:
            lost = self.queue.ack_many(mine)
        except AlreadyAcknowledged:  # given back by stop() meanwhile: one at a time
            for task in mine:
                self.settle(task, None)
            return
        except CoordinationError as failed:
            log.warning("%d tasks of queue %r could not be acked: %s", len(mine),
                        self.queue.name, failed)
            self.count("lost", mine)
            return
        for task in lost:
            log.warning("task %s of queue %r: its claim was lost before the ack", task.id,
                        self.queue.name)
        self.count("acked", [task for task in mine if task not in lost])
        self.count("lost", lost)

    def settle(self, task: Task, exc: Exception | None) -> None:
        """Ack ``task`` (``exc`` None), or retry it after a backoff, or dead-letter it."""
        try:
            if exc is None:
                task.ack()
                self.count("acked", [task])
            elif self.retry.retries(exc, task.attempts, self.queue.max_attempts):
                task.nack(delay=self.retry.delay(task.attempts), error=_error_text(exc))
                self.count("retried", [task])
            else:
                task.nack(error=_error_text(exc), dead=True)
                self.count("dead", [task])
        except (ClaimLost, AlreadyAcknowledged) as lost:
            if task.id not in self._abandoned:
                log.warning("task %s of queue %r: %s", task.id, self.queue.name, lost)
                self.count("lost", [task])
        except UncertainOutcome as unsure:
            log.warning("task %s of queue %r: %s", task.id, self.queue.name, unsure)
            self.count("lost", [task])
        except CoordinationError as failed:  # the claim ends with the session if it must
            log.warning("task %s of queue %r could not be settled: %s",
                        task.id, self.queue.name, failed)
            self.count("lost", [task])

    def give_back(self, tasks: list[Task]) -> None:
        """Give ``tasks`` back at once (attempts + 1, as after a crash): their
        handlers' settlements are refused from now on."""
        with self._guard:
            self._abandoned.update(task.id for task in tasks)
        for task in tasks:
            try:
                task.nack(error="the worker stopped before the handler finished")
                self.count("abandoned", [task])
            except CoordinationError:
                pass  # settled meanwhile, or lost: either way not ours to give back

    def count(self, what: str, tasks: list[Task]) -> None:
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


_STAT = {"acked": "processed", "retried": "retried", "dead": "dead", "lost": "lost",
         "abandoned": "abandoned"}


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
