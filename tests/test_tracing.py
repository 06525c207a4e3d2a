"""OpenTelemetry spans (coordination/tracing.py), against every backend, collected by the
SDK's in-memory exporter: a task's trace context goes through the servers from the
producer's span to the consumer's, the worker's handler runs inside a process span with
its settlement as a child, and lock waits and holds are spans of the caller's trace."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import coordination
from coordination.tracing import Tracing

from .helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_a_task_carries_its_trace_from_producer_to_consumer(connect, spans) -> None:
    provider, exporter = spans
    tracing = Tracing(provider)
    producer, consumer = connect(), connect()  # two clients, two sessions
    tracing.instrument(producer)
    tracing.instrument(consumer)
    tracer = provider.get_tracer("shop")
    with tracer.start_as_current_span("checkout") as checkout:
        task_id = producer.queue("orders").put(b"order 42")
    seen: list[str] = []

    def handler(task: coordination.Task) -> None:
        with tracer.start_as_current_span("charge card"):
            seen.append(task.id)
        if len(seen) == 2:
            raise RuntimeError("card declined")

    producer.queue("orders").put(b"order 43")
    worker = consumer.queue("orders").worker(handler, concurrency=1)
    worker.start()
    try:
        wait_for(lambda: len([s for s in exporter.get_finished_spans()
                              if s.name == "settle orders"]) >= 2, timeout=30)
    finally:
        worker.stop(grace=5)
    by_name: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        by_name.setdefault(span.name, []).append(span)
    send = next(s for s in by_name["send orders"] if s.parent is not None)
    assert send.kind == SpanKind.PRODUCER and send.parent.span_id == checkout.get_span_context().span_id
    assert send.attributes["messaging.destination.name"] == "orders"
    process = next(s for s in by_name["process orders"]
                   if s.attributes["messaging.message.id"] == task_id)
    assert process.kind == SpanKind.CONSUMER
    # The same trace, through the servers: the consumer's span is the producer's child.
    assert process.context.trace_id == checkout.get_span_context().trace_id
    assert process.parent.span_id == send.context.span_id
    charge = next(s for s in by_name["charge card"] if s.context.trace_id == process.context.trace_id)
    assert charge.parent.span_id == process.context.span_id
    settles = [s for s in by_name["settle orders"] if s.parent.span_id == process.context.span_id]
    assert [s.attributes["messaging.operation.name"] for s in settles] == ["ack"]
    failed = next(s for s in by_name["process orders"] if s is not process)
    assert failed.status.status_code == StatusCode.ERROR  # its task was nacked
    assert process.status.status_code != StatusCode.ERROR


def test_lock_waits_and_holds_are_spans_of_the_callers_trace(
        coord: coordination.Coordinator, spans) -> None:
    provider, exporter = spans
    Tracing(provider).instrument(coord)
    tracer = provider.get_tracer("shop")
    with tracer.start_as_current_span("restock") as restock, coord.lock("sku-1", timeout=5):
        pass
    acquire, hold = (next(s for s in exporter.get_finished_spans() if s.name == name)
                     for name in ("acquire sku-1", "hold sku-1"))
    for span in (acquire, hold):
        assert span.parent.span_id == restock.get_span_context().span_id
        assert span.end_time >= span.start_time
    assert acquire.attributes["coordination.lock.outcome"] == "acquired"
    assert hold.attributes["coordination.lock.outcome"] == "released"
    assert acquire.end_time <= hold.start_time + 1_000_000  # the hold follows the wait


CONSUMER = """
import json, sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import coordination
from coordination.tracing import Tracing

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
with coordination.connect(sys.argv[1]) as coord:
    Tracing(provider).instrument(coord)
    worker = coord.queue("orders").worker(lambda task: None, concurrency=1)
    worker.start()
    while not any(s.name == "settle orders" for s in exporter.get_finished_spans()):
        worker.wait(0.05)
    worker.stop(grace=5)
print(json.dumps([{"name": s.name, "trace": s.context.trace_id,
                   "parent": s.parent.span_id if s.parent else None}
                  for s in exporter.get_finished_spans()]))
"""


def test_the_trace_goes_on_in_another_process(url: str, connect, spans,
                                              python_env: dict[str, str]) -> None:
    """The consumer is another OS process with a tracer of its own: its process span
    is a child of the producer's send span, by the context stored with the task."""
    provider, exporter = spans
    producer = connect()
    Tracing(provider).instrument(producer)
    with provider.get_tracer("shop").start_as_current_span("checkout"):
        producer.queue("orders").put(b"order 44")
    (send,) = [s for s in exporter.get_finished_spans() if s.name == "send orders"]
    child = subprocess.run([sys.executable, "-c", CONSUMER, url], capture_output=True,
                           text=True, env=python_env, timeout=120)
    assert child.returncode == 0, child.stderr
    theirs = json.loads(child.stdout.strip().splitlines()[-1])
    (process,) = [s for s in theirs if s["name"] == "process orders"]
    assert process["trace"] == send.context.trace_id
    assert process["parent"] == send.context.span_id
