"""The scenarios of the benchmark (issue 6). Each returns plain dicts for the report.

- raw writes: the cluster's physical limit, single-key writes by 1, 8 and 32 clients;
- lock: uncontended cycles, then 8 and 32 contenders on one lock (throughput, hand-off
  latency from a release to the next acquire, and at 32 contenders the server requests
  and watch notifications per acquire);
- queue: put and take (get + ack) with 1x1 and 8x8 producers x consumers, batched puts,
  and get latency at several queue depths.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from coordination.lab.cluster import LocalCluster

from .measure import Figure, percentile, run_threads
from .subjects import OurQueue, Servers, Subject, close_all

Loop = Callable[[Callable[[], bool]], None]


# --- the limit ----------------------------------------------------------------------------


def _raw_writer(servers: Servers) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(write, close)`` for a fresh client writing one key of its own."""
    key = f"bench-raw-{uuid.uuid4().hex[:8]}"
    if servers.backend == "zookeeper":
        from kazoo.client import KazooClient

        client = KazooClient(hosts=",".join(servers.endpoints), timeout=10)
        client.start(timeout=30)
        client.ensure_path(f"/{key}")

        def close() -> None:
            client.stop()
            client.close()

        return (lambda: client.set(f"/{key}", b"x")), close
    import pyetcd

    host, port = servers.endpoints[0].rsplit(":", 1)
    etcd = pyetcd.client(host=host, port=int(port))
    return (lambda: etcd.put(key, b"x")), etcd.close


def raw_writes(servers: Servers, clients: int, duration: float, reps: int) -> dict[str, Any]:
    latencies: list[float] = []
    writers = [_raw_writer(servers) for _ in range(clients)]
    try:
        rates = [_raw_rep([w for w, _close in writers], duration, latencies) for _ in range(reps)]
    finally:
        for _write, close in writers:
            close()
    return {"rate": Figure.of(rates).as_dict(), "p50_ms": percentile(latencies, 50) * 1e3,
            "p99_ms": percentile(latencies, 99) * 1e3}


def _raw_rep(writes: list[Callable[[], None]], duration: float, latencies: list[float]) -> float:
    counts = [0] * len(writes)

    def loop(i: int) -> Loop:
        def run(going: Callable[[], bool]) -> None:
            while going():
                t0 = time.perf_counter()
                writes[i]()
                latencies.append(time.perf_counter() - t0)
                counts[i] += 1
        return run

    elapsed = run_threads([loop(i) for i in range(len(writes))], duration)
    return sum(counts) / elapsed


# --- locks --------------------------------------------------------------------------------


def lock_cycles(subject: Subject, contenders: int, duration: float, reps: int,
                cluster: LocalCluster | None) -> dict[str, Any]:
    """``contenders`` threads, each with a client of its own, acquire and release one
    lock as fast as they can. Checks mutual exclusion on the way (a violation raises)."""
    return lock_cycles_interleaved([subject], contenders, duration, reps,
                                   cluster)[subject.label]


def lock_cycles_interleaved(subjects: list[Subject], contenders: int, duration: float,
                            reps: int, cluster: LocalCluster | None
                            ) -> dict[str, dict[str, Any]]:
    """:func:`lock_cycles` of several subjects, their repetitions interleaved (rep 1 of
    each, then rep 2 of each, ...), so that a cluster warming up or a busy moment of
    the machine weighs on all of them alike; a figure per subject's label. Server
    traffic is counted for our own subject only (``cluster``, where given)."""
    reps_of: dict[str, list[tuple[list[tuple[float, float]], float, Any]]] = {
        subject.label: [] for subject in subjects}
    for _ in range(reps):
        for subject in subjects:
            watched = cluster if subject.ours else None
            reps_of[subject.label].append(_lock_rep(subject, contenders, duration, watched))
    return {label: _lock_figure(label, contenders, done) for label, done in reps_of.items()}


def _lock_figure(label: str, contenders: int,
                 done: list[tuple[list[tuple[float, float]], float, Any]]) -> dict[str, Any]:
    rates, handoffs, requests, notifications = [], [], [], []
    for holds, elapsed, traffic in done:
        for (_start, end), (next_start, _next_end) in zip(holds, holds[1:]):
            if next_start < end:
                raise AssertionError(f"{label}: two holders at once")
            handoffs.append(next_start - end)
        rates.append(len(holds) / elapsed)
        if traffic is not None and holds:
            requests.append(traffic[0] / len(holds))
            notifications.append(traffic[1] / len(holds))
    result: dict[str, Any] = {"rate": Figure.of(rates).as_dict()}
    if contenders > 1:
        result["handoff_p50_ms"] = percentile(handoffs, 50) * 1e3
        result["handoff_p99_ms"] = percentile(handoffs, 99) * 1e3
    if requests:
        result["requests_per_acquire"] = Figure.of(requests).median
        result["notifications_per_acquire"] = Figure.of(notifications).median
    return result


def _lock_rep(subject: Subject, contenders: int, duration: float, cluster: LocalCluster | None
              ) -> tuple[list[tuple[float, float]], float, tuple[float, float] | None]:
    """One repetition: the holds ``(acquired, released)`` in order, the time, and the
    requests the servers received and the watch notifications they sent meanwhile."""
    name = f"l{uuid.uuid4().hex[:8]}"  # one lock, all contenders
    made = [subject.make(name) for _ in range(contenders)]
    holds: list[tuple[float, float]] = []
    guard = threading.Lock()

    def loop(contender: Any) -> Loop:
        def run(going: Callable[[], bool]) -> None:
            while going():
                contender.acquire()
                acquired = time.perf_counter()
                released = time.perf_counter()  # no work inside: the hold is the hand-off
                with guard:
                    holds.append((acquired, released))
                contender.release()
        return run

    try:
        before = _traffic(cluster)
        elapsed = run_threads([loop(c) for c in made], duration)
        after = _traffic(cluster)
    finally:
        close_all(made)
    traffic = None if before is None or after is None else (
        after[0] - before[0], after[1] - before[1])
    return sorted(holds), elapsed, traffic


def _traffic(cluster: LocalCluster | None) -> tuple[float, float] | None:
    """``(requests received, watch notifications sent)`` by the servers so far."""
    return None if cluster is None else (cluster.requests(), cluster.notifications())


# --- queues -------------------------------------------------------------------------------


class _Backlog:
    """Producers hold back while more than ``bound`` tasks wait: a flow figure is then
    the rate the queue sustains (as many taken as put), not how fast producers can fill
    a queue whose consumers fall behind while their puts crowd out the takes."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self._waiting = 0
        self._room = threading.Condition()

    def wait_for_room(self, going: Callable[[], bool]) -> None:
        with self._room:
            while self._waiting > self.bound and going():
                self._room.wait(0.05)

    def put(self, n: int) -> None:
        with self._room:
            self._waiting += n

    def taken(self, n: int) -> None:
        with self._room:
            self._waiting -= n
            self._room.notify_all()


def queue_flow(subject: Subject, producers: int, consumers: int, duration: float,
               reps: int) -> dict[str, Any]:
    """Producers put and consumers take (get + ack) at the same time, each with a
    client of its own, producers holding back while more than 4 tasks per consumer
    wait (``_Backlog``); puts/s and takes/s."""
    puts, takes = [], []
    for _ in range(reps):
        put, took = _flow_rep(subject, producers, consumers, duration)
        puts.append(put)
        takes.append(took)
    return {"puts": Figure.of(puts).as_dict(), "takes": Figure.of(takes).as_dict()}


def _flow_rep(subject: Subject, producers: int, consumers: int, duration: float
              ) -> tuple[float, float]:
    name = f"q{uuid.uuid4().hex[:8]}"
    made = [subject.make(name) for _ in range(producers + consumers)]
    counts = [0] * len(made)
    backlog = _Backlog(4 * consumers)

    def producer(i: int) -> Loop:
        def run(going: Callable[[], bool]) -> None:
            while going():
                backlog.wait_for_room(going)
                made[i].put(b"order")
                backlog.put(1)
                counts[i] += 1
        return run

    def consumer(i: int) -> Loop:
        def run(going: Callable[[], bool]) -> None:
            while going():
                if made[i].take():
                    backlog.taken(1)
                    counts[i] += 1
        return run

    loops = [producer(i) for i in range(producers)]
    loops += [consumer(producers + i) for i in range(consumers)]
    try:
        elapsed = run_threads(loops, duration)
    finally:
        close_all(made)
    return sum(counts[:producers]) / elapsed, sum(counts[producers:]) / elapsed


def queue_flow_batched(subject: Subject, producers: int, consumers: int, put_batch: int,
                       take_batch: int, duration: float, reps: int) -> dict[str, Any]:
    """End to end with batches: producers ``put_many`` ``put_batch`` tasks at a time
    (holding back while more than 4 batches per consumer wait), consumers claim and ack
    up to ``take_batch`` at a time (``take_many``: for ours, what ``consume(batch=...)``
    does); tasks acked/s."""
    takes = []
    for _ in range(reps):
        takes.append(_flow_batched_rep(subject, producers, consumers, put_batch, take_batch,
                                       duration))
    return {"takes": Figure.of(takes).as_dict()}


def _flow_batched_rep(subject: Subject, producers: int, consumers: int, put_batch: int,
                      take_batch: int, duration: float) -> float:
    name = f"q{uuid.uuid4().hex[:8]}"
    made = [subject.make(name) for _ in range(producers + consumers)]
    taken = [0] * consumers
    backlog = _Backlog(4 * consumers * take_batch)

    def producer(i: int) -> Loop:
        def run(going: Callable[[], bool]) -> None:
            while going():
                backlog.wait_for_room(going)
                made[i].put_many([b"order"] * put_batch)
                backlog.put(put_batch)
        return run

    def consumer(i: int) -> Loop:
        def run(going: Callable[[], bool]) -> None:
            while going():
                took = made[producers + i].take_many(take_batch)
                backlog.taken(took)
                taken[i] += took
        return run

    loops = [producer(i) for i in range(producers)] + [consumer(i) for i in range(consumers)]
    try:
        elapsed = run_threads(loops, duration)
    finally:
        close_all(made)
    return sum(taken) / elapsed


def queue_batches(subject: Subject, batch: int, duration: float, reps: int) -> dict[str, Any]:
    """One producer storing batches of ``batch`` tasks; tasks/s."""
    return {"rate": Figure.of([_batch_rep(subject, batch, duration)
                               for _ in range(reps)]).as_dict()}


def _batch_rep(subject: Subject, batch: int, duration: float) -> float:
    worker = subject.make(f"b{uuid.uuid4().hex[:8]}")
    stored = [0]

    def run(going: Callable[[], bool]) -> None:
        while going():
            worker.put_many([b"order"] * batch)
            stored[0] += batch

    try:
        elapsed = run_threads([run], duration)
    finally:
        close_all([worker])
    return stored[0] / elapsed


def fill(url: str, name: str, count: int, threads: int = 8, batch: int = 400) -> None:
    """Put ``count`` tasks into queue ``name`` with ``threads`` clients at once."""
    share = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def loop(n: int) -> Loop:
        def run(_going: Callable[[], bool]) -> None:
            worker = OurQueue(url, name)
            try:
                for start in range(0, n, batch):
                    worker.put_many([b"order"] * min(batch, n - start))
            finally:
                worker.close()
        return run

    run_threads([loop(n) for n in share], 0)


def get_latency(url: str, name: str, samples: int, refill: bool) -> dict[str, float]:
    """Latency of ``get`` (then ack, not timed) on queue ``name``; with ``refill`` a task
    is put before each get, for the nearly empty queue."""
    worker = OurQueue(url, name)
    latencies = []
    try:
        for _ in range(samples):
            if refill:
                worker.put(b"order")
            t0 = time.perf_counter()
            task = worker.queue.get(timeout=10)
            latencies.append(time.perf_counter() - t0)
            if task is None:
                raise AssertionError(f"queue {name} empty while measuring")
            task.ack()
    finally:
        worker.close()
    return {"p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3}
