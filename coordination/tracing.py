"""OpenTelemetry spans (``pip install 'coordination[otel]'``; bring your own SDK).

    from coordination.tracing import Tracing
    Tracing().instrument(coord)          # the global tracer provider, or Tracing(provider)

What becomes a span (messaging semantic conventions for the queue; ``messaging.system``
is ``coordination``):

* ``send QUEUE`` (producer): a ``put``/``put_many``. Its trace context is stored with
  the task (``Task.headers``, W3C ``traceparent``), so the consumer's spans join the
  producer's trace, in whatever process they run.
* ``process QUEUE`` (consumer): the worker loop's handler of a task and its
  settlement, a child of the producer's span; spans the handler starts are its
  children; an error when the task was nacked.
* ``settle QUEUE`` (client): an ack or nack (``messaging.operation.name``).
* ``acquire LOCK`` and ``hold LOCK``: a lock's wait (with its outcome: acquired,
  timeout, failed) and its hold (released, or lost: an error), timed from the events,
  children of the span current in the thread.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .client import Coordinator
from .events import Event

_SYSTEM = {"messaging.system": "coordination"}


class Tracing:
    """Spans for the coordinators it ``instrument``s, from ``tracer_provider`` (None:
    the global one)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("coordination", tracer_provider=tracer_provider)

    def instrument(self, coord: Coordinator) -> None:
        coord.add_event_listener(self._on_event)
        coord.add_task_hooks(self)

    # --- the queue: hooks around put, process, settle ------------------------------------

    @contextlib.contextmanager
    def sending(self, queue: str) -> Iterator[dict[str, str]]:
        attributes = {**_SYSTEM, "messaging.destination.name": queue,
                      "messaging.operation.type": "send", "messaging.operation.name": "put"}
        with self._tracer.start_as_current_span(f"send {queue}", kind=SpanKind.PRODUCER,
                                                attributes=attributes):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            yield carrier

    @contextlib.contextmanager
    def processing(self, task: Any) -> Iterator[None]:
        attributes = {**_SYSTEM, "messaging.destination.name": task.queue_name,
                      "messaging.operation.type": "process", "messaging.message.id": task.id,
                      "coordination.task.attempts": task.attempts}
        with self._tracer.start_as_current_span(
                f"process {task.queue_name}", context=propagate.extract(task.headers),
                kind=SpanKind.CONSUMER, attributes=attributes):
            yield

    @contextlib.contextmanager
    def settling(self, task: Any, how: str) -> Iterator[None]:
        attributes = {**_SYSTEM, "messaging.destination.name": task.queue_name,
                      "messaging.operation.type": "settle", "messaging.operation.name": how,
                      "messaging.message.id": task.id}
        if how != "ack":  # the handler failed: so did the processing around it, if any
            trace.get_current_span().set_status(Status(StatusCode.ERROR, "nacked"))
        with self._tracer.start_as_current_span(f"settle {task.queue_name}",
                                                kind=SpanKind.CLIENT, attributes=attributes):
            yield

    # --- locks: spans timed from the events ------------------------------------------------

    def _on_event(self, event: Event) -> None:
        kind = event.kind
        if kind in ("lock.acquired", "lock.timeout", "lock.failed"):
            self._span_back(f"acquire {event.name}", event, kind[5:],
                            error=kind == "lock.failed")
        elif kind in ("lock.released", "lock.lost"):
            self._span_back(f"hold {event.name}", event, kind[5:], error=kind == "lock.lost")

    def _span_back(self, name: str, event: Event, outcome: str, error: bool) -> None:
        """A span that ended now and lasted ``event.seconds``."""
        end = time.time_ns()
        span = self._tracer.start_span(
            name, start_time=end - int((event.seconds or 0.0) * 1e9),
            attributes={"coordination.lock.name": event.name,
                        "coordination.lock.outcome": outcome})
        if error:
            span.set_status(Status(StatusCode.ERROR, event.detail or outcome))
        span.end(end_time=end)
