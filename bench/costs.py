"""What security and observability cost: our figures with TLS and a user, and with
metrics and tracing on, each against the same without, repetitions alternating."""

from __future__ import annotations

from typing import Any

from .measure import Figure
from .scenarios import lock_cycles, queue_flow
from .subjects import OurQueue, Servers, Subject, our_lock

#: Unmeasured warm-up of the TLS figure's subjects, in figure durations.
WARMUP = 5


def metrics_cost(servers: Servers, duration: float, reps: int) -> dict[str, Any]:
    """Our lock cycle (1 contender) and queue get+ack (1x1) as they are and with every
    client measured by ``coordination.metrics`` and traced by ``coordination.tracing``
    (an SDK tracer provider whose batch processor hands the spans to an exporter that
    drops them), rep by rep alternating: ``lock off``, ``lock on``, ``queue off``,
    ``queue on``."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from prometheus_client import CollectorRegistry

    from coordination.metrics import Metrics
    from coordination.tracing import Tracing

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    metrics, tracing = Metrics(CollectorRegistry()), Tracing(provider)

    def observed(coord: Any) -> None:
        metrics.instrument(coord)
        tracing.instrument(coord)

    subjects = {
        "off": (Subject("coordination", lambda name: our_lock(servers.url, name), ours=True),
                Subject("coordination", lambda name: OurQueue(servers.url, name), ours=True)),
        "on": (Subject("coordination", lambda name: our_lock(servers.url, name, observed),
                       ours=True),
               Subject("coordination", lambda name: OurQueue(servers.url, name, observed),
                       ours=True)),
    }
    rates: dict[str, list[float]] = {f"{what} {mode}": [] for what in ("lock", "queue")
                                     for mode in subjects}
    for _ in range(reps):
        for mode, (lock, queue) in subjects.items():
            rates[f"lock {mode}"].append(lock_cycles(lock, 1, duration, 1, None)["rate"]["median"])
            rates[f"queue {mode}"].append(
                queue_flow(queue, 1, 1, duration, 1)["takes"]["median"])
    provider.shutdown()
    return {key: Figure.of(values).as_dict() for key, values in rates.items()}


def tls_cost(plain: Subject, plain_queue: Subject, secured: Subject, secured_queue: Subject,
             duration: float, reps: int) -> dict[str, Any]:
    """Our lock cycle (1 contender) and queue get+ack (1x1) in plaintext and over TLS with
    a user (etcd: its token too), alternating rep by rep so that both see the same
    machine: ``lock plain``, ``lock secured``, ``queue plain``, ``queue secured``.

    Each is first run unmeasured for ``WARMUP`` x ``duration``: the secured cluster is
    started just before, and a ZooKeeper JVM that has not yet compiled its TLS code
    serves a third of what it serves warm (A/B on two clusters started together:
    over ten 2 s reps TLS went 209 -> 566 cycles/s while plaintext went 297 -> 700)."""
    for lock, queue in ((plain, plain_queue), (secured, secured_queue)):
        lock_cycles(lock, 1, WARMUP * duration, 1, None)
        queue_flow(queue, 1, 1, WARMUP * duration, 1)
    rates: dict[str, list[float]] = {"lock plain": [], "lock secured": [], "queue plain": [],
                                     "queue secured": []}
    for _ in range(reps):
        for mode, lock, queue in (("plain", plain, plain_queue), ("secured", secured, secured_queue)):
            rates[f"lock {mode}"].append(lock_cycles(lock, 1, duration, 1, None)["rate"]["median"])
            rates[f"queue {mode}"].append(
                queue_flow(queue, 1, 1, duration, 1)["takes"]["median"])
    return {key: Figure.of(values).as_dict() for key, values in rates.items()}
