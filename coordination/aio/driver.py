"""Runs a recipe's steps (``recipes.steps``) on an event loop.

Requests run in a small pool of threads shared by every task of the coordinator (a
request is short: it holds a thread for one round trip, whatever the number of
waiters). Waits hold no thread: the backend's watches set a ``LoopWaker``, which wakes
the waiting task on the loop.

Cancellation: a request in flight is always finished (its reply may be an entry we
must withdraw); the cancel is then thrown into the recipe at its next step, so its own
clean-up runs (``except BaseException: withdraw``), every later step to the end even if
cancelled again. A wait is cancelled at once, its watches stopped. If the recipe ends
before the cancel could be thrown (the request that was in flight completed it), its
result is undone by ``undo`` and the cancel raised: a cancelled call leaves nothing
behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import ClientClosed
from ..recipes.steps import Steps, Wait, run

T = TypeVar("T")

Undo = Callable[[Any], "Steps[Any] | None"]


class LoopWaker:
    """A ``session.Waker`` for the loop: ``set()`` from any thread wakes ``wait``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def set(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    async def wait(self, timeout: float | None) -> bool:
        """True once set; False after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:  # not the builtin before Python 3.11
            return False
        return True


class Driver:
    """The pool of request threads of one async coordinator, and the step runner."""

    def __init__(self, workers: int) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="coordination-aio")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the pool. If the caller is cancelled meanwhile, the call is
        finished first, then the cancel raised."""
        reply, error, cancel = await self._settle(fn, *args)
        if cancel is not None:
            raise cancel
        if error is not None:
            raise error
        return reply

    async def drive(self, steps: Steps[T], undo: Undo | None = None) -> T:
        """Run ``steps`` to their end (see the module's doc for cancellation)."""
        reply: Any = None
        error: BaseException | None = None
        cancel: asyncio.CancelledError | None = None  # the caller's, once caught
        pending = False  # caught during a request, to be thrown in at the next step
        while True:
            try:
                step = steps.send(reply) if error is None else steps.throw(error)
            except StopIteration as stop:
                if cancel is not None and pending:  # ended by the awaited request
                    undone = None if undo is None else undo(stop.value)
                    if undone is not None:
                        await self._settle(run, undone)
                    raise cancel from None
                return stop.value
            except BaseException as exc:
                if cancel is not None and exc is not cancel:
                    raise cancel from exc  # the caller was cancelled: that comes first
                raise
            reply, error = None, None
            if pending:  # the cancel comes in here, where the recipe cleans up
                pending, error = False, cancel
            elif cancel is not None:  # cleaning up: every step to the end, no waiting
                if isinstance(step, Wait):
                    reply = True
                else:
                    reply, error, _again = await self._settle(step.fn, *step.args)
            elif isinstance(step, Wait):
                try:
                    reply = await self._wait(step)
                except asyncio.CancelledError as exc:
                    cancel = error = exc
                except BaseException as exc:
                    error = exc
            else:
                reply, error, cancel = await self._settle(step.fn, *step.args)
                pending = cancel is not None

    async def wait(self, step: Wait) -> bool:
        """Run the one step ``step``: True when woken, False after its timeout."""
        return await self._wait(step)

    async def _wait(self, step: Wait) -> bool:
        waker = LoopWaker(asyncio.get_running_loop())
        watching, error, cancel = await self._settle(step.arm, waker)
        if error is not None:
            raise cancel or error
        try:
            if cancel is not None:
                raise cancel
            if watching.gone:
                return True
            return await waker.wait(watching.limit(step.timeout)) or watching.silent(step.timeout)
        finally:
            await self._settle(watching.cancel)

    async def _settle(self, fn: Callable[..., Any], *args: Any
                      ) -> tuple[Any, BaseException | None, asyncio.CancelledError | None]:
        """``fn(*args)`` in the pool, waited for to its end even through cancels:
        ``(reply, error, the first cancel of the caller or None)``."""
        try:
            future = asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except RuntimeError:  # the pool is shut down
            return None, ClientClosed("the async coordinator is closed"), None
        cancel: asyncio.CancelledError | None = None
        while not future.done():
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError as exc:
                if future.cancelled():
                    return None, ClientClosed("the async coordinator is closed"), cancel
                cancel = cancel or exc
            except BaseException:
                break  # the call's own error, read below
        if future.cancelled():
            return None, ClientClosed("the async coordinator is closed"), cancel
        error = future.exception()
        return (None if error is not None else future.result()), error, cancel

    def shutdown(self) -> None:
        """Stop the request threads (calls not started yet fail with ``ClientClosed``)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
