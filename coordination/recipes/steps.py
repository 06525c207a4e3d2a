"""A recipe's waiting algorithm, written once as a generator of steps, and run by a
driver: ``run`` here, in the calling thread; ``coordination.aio`` on an event loop,
without a thread per waiter.

A step is a ``Call`` (a short request to the backend: the driver sends back its result
or throws its exception into the generator) or a ``Wait``: ``WaitDeleted`` (until one
of some contender entries may be gone, as ``Backend.wait_deleted``) or ``WaitChanged``
(until a key changes, as ``KeyValue.wait``) or ``WaitHead`` (until a queue's head may
have changed, as ``Backend.next_head``); its result is True when woken (look
again), False when its timeout passed. The generator's return value is the recipe's
result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

from ..backends.base import Backend
from ..backends.contenders import Blocker, Contender, Head
from ..backends.kv import Entry, KeyValue
from ..backends.watching import Watching, wait_armed
from ..session import Waker

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Call:
    """A short request: ``fn(*args)``."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()

    def run(self) -> Any:
        return self.fn(*self.args)


class Wait:
    """A wait of up to ``timeout`` seconds: ``arm(woken)`` arms the watches (a
    request), then the driver waits for ``woken`` as the ``Watching`` says."""

    timeout: float | None

    def arm(self, woken: Waker) -> Watching:
        raise NotImplementedError

    def run(self) -> bool:
        return wait_armed(self.arm, self.timeout)


@dataclasses.dataclass(frozen=True)
class WaitDeleted(Wait):
    """Until one of ``blockers`` may be gone or ``me``'s session changes state."""

    backend: Backend
    blockers: Sequence[Blocker]
    me: Contender
    timeout: float | None

    def arm(self, woken: Waker) -> Watching:
        return self.backend.watch_deleted(self.blockers, self.me, woken)

    def run(self) -> bool:
        return self.backend.wait_deleted(self.blockers, self.me, self.timeout)


@dataclasses.dataclass(frozen=True)
class WaitChanged(Wait):
    """Until ``key`` changes from ``seen`` (as read before)."""

    kv: KeyValue
    key: str
    seen: Entry | None
    timeout: float

    def arm(self, woken: Waker) -> Watching:
        return self.kv.watch(self.key, self.seen, woken)

    def run(self) -> bool:
        self.kv.wait(self.key, self.seen, self.timeout)
        return True  # woken or not: the caller reads again


@dataclasses.dataclass(frozen=True)
class WaitHead(Wait):
    """Until the head of the contender queue at ``path`` may have changed from
    ``seen`` (the caller reads it again after)."""

    backend: Backend
    path: str
    seen: Head
    timeout: float | None

    def arm(self, woken: Waker) -> Watching:
        return self.backend.watch_head(self.path, self.seen, woken)


Step = Call | Wait
Steps = Generator[Step, Any, T]


def call(fn: Callable[..., Any], *args: Any) -> Call:
    return Call(fn, args)


def run(steps: Steps[T]) -> T:
    """Run ``steps`` in this thread, each step as it comes; their result."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(reply) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value
        reply, error = None, None
        try:
            reply = step.run()
        except BaseException as exc:  # the generator decides, as if it had called
            error = exc
