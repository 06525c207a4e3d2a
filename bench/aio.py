"""asyncio against threads, same process kind, same cluster, same run (issue 20): one
coordinator shared by all contenders (a service's way), with its contenders as threads
(the sync API) or as asyncio tasks (``coordination.aio``).

- locks: 32 and 256 contenders on one lock, each acquiring and releasing as fast as it
  can: cycles/s, hand-off p99 (a release to the next acquire), the process's threads
  and resident memory at their highest during the run;
- queue: 8 producers x 8 consumers, one task a call (``put``; ``get`` + ``ack``);
  tasks/s, threads and memory.

Repetitions alternate between the two. ``python -m bench.aio --backend etcd`` runs it
alone (a fresh local cluster).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import click

import coordination
import coordination.aio
from coordination.lab.cluster import LocalCluster

from .measure import Figure, percentile, run_threads
from .subjects import Servers

CONTENDERS = (32, 256)
FLOW = (8, 8)


class _Peak:
    """The process's thread count and resident memory at their highest, sampled every
    20 ms from a thread of its own while the run lasts."""

    def __init__(self) -> None:
        self.threads = 0
        self.rss_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.threads = max(self.threads, threading.active_count() - 1)  # not ours
            self.rss_mb = max(self.rss_mb, _rss_mb())


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --- locks --------------------------------------------------------------------------------


def _threads_locks(url: str, contenders: int, duration: float) -> tuple[list[tuple[float, float]], float]:
    name = f"l{uuid.uuid4().hex[:8]}"
    holds: list[tuple[float, float]] = []
    guard = threading.Lock()
    with coordination.connect(url) as coord:
        locks = [coord.lock(name) for _ in range(contenders)]

        def loop(lock: coordination.Lock) -> Callable[[Callable[[], bool]], None]:
            def run(going: Callable[[], bool]) -> None:
                while going():
                    if not lock.acquire(timeout=120):
                        raise TimeoutError("lock not acquired")
                    acquired = released = time.perf_counter()
                    with guard:
                        holds.append((acquired, released))
                    lock.release()
            return run

        elapsed = run_threads([loop(lock) for lock in locks], duration)
    return sorted(holds), elapsed


async def _async_locks(url: str, contenders: int, duration: float
                       ) -> tuple[list[tuple[float, float]], float]:
    name = f"l{uuid.uuid4().hex[:8]}"
    holds: list[tuple[float, float]] = []
    async with await coordination.aio.connect(url) as coord:
        stop = asyncio.Event()

        async def loop() -> None:
            lock = coord.lock(name)
            while not stop.is_set():
                if not await lock.acquire(timeout=120):
                    raise TimeoutError("lock not acquired")
                acquired = released = time.perf_counter()
                holds.append((acquired, released))
                await lock.release()

        began = time.monotonic()
        tasks = [asyncio.create_task(loop()) for _ in range(contenders)]
        await asyncio.sleep(duration)
        stop.set()
        elapsed = time.monotonic() - began
        await asyncio.gather(*tasks)
    return sorted(holds), elapsed


def _lock_figure(runs: list[tuple[list[tuple[float, float]], float, _Peak]]) -> dict[str, Any]:
    rates, handoffs = [], []
    for holds, elapsed, _peak in runs:
        for (_start, end), (next_start, _next_end) in zip(holds, holds[1:]):
            if next_start < end:
                raise AssertionError("two holders at once")
            handoffs.append(next_start - end)
        rates.append(len(holds) / elapsed)
    return {"rate": Figure.of(rates).as_dict(),
            "handoff_p99_ms": percentile(handoffs, 99) * 1e3,
            "threads": max(peak.threads for *_rest, peak in runs),
            "rss_mb": max(peak.rss_mb for *_rest, peak in runs)}


def locks(url: str, contenders: int, duration: float, reps: int) -> dict[str, Any]:
    """Threads and tasks contending for one lock, repetitions alternating."""
    runs: dict[str, list[tuple[list[tuple[float, float]], float, _Peak]]] = {
        "threads": [], "asyncio": []}
    for _ in range(reps):
        with _Peak() as peak:
            holds, elapsed = _threads_locks(url, contenders, duration)
        runs["threads"].append((holds, elapsed, peak))
        with _Peak() as peak:
            holds, elapsed = asyncio.run(_async_locks(url, contenders, duration))
        runs["asyncio"].append((holds, elapsed, peak))
    return {api: _lock_figure(done) for api, done in runs.items()}


# --- queue --------------------------------------------------------------------------------


def _threads_flow(url: str, duration: float) -> float:
    producers, consumers = FLOW
    name = f"q{uuid.uuid4().hex[:8]}"
    taken = [0] * consumers
    with coordination.connect(url) as coord:
        queue = coord.queue(name)
        waiting = threading.Semaphore(4 * consumers)  # producers hold back (see scenarios)

        def producer(going: Callable[[], bool]) -> None:
            while going():
                if waiting.acquire(timeout=0.05):
                    queue.put(b"order")

        def consumer(i: int) -> Callable[[Callable[[], bool]], None]:
            def run(going: Callable[[], bool]) -> None:
                while going():
                    task = queue.get(timeout=0.2)
                    if task is not None:
                        task.ack()
                        waiting.release()
                        taken[i] += 1
            return run

        elapsed = run_threads([producer] * producers + [consumer(i) for i in range(consumers)],
                              duration)
    return sum(taken) / elapsed


async def _async_flow(url: str, duration: float, workers: int) -> float:
    producers, consumers = FLOW
    name = f"q{uuid.uuid4().hex[:8]}"
    taken = 0
    async with await coordination.aio.connect(url, workers=workers) as coord:
        queue = coord.queue(name)
        waiting = asyncio.Semaphore(4 * consumers)
        stop = asyncio.Event()

        async def producer() -> None:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(waiting.acquire(), 0.05)
                except asyncio.TimeoutError:
                    continue
                await queue.put(b"order")

        async def consumer() -> None:
            nonlocal taken
            while not stop.is_set():
                task = await queue.get(timeout=0.2)
                if task is not None:
                    await task.ack()
                    waiting.release()
                    taken += 1

        began = time.monotonic()
        tasks = [asyncio.create_task(producer()) for _ in range(producers)]
        tasks += [asyncio.create_task(consumer()) for _ in range(consumers)]
        await asyncio.sleep(duration)
        stop.set()
        elapsed = time.monotonic() - began
        await asyncio.gather(*tasks)
    return taken / elapsed


def flow(url: str, duration: float, reps: int) -> dict[str, Any]:
    """The 8x8 queue flow with threads and with tasks (the default 4 request threads,
    and 16: as many requests at once as the threads have), repetitions alternating."""
    runs: dict[str, Callable[[], float]] = {
        "threads": lambda: _threads_flow(url, duration),
        "asyncio": lambda: asyncio.run(_async_flow(url, duration, 4)),
        "asyncio, 16 workers": lambda: asyncio.run(_async_flow(url, duration, 16)),
    }
    rates: dict[str, list[float]] = {api: [] for api in runs}
    peaks: dict[str, list[_Peak]] = {api: [] for api in runs}
    for _ in range(reps):
        for api, run in runs.items():
            with _Peak() as peak:
                rates[api].append(run())
            peaks[api].append(peak)
    return {api: {"rate": Figure.of(rates[api]).as_dict(),
                  "threads": max(peak.threads for peak in peaks[api]),
                  "rss_mb": max(peak.rss_mb for peak in peaks[api])} for api in rates}


def compare(servers: Servers, duration: float, reps: int) -> dict[str, Any]:
    """Every figure of this module, on ``servers``."""
    result: dict[str, Any] = {str(n): locks(servers.url, n, duration, reps) for n in CONTENDERS}
    result["8x8"] = flow(servers.url, duration, reps)
    return result


@click.command()
@click.option("--backend", type=click.Choice(["zookeeper", "etcd"]), multiple=True)
@click.option("--duration", type=float, default=3.0, show_default=True)
@click.option("--reps", type=int, default=3, show_default=True)
def main(backend: tuple[str, ...], duration: float, reps: int) -> None:
    """Print the figures, per backend, on a fresh local 3-node cluster (followers)."""
    for name in backend or ("zookeeper", "etcd"):
        cluster = LocalCluster(name, nodes=3)
        cluster.start()
        try:
            leader = cluster.wait_for_leader()
            follower = next(i for i in range(cluster.size) if i != leader)
            servers = Servers(name, f"{cluster.url}/bench", cluster.endpoints).pinned(follower)
            print(name, compare(servers, duration, reps))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
