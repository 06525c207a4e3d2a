"""The queue for asyncio code: ``coordination.Queue``'s commits and claim loop (its
steps), driven on the loop; the same tasks, records, guarantees and errors.

A cancelled ``get`` never loses a task: a claim in flight is finished, and a task it
claimed is given back at once (``Task.give_back``: ready again, no attempt counted).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import CoordinationError
from ..recipes.queue import Queue, Task
from ..recipes.queue.outcomes import Retry, SettledCallback, WorkerStats
from ..recipes.steps import Steps, call
from .driver import Driver

if TYPE_CHECKING:
    from .worker import AsyncWorker

AsyncHandler = Callable[["AsyncTask"], Awaitable[Any]]


class AsyncTask:
    """A claimed task, for asyncio code: what :class:`~coordination.Task` tells (``id``,
    ``data``, ``token``, ``attempts``, ...), with settlements to await. ``async with
    task:`` acks it when the block ends, nacks it if it raises."""

    def __init__(self, task: Task, driver: Driver) -> None:
        self._task = task
        self._driver = driver

    def __repr__(self) -> str:
        return repr(self._task).replace("<Task", "<AsyncTask", 1)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)  # the task's read-only facts

    @property
    def sync(self) -> Task:
        """The task as the sync API knows it."""
        return self._task

    async def ack(self) -> None:
        """See :meth:`Task.ack`."""
        await self._driver.call(self._task.ack)

    async def nack(self, delay: float = 0.0, error: str | None = None, dead: bool = False) -> None:
        """See :meth:`Task.nack`."""
        await self._driver.call(functools.partial(self._task.nack, delay, error, dead))

    async def give_back(self) -> None:
        """See :meth:`Task.give_back`."""
        await self._driver.call(self._task.give_back)

    async def extend(self, seconds: float) -> None:
        """See :meth:`Task.extend`."""
        await self._driver.call(self._task.extend, seconds)

    async def __aenter__(self) -> AsyncTask:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc_type is None:
            await self.ack()
        elif not self._task.settled:
            await self.nack(error=f"{exc_type.__name__}: {exc}")


class AsyncQueue:
    """A named work queue for asyncio code (see :class:`~coordination.Queue`): the same
    queue as the sync API's of that name."""

    def __init__(self, queue: Queue, driver: Driver) -> None:
        self._queue = queue
        self._driver = driver

    def __repr__(self) -> str:
        return repr(self._queue).replace("<Queue", "<AsyncQueue", 1)

    @property
    def sync(self) -> Queue:
        """The queue as the sync API knows it (its calls block the loop)."""
        return self._queue

    @property
    def name(self) -> str:
        return self._queue.name

    @property
    def max_attempts(self) -> int:
        return self._queue.max_attempts

    async def put(self, data: Any, priority: int = 0, delay: float = 0.0,
                  key: str | None = None, id: str | None = None) -> str:
        """See :meth:`Queue.put`."""
        return await self._driver.call(
            functools.partial(self._queue.put, data, priority, delay, key, id))

    async def put_many(self, items: Iterable[Any], priority: int = 0, delay: float = 0.0,
                       key: str | None = None) -> list[str]:
        """See :meth:`Queue.put_many`."""
        return await self._driver.call(
            functools.partial(self._queue.put_many, list(items), priority, delay, key))

    async def get(self, timeout: float | None = None,
                  time_limit: float | None = None) -> AsyncTask | None:
        """Claim the next task; None after ``timeout`` seconds without one (see
        :meth:`Queue.get`). Cancelled, it claims nothing (a claim it made is given
        back)."""
        tasks = await self._claim(None, timeout, time_limit)
        return tasks[0] if tasks else None

    async def get_many(self, n: int, timeout: float | None = None,
                       time_limit: float | None = None) -> list[AsyncTask]:
        """Claim up to ``n`` tasks at once (see :meth:`Queue.get_many`)."""
        return await self._claim(n, timeout, time_limit)

    async def _claim(self, n: int | None, timeout: float | None,
                     time_limit: float | None) -> list[AsyncTask]:
        tasks = await self._driver.drive(self._queue.get_steps(n, timeout, time_limit),
                                         undo=_giving_back)
        return [AsyncTask(task, self._driver) for task in tasks]

    async def tasks(self, time_limit: float | None = None) -> AsyncIterator[AsyncTask]:
        """Claim tasks one after another, for ever: ``async for task in q.tasks():``.
        Settle each (``await task.ack()``, or ``async with task:``)."""
        while True:
            task = await self.get(time_limit=time_limit)
            if task is not None:
                yield task

    async def ack(self, task: AsyncTask) -> None:
        """See :meth:`Queue.ack` (``WrongQueue`` for another queue's task)."""
        await self._driver.call(self._queue.ack, task.sync)

    async def nack(self, task: AsyncTask, delay: float = 0.0, error: str | None = None,
                   dead: bool = False) -> None:
        """See :meth:`Queue.nack`."""
        await self._driver.call(functools.partial(self._queue.nack, task.sync, delay, error, dead))

    async def ack_many(self, tasks: Sequence[AsyncTask]) -> list[AsyncTask]:
        """See :meth:`Queue.ack_many`: the tasks whose claims were lost."""
        by_task = {id(task.sync): task for task in tasks}
        lost = await self._driver.call(self._queue.ack_many, [task.sync for task in tasks])
        return [by_task[id(task)] for task in lost]

    async def stats(self) -> dict[str, int]:
        """See :meth:`Queue.stats`."""
        return await self._driver.call(self._queue.stats)

    async def peek(self, n: int = 10) -> list[AsyncTask]:
        """See :meth:`Queue.peek`."""
        return [AsyncTask(task, self._driver)
                for task in await self._driver.call(self._queue.peek, n)]

    async def purge(self) -> int:
        """See :meth:`Queue.purge`."""
        return await self._driver.call(self._queue.purge)

    async def dead_letters(self) -> list[AsyncTask]:
        """See :meth:`Queue.dead_letters`."""
        return [AsyncTask(task, self._driver)
                for task in await self._driver.call(self._queue.dead_letters)]

    async def requeue_dead(self, task_id: str) -> None:
        """See :meth:`Queue.requeue_dead`."""
        await self._driver.call(self._queue.requeue_dead, task_id)

    def worker(self, handler: AsyncHandler, concurrency: int = 8, retry: Retry | None = None,
               grace: float = 30.0, batch: int = 1,
               on_settled: SettledCallback | None = None) -> AsyncWorker:
        """A worker running ``await handler(task)`` over this queue's tasks as
        ``concurrency`` asyncio tasks, not started yet: see :class:`AsyncWorker`."""
        from .worker import AsyncWorker

        return AsyncWorker(self, self._driver, handler, concurrency, retry, grace, batch,
                           on_settled)

    async def consume(self, handler: AsyncHandler, concurrency: int = 8,
                      retry: Retry | None = None, grace: float = 30.0,
                      batch: int = 1) -> WorkerStats:
        """Run ``await handler(task)`` over this queue's tasks until SIGTERM or SIGINT
        (or until cancelled), as :meth:`Queue.consume` does; what the worker did."""
        return await self.worker(handler, concurrency, retry, grace, batch).run()


def _giving_back(tasks: list[Task]) -> Steps[None]:
    """Give back the tasks claimed by a cancelled ``get``."""
    for task in tasks:
        try:
            yield call(task.give_back)
        except CoordinationError:
            pass  # its claim is gone already: the task is ready again for others
