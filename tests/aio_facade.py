"""The sync API's face over ``coordination.aio``, so that the contract tests' bodies
run against the async API too, unchanged (``conftest.py``: the ``api`` parameter).

Each call of a recipe goes to its async counterpart, run on an event loop in a thread
of its own and waited for; what the async API does not have (the coordinator's
driver, config, listeners) is the sync coordinator beneath it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

import coordination.aio

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="aio-facade",
                                        daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class BlockingCoordinator:
    """A coordinator whose locks, queues and counters are the async API's."""

    def __init__(self, url: str, **overrides: Any) -> None:
        self._loop = LoopThread()
        try:
            self.aio = self._loop.run(coordination.aio.connect(url, **overrides))
        except BaseException:
            self._loop.stop()
            raise
        self._closed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.aio.sync, name)

    def lock(self, name: str, timeout: float | None = None, *, reentrant: bool = False,
             **options: Any) -> BlockingLock:
        if reentrant:
            pytest.skip("the async API has no reentrant locks (a task is not a thread)")
        return BlockingLock(self.aio.lock(name, timeout, **options), self._loop)

    def queue(self, name: str, *args: Any, **kwargs: Any) -> BlockingQueue:
        return BlockingQueue(self.aio.queue(name, *args, **kwargs), self._loop)

    def counter(self, name: str) -> BlockingCounter:
        return BlockingCounter(self.aio.counter(name), self._loop)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.run(self.aio.close())

    def shutdown(self) -> None:
        """Close, and stop the loop (after the test: its objects may be used after a
        close, and must fail as closed)."""
        self.close()
        self._loop.stop()

    def __enter__(self) -> BlockingCoordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Blocking:
    """Any async recipe object: its coroutine methods waited for, the rest as is."""

    def __init__(self, target: Any, loop: LoopThread) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not asyncio.iscoroutinefunction(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            args = tuple(arg._target if isinstance(arg, Blocking) else arg for arg in args)
            return self._wrap(self._loop.run(value(*args, **kwargs)))

        return call

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, coordination.aio.AsyncTask):
            return BlockingTask(value, self._loop)
        if isinstance(value, list):
            return [self._wrap(item) for item in value]
        return value


class BlockingCounter(Blocking):
    @property
    def value(self) -> Any:  # Counter.value is a property; AsyncCounter.value() a coroutine
        return self._loop.run(self._target.value())


class BlockingLock(Blocking):
    def on_lost(self, callback: Any) -> None:
        self._target.on_lost(lambda _lock: callback(self))

    def __enter__(self) -> BlockingLock:
        self._loop.run(self._target.__aenter__())
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.run(self._target.__aexit__(*exc))


class BlockingTask(Blocking):
    def __enter__(self) -> BlockingTask:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.run(self._target.__aexit__(*exc))


class BlockingQueue(Blocking):
    def __len__(self) -> int:
        return len(self._target.sync)

    def ack_many(self, tasks: list[BlockingTask]) -> list[BlockingTask]:
        by_task = {id(task._target): task for task in tasks}
        lost = self._loop.run(self._target.ack_many([task._target for task in tasks]))
        return [by_task[id(task)] for task in lost]

    def __getattr__(self, name: str) -> Any:
        if hasattr(self._target, name):
            return super().__getattr__(name)
        return getattr(self._target.sync, name)  # the sync queue's (layout, events, ...)

