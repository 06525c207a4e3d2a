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

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ...errors import ClientClosed, InvalidArgument
from .outcomes import Outcomes, Retry, SettledCallback, WorkerStats, check_worker

if TYPE_CHECKING:
    from .queue import Queue
    from .task import Task

__all__ = ["Handler", "Retry", "SettledCallback", "Worker", "WorkerStats"]

log = logging.getLogger(__name__)

Handler = Callable[["Task"], Any]

#: How long a claiming thread waits for a task before it looks at ``stop()`` again.
_POLL = 1.0


class Worker:
    """Runs ``handler`` over the tasks of ``queue`` on ``concurrency`` threads (see the
    module docstring). ``start()``/``stop()``, or ``run()`` to block until a signal;
    also a context manager (``stop()`` on exit)."""

    def __init__(self, queue: Queue, handler: Handler, concurrency: int = 8,
                 retry: Retry | None = None, grace: float = 30.0, batch: int = 1,
                 on_settled: SettledCallback | None = None) -> None:
        check_worker(handler, concurrency, grace, batch)
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.retry = retry if retry is not None else Retry()
        self.grace = float(grace)
        self.batch = batch
        self.on_settled = on_settled
        self._outcomes = Outcomes(queue, self.retry, on_settled)
        self.stats = self._outcomes.stats
        self._guard = threading.Condition()  # notified when a thread ends a claim
        self._stopping = threading.Event()  # no more claims
        self._stopped = threading.Event()  # every thread settled or abandoned
        self._claiming = 0  # threads inside Queue.get
        self._closed = False  # stop() gave back what ran: a task claimed now goes back
        self._running: dict[int, list[Task]] = {}  # thread id -> its claimed, unsettled tasks
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
                self._stopping.wait(self._outcomes.claim_failed(exc, failures))
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
                    self._outcomes.running(len(tasks))
                self._guard.notify_all()
        if late:
            self._outcomes.give_back(tasks)
            return []
        return tasks

    def _process(self, tasks: list[Task]) -> None:
        """Run the handler over ``tasks`` in turn; settle each failure at once and the
        successes together (one ``ack_many``) when there are several."""
        succeeded: list[Task] = []
        for n, task in enumerate(tasks):
            if self._outcomes.abandoned(task):  # stop() gave the rest back: not ours now
                self._done_with(tasks[n:])
                break
            with self.queue.events.processing(task):
                try:
                    self.handler(task)
                except Exception as exc:
                    self._outcomes.settle(task, exc)
                    self._done_with([task])
                    continue
                if self.batch == 1:
                    self._outcomes.settle(task, None)
                    self._done_with([task])
                else:
                    succeeded.append(task)
        if succeeded:
            self._outcomes.ack_together(succeeded)
            self._done_with(succeeded)

    def _done_with(self, tasks: list[Task]) -> None:
        with self._guard:
            running = self._running.get(threading.get_ident(), [])
            for task in tasks:
                if task in running:
                    running.remove(task)
        self._outcomes.running(-len(tasks))

    def _abandon_running(self) -> None:
        """Give back the tasks whose handlers outlived the grace period: each comes back
        at once, attempts + 1, as after a crash; their handlers' settlements are refused."""
        with self._guard:
            self._closed = True
            running = [task for tasks in self._running.values() for task in tasks]
        self._outcomes.give_back(running)

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
