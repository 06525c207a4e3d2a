"""An at-least-once work queue with acks, retries, priorities, delays, ordering keys and
dead letters, over the backend's transactional key-value store (``backend.kv``).

Layout under the queue's root (fixed-width names, so key order is delivery order)::

    t/ID                        task record: JSON header, newline, payload
    r/PRI/B1/B2/SEQ.ID          ready index (PRI: 100 - priority, so higher comes first)
    w/B1/B2/DUE.ID              delayed index, by due time
    f/ID                        in flight (persistent) ...
    c/ID                        ... and its claim, tied to the worker's session
    d/ID                        dead letters
    x/SECOND/DONE.ID            acked tasks, by ack time: their t/ID (header only) stays
                                for DEDUPE_WINDOW seconds so a retried put is a no-op
    k/KEY/SEQ.ID, n/KEY         per ordering key: its FIFO and the count of its tasks
    bell                        touched by every change that may make a task ready

Every state change is one atomic commit with checks, so a task is in exactly one index.
A claim is the pair ``f/ID`` + ephemeral ``c/ID`` (whose value holds the claim's nonce);
it leaves ``t/ID`` as it was, and its token is the stamp of its commit. ``ack``/``nack``
check the versions of ``c/ID`` and ``t/ID`` as claimed: a lost claim put back rewrites
``t/ID``, so if the task was handed out again, they raise ``ClaimLost`` and change
nothing. A claim
whose ``c/ID`` vanished with its session, or outlived its time limit (``c/ID``'s value
holds it), is put back (attempts + 1) by any consumer.

The parts, one job each: ``record`` (the record and its codec), ``layout`` (the keys),
``put``, ``claim``, ``claims`` (what a claim is), ``task`` (a claimed task: ack,
nack, extend, batched acks), ``maintenance`` (due delayed tasks, lost or timed-out claims,
expired acked tasks), ``dead_letters``, ``bell``, ``browse`` (peek, purge), ``codec``
(payloads as bytes or JSON), ``queue`` (``Queue``, whose ``get`` ties claiming, upkeep
and waiting together) and ``worker`` (a handler run over the tasks).
``limits`` holds the numbers; they are re-exported here for reading only.
"""

from __future__ import annotations

from .limits import (
    DEDUPE_WINDOW,
    INNER_NS,
    MAINTAIN_EVERY,
    MAX_PAYLOAD,
    MAX_PRIORITY,
    MIN_PRIORITY,
    OUTER_NS,
)
from .queue import Queue
from .task import Task
from .worker import Retry, Worker, WorkerStats

__all__ = [
    "DEDUPE_WINDOW",
    "INNER_NS",
    "MAINTAIN_EVERY",
    "MAX_PAYLOAD",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "OUTER_NS",
    "Queue",
    "Retry",
    "Task",
    "Worker",
    "WorkerStats",
]
