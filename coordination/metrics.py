"""Prometheus metrics from the event hook (``pip install 'coordination[prometheus]'``).

    from coordination.metrics import Metrics, expose
    metrics = Metrics()                          # in prometheus_client's default registry
    metrics.instrument(coord)                    # each coordinator of the process
    metrics.watch_queue(coord.queue("orders"))   # depth gauges, read when scraped
    expose(9108)                                 # http://127.0.0.1:9108/metrics

The names, with their units, and the only labels (a lock, queue or counter name, and an
outcome or state from a fixed set: never a task id):

====================================================  =========  ========================
metric                                                type       labels
====================================================  =========  ========================
``coordination_lock_wait_seconds``                    histogram  lock, outcome (acquired,
                                                                 timeout, failed)
``coordination_lock_hold_seconds``                    histogram  lock, outcome (released,
                                                                 lost)
``coordination_lock_lost_total``                      counter    lock
``coordination_queue_tasks_total``                    counter    queue, event (put,
                                                                 delivered, redelivered,
                                                                 acked, nacked, dead,
                                                                 claim_lost)
``coordination_queue_claim_seconds``                  histogram  queue, outcome (acked,
                                                                 nacked, dead,
                                                                 claim_lost): from the
                                                                 claim to its settlement,
                                                                 the handler's time
``coordination_queue_depth``                          gauge      queue, state (pending,
                                                                 delayed, blocked,
                                                                 in_flight, dead)
``coordination_queue_oldest_pending_age_seconds``     gauge      queue
``coordination_counter_conflicts_total``              counter    counter
``coordination_request_retries_total``                counter    -
``coordination_session_changes_total``                counter    state
====================================================  =========  ========================

The queue gauges are read from the servers when scraped, at most every
``depth_every`` seconds per queue (one ``stats()`` and one ``peek(1)``); the rest costs
nothing but the listener's own work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .client import Coordinator
from .errors import CoordinationError
from .events import Event
from .recipes.queue import Queue

#: Seconds: lock waits and holds, a task's claim.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 300.0)
_QUEUE_EVENTS = {"queue.put": "put", "queue.delivered": "delivered",
                 "queue.redelivered": "redelivered", "queue.acked": "acked",
                 "queue.nacked": "nacked", "queue.dead": "dead", "queue.claim_lost": "claim_lost"}


class Metrics:
    """The library's metrics in ``registry`` (prometheus_client's default one unless
    given). One per registry: ``instrument`` each coordinator to be measured."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, depth_every: float = 5.0) -> None:
        self.registry = registry
        self.lock_wait = Histogram("coordination_lock_wait_seconds", "Time from acquire() "
                                   "to its outcome.", ["lock", "outcome"], buckets=BUCKETS,
                                   registry=registry)
        self.lock_hold = Histogram("coordination_lock_hold_seconds", "Time a lock was held.",
                                   ["lock", "outcome"], buckets=BUCKETS, registry=registry)
        self.locks_lost = Counter("coordination_lock_lost", "Holds lost with their session.",
                                  ["lock"], registry=registry)
        self.queue_tasks = Counter("coordination_queue_tasks", "Tasks by what happened to "
                                   "them.", ["queue", "event"], registry=registry)
        self.queue_claims = Histogram("coordination_queue_claim_seconds", "Time from a "
                                      "task's claim to its settlement.", ["queue", "outcome"],
                                      buckets=BUCKETS, registry=registry)
        self.conflicts = Counter("coordination_counter_conflicts", "Compare-and-set "
                                 "conflicts (retried).", ["counter"], registry=registry)
        self.retries = Counter("coordination_request_retries", "Requests tried again "
                               "(failovers, timeouts).", registry=registry)
        self.sessions = Counter("coordination_session_changes", "Session state changes.",
                                ["state"], registry=registry)
        self._depths = _QueueGauges(depth_every)
        registry.register(self._depths)

    def instrument(self, coord: Coordinator) -> None:
        """Measure ``coord`` (its event listener is this object)."""
        coord.add_event_listener(self)

    def watch_queue(self, queue: Queue) -> None:
        """Report ``queue``'s depth and oldest pending task's age when scraped."""
        self._depths.watch(queue)

    def __call__(self, event: Event) -> None:
        kind, name = event.kind, event.name
        if kind.startswith("lock."):
            outcome = kind[5:]
            if outcome in ("acquired", "timeout", "failed"):
                self.lock_wait.labels(name, outcome).observe(event.seconds or 0.0)
            elif outcome in ("released", "lost"):
                self.lock_hold.labels(name, outcome).observe(event.seconds or 0.0)
                if outcome == "lost":
                    self.locks_lost.labels(name).inc()
        elif kind in _QUEUE_EVENTS:
            what = _QUEUE_EVENTS[kind]
            self.queue_tasks.labels(name, what).inc(event.count)
            if event.seconds is not None:
                self.queue_claims.labels(name, what).observe(event.seconds)
        elif kind == "counter.conflict":
            self.conflicts.labels(name).inc()
        elif kind == "request.retry":
            self.retries.inc()
        elif kind == "session":
            self.sessions.labels(event.detail.lower()).inc()


class _QueueGauges(Collector):
    """The watched queues' depth gauges, read when scraped (at most every ``every``
    seconds per queue; a queue that cannot be read then is left out of that scrape)."""

    def __init__(self, every: float) -> None:
        self._every = every
        self._queues: dict[tuple[int, str], Queue] = {}
        self._read: dict[tuple[int, str], tuple[float, dict[str, int], float | None]] = {}
        self._guard = threading.Lock()

    def watch(self, queue: Queue) -> None:
        with self._guard:
            self._queues[(id(queue), queue.name)] = queue

    def collect(self) -> Iterator[Any]:
        depth = GaugeMetricFamily("coordination_queue_depth", "Tasks in the queue by state.",
                                  labels=["queue", "state"])
        age = GaugeMetricFamily("coordination_queue_oldest_pending_age_seconds",
                                "Age of the task that get() hands out next.", labels=["queue"])
        with self._guard:
            watched = list(self._queues.items())
        for key, queue in watched:
            reading = self._reading(key, queue)
            if reading is None:
                continue
            stats, oldest = reading
            for state, count in stats.items():
                depth.add_metric([queue.name, state], count)
            age.add_metric([queue.name], 0.0 if oldest is None else max(0.0, time.time() - oldest))
        yield depth
        yield age

    def _reading(self, key: tuple[int, str], queue: Queue
                 ) -> tuple[dict[str, int], float | None] | None:
        now = time.monotonic()
        with self._guard:
            cached = self._read.get(key)
        if cached is not None and now - cached[0] < self._every:
            return cached[1], cached[2]
        try:
            stats = queue.stats()
            head = queue.peek(1) if stats["pending"] else []
        except CoordinationError:
            return None
        oldest = head[0].enqueued_at if head else None
        with self._guard:
            self._read[key] = (now, stats, oldest)
        return stats, oldest


def expose(port: int, addr: str = "127.0.0.1",
           registry: CollectorRegistry = REGISTRY) -> Any:
    """Serve ``registry`` at ``http://addr:port/metrics`` from a daemon thread (``addr``:
    "0.0.0.0" for every interface); the server, whose ``shutdown()`` stops it."""
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
