"""A recipe's waiting algorithm, written once as a generator of steps, and run by a
driver: ``run`` here, in the calling thread; ``coordination.aio`` on an event loop,
without a thread per waiter.

A step is a ``Call`` (a short request to the backend: the driver sends back its result
or throws its exception into the generator) or a ``WaitDeleted`` (wait until one of
some contender entries may be gone; the result says whether to re-check, as
``Backend.wait_deleted``). The generator's return value is the recipe's result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

from ..backends.base import Backend
from ..backends.contenders import Blocker, Contender

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Call:
    """A short request: ``fn(*args)``."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()

    def run(self) -> Any:
        return self.fn(*self.args)


@dataclasses.dataclass(frozen=True)
class WaitDeleted:
    """Wait until one of ``blockers`` may be gone or ``me``'s session changes state
    (True: re-check), or ``timeout`` seconds pass (False)."""

    backend: Backend
    blockers: Sequence[Blocker]
    me: Contender
    timeout: float | None

    def run(self) -> bool:
        return self.backend.wait_deleted(self.blockers, self.me, self.timeout)


Step = Call | WaitDeleted
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
