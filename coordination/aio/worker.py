"""The worker loop for async handlers: ``coordination.Queue``'s worker (claim, run the
handler, settle, back off, stop cleanly) as ``concurrency`` asyncio tasks instead of
threads, with the same retry policy, settlements and counts (``queue.outcomes``).

``stop()`` stops claiming (a claim under way is cancelled: it claims nothing), gives
the running handlers ``grace`` seconds, then cancels those still running and gives
their tasks back at once (attempts + 1), as a crash would. ``run()`` does this on
SIGTERM or SIGINT (a second signal: no grace), or when it is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from ..errors import ClientClosed, InvalidArgument
from ..recipes.queue.outcomes import Outcomes, Retry, SettledCallback, WorkerStats, check_worker
from .driver import Driver

if TYPE_CHECKING:
    from .queue import AsyncHandler, AsyncQueue, AsyncTask

log = logging.getLogger(__name__)

class AsyncWorker:
    """Runs ``await handler(task)`` over the tasks of ``queue`` as ``concurrency``
    asyncio tasks (see the module docstring). ``await start()`` / ``await stop()``, or
    ``await run()`` until a signal; also ``async with`` (``stop()`` on exit)."""

    def __init__(self, queue: AsyncQueue, driver: Driver, handler: AsyncHandler,
                 concurrency: int = 8, retry: Retry | None = None, grace: float = 30.0,
                 batch: int = 1, on_settled: SettledCallback | None = None) -> None:
        check_worker(handler, concurrency, grace, batch)
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.retry = retry if retry is not None else Retry()
        self.grace = float(grace)
        self.batch = batch
        self._driver = driver
        self._outcomes = Outcomes(queue.sync, self.retry, on_settled)
        self.stats: WorkerStats = self._outcomes.stats
        self._loops: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"<AsyncWorker {self.queue.name!r} concurrency={self.concurrency}>"

    async def __aenter__(self) -> AsyncWorker:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    async def start(self) -> AsyncWorker:
        """Start the claiming tasks (once)."""
        if self._loops:
            raise InvalidArgument("this worker was started already")
        self._stopping, self._stopped = asyncio.Event(), asyncio.Event()
        self._loops = [asyncio.create_task(self._loop(), name=f"coordination-worker-{n}")
                       for n in range(self.concurrency)]
        return self

    async def stop(self, grace: float | None = None) -> WorkerStats:
        """Stop claiming; wait up to ``grace`` seconds (default: the worker's) for the
        running handlers and their settlements; cancel those still running and give
        their tasks back. Returns the stats."""
        if self._stopping is None or self._stopped is None:
            return self.stats
        self._stopping.set()
        grace = self.grace if grace is None else grace
        if self._loops:
            _done, running = await asyncio.wait(self._loops, timeout=grace)
            for loop in running:
                loop.cancel()
            await asyncio.gather(*self._loops, return_exceptions=True)
        self._stopped.set()
        return self.stats

    async def wait(self) -> None:
        """Wait until the worker has stopped."""
        if self._stopped is not None:
            await self._stopped.wait()

    async def run(self) -> WorkerStats:
        """Start, then run until ``stop()`` or, on the main thread's loop, SIGTERM/SIGINT
        (the first stops with grace, a second at once); cancelled, it stops without
        grace (the running handlers' tasks are given back) and raises."""
        await self.start()
        stopped: asyncio.Future[None] = asyncio.ensure_future(self.wait())
        ended: asyncio.Future[list[object]] = asyncio.gather(*self._loops, return_exceptions=True)
        try:
            with self._signals():
                await asyncio.wait([stopped, ended],  # type: ignore[type-var]
                                   return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await asyncio.shield(self.stop(0))
            raise
        finally:
            stopped.cancel()
        return await self.stop(0)  # stopped already; or every loop ended (closed client)

    # --- the claiming tasks ---------------------------------------------------------------

    async def _loop(self) -> None:
        assert self._stopping is not None
        failures = 0
        while not self._stopping.is_set():
            try:
                tasks = await self._claim()
            except ClientClosed:
                self._stopping.set()
                break
            except Exception as exc:  # a library bug too must not end the task quietly
                failures += 1
                backoff = self._outcomes.claim_failed(exc, failures)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                continue
            failures = 0
            if tasks:
                await self._process(tasks)

    async def _claim(self) -> list[AsyncTask]:
        """The next tasks (up to ``batch``); none once ``stop()`` was asked (a claim
        under way is cancelled then, and claims nothing)."""
        assert self._stopping is not None
        if self.batch > 1:
            claiming = asyncio.ensure_future(self.queue.get_many(self.batch))
        else:
            claiming = asyncio.ensure_future(self._one())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([claiming, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not claiming.done():
                claiming.cancel()
            tasks = await asyncio.gather(claiming, return_exceptions=True)
        claimed = tasks[0]
        if isinstance(claimed, asyncio.CancelledError):
            return []
        if isinstance(claimed, BaseException):
            raise claimed
        return claimed

    async def _one(self) -> list[AsyncTask]:
        task = await self.queue.get()
        return [] if task is None else [task]

    async def _process(self, tasks: list[AsyncTask]) -> None:
        """Run the handler over ``tasks`` in turn; settle each failure at once and the
        successes together (one ``ack_many``) when there are several. Cancelled (a stop
        out of grace): the tasks not settled yet are given back."""
        outcomes = self._outcomes
        outcomes.running(len(tasks))
        left = list(tasks)
        succeeded = []
        try:
            while left:
                task = left[0]
                with self.queue.sync.events.processing(task.sync):
                    try:
                        await self.handler(task)
                    except Exception as exc:
                        await self._driver.call(outcomes.settle, task.sync, exc)
                        left.pop(0)
                        outcomes.running(-1)
                        continue
                left.pop(0)
                if self.batch == 1:
                    await self._driver.call(outcomes.settle, task.sync, None)
                    outcomes.running(-1)
                else:
                    succeeded.append(task)
            if succeeded:
                await self._driver.call(outcomes.ack_together, [task.sync for task in succeeded])
                outcomes.running(-len(succeeded))
                succeeded = []
        except asyncio.CancelledError:
            giving_back = [task.sync for task in succeeded + left]
            await self._driver.call(outcomes.give_back, giving_back)
            outcomes.running(-len(giving_back))
            raise

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        received: list[int] = []
        stops: set[asyncio.Task[WorkerStats]] = set()

        def on_signal(signum: int) -> None:
            received.append(signum)
            grace = self.grace if len(received) == 1 else 0.0
            log.info("worker of queue %r: %s, stopping (grace %gs)", self.queue.name,
                     signal.Signals(signum).name, grace)
            stopping = loop.create_task(self.stop(grace))
            stops.add(stopping)
            stopping.add_done_callback(stops.discard)

        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
            except (RuntimeError, ValueError, NotImplementedError):
                break  # not the main thread's loop (or no signals here): stop() only
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
