"""What the library tells about itself: one small listener interface, and no dependency
of the core on any metrics or tracing package (``coordination.metrics`` turns the events
into Prometheus metrics).

``coord.add_event_listener(listener)`` calls ``listener(event)`` for every
:class:`Event` of that coordinator, in the thread where it happened, right after it
happened: a listener must be quick and must not block or call the coordinator back (a
listener that raises is logged and skipped; the recipe goes on). The kinds:

=====================  =====================================================  ===========
kind                   when                                                   ``seconds``
=====================  =====================================================  ===========
``session``            a session changed state (``detail``: the new state)    -
``lock.acquired``      a lock (rwlock, semaphore permit) was acquired         wait
``lock.timeout``       an acquire gave up at its timeout                      wait
``lock.failed``        an acquire raised (``detail``: the error type)         wait
``lock.released``      a hold ended by release                                hold
``lock.lost``          a hold was lost with its session                       hold
``queue.put``          tasks were stored (``count``; repeats of an id too)    -
``queue.delivered``    tasks were claimed (``count``)                         -
``queue.redelivered``  of those, tasks delivered before                       -
``queue.acked``        a task was acked                                       claim age
``queue.nacked``       a task was nacked, to be delivered again               claim age
``queue.dead``         a task was dead-lettered                               claim age
``queue.claim_lost``   a settlement found its claim gone                      claim age
``counter.conflict``   a compare-and-set met another writer and went again    -
``request.retry``      a request to the servers was tried again               -
=====================  =====================================================  ===========

``name`` is the lock, queue or counter name (the name given to the recipe; "" for
sessions and requests): a bounded label, never a task id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

KINDS = frozenset({
    "session", "lock.acquired", "lock.timeout", "lock.failed", "lock.released", "lock.lost",
    "queue.put", "queue.delivered", "queue.redelivered", "queue.acked", "queue.nacked",
    "queue.dead", "queue.claim_lost", "counter.conflict", "request.retry",
})


@dataclasses.dataclass(frozen=True)
class Event:
    """One thing that happened; see the module docstring for the kinds."""

    kind: str
    name: str = ""
    seconds: float | None = None
    count: int = 1
    detail: str = ""


EventListener = Callable[[Event], None]


class TaskHooks(Protocol):
    """Code run around a task's put, processing and settlement, for what has to be in
    the task or around the work (``coordination.tracing``: a producer span whose trace
    context rides in the task's headers, a consumer span around the handler). Each
    returns a context manager; ``sending`` yields headers to store with the task."""

    def sending(self, queue: str) -> contextlib.AbstractContextManager[Mapping[str, str]]: ...

    def processing(self, task: Any) -> contextlib.AbstractContextManager[None]: ...

    def settling(self, task: Any, how: str) -> contextlib.AbstractContextManager[None]: ...


class Events:
    """The event listeners of one coordinator. ``emit`` costs one attribute test while
    nobody listens."""

    def __init__(self) -> None:
        self._listeners: tuple[EventListener, ...] = ()
        self._hooks: tuple[TaskHooks, ...] = ()

    def add_hooks(self, hooks: TaskHooks) -> None:
        self._hooks = (*self._hooks, hooks)

    @contextlib.contextmanager
    def sending(self, queue: str) -> Iterator[dict[str, str]]:
        """Around a put: the headers the hooks give the task (none without hooks)."""
        with self._around(lambda hooks: hooks.sending(queue)) as given:
            yield {name: value for headers in given for name, value in headers.items()}

    def processing(self, task: Any) -> contextlib.AbstractContextManager[list[Any]]:
        """Around a worker's handler of ``task``."""
        return self._around(lambda hooks: hooks.processing(task))

    def settling(self, task: Any, how: str) -> contextlib.AbstractContextManager[list[Any]]:
        """Around ``task``'s ack or nack (``how``: ack, nack)."""
        return self._around(lambda hooks: hooks.settling(task, how))

    @contextlib.contextmanager
    def _around(self, enter: Callable[[TaskHooks], contextlib.AbstractContextManager[Any]]
                ) -> Iterator[list[Any]]:
        """Every hook's context manager ``enter(hooks)`` entered in turn, left in reverse;
        what they yielded. Without hooks, nothing to enter."""
        if not self._hooks:
            yield []
            return
        with contextlib.ExitStack() as stack:
            yield [stack.enter_context(enter(hooks)) for hooks in self._hooks]

    def add(self, listener: EventListener) -> None:
        self._listeners = (*self._listeners, listener)

    def remove(self, listener: EventListener) -> None:
        self._listeners = tuple(each for each in self._listeners if each is not listener)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def emit(self, kind: str, name: str = "", seconds: float | None = None, count: int = 1,
             detail: str = "") -> None:
        listeners = self._listeners
        if not listeners:
            return
        event = Event(kind, name, seconds, count, detail)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a listener's bug must not break the recipe that emits
                log.exception("event listener %r failed on %s", listener, kind)
