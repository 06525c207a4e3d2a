"""``python -m bench``: our recipes against the peers on the same local 3-node clusters,
in one run. Writes ``bench/results/latest.json``, ``latest.md`` and PNG plots.

    python -m bench                      # both backends, the full plan (~15 min)
    python -m bench --quick              # a smoke run: short, shallow queues
    python -m bench --backend etcd --depths 0,10000
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from coordination.lab.cluster import LocalCluster

from . import aio, carts, costs, report, scenarios
from .redis_server import RedisServer
from .subjects import Servers, lock_subjects, queue_subjects

RESULTS = Path(__file__).parent / "results"
CONTENDERS = (1, 8, 32)
RAW_CLIENTS = (1, 8, 32)
FLOWS = ((1, 1), (8, 8))
BATCH = 100
#: End to end with batches: 8 producers putting 40 at a time, 8 consumers taking 30.
BATCHED_FLOW = (8, 8, 40, 30)


class Plan:
    """The steps of a run, each a label and a callable storing into ``results``."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], None]]] = []

    def add(self, label: str, step: Callable[[], None]) -> None:
        self.steps.append((label, step))


def _guarded(store: dict[str, Any], key: str, measure: Callable[[], dict[str, Any]]) -> Callable[[], None]:
    """Run ``measure`` into ``store[key]``; a peer that fails is recorded, not fatal."""

    def step() -> None:
        try:
            store[key] = measure()
        except Exception as exc:  # noqa: BLE001 - one peer's failure must not end the run
            store[key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}

    return step


def plan_backend(plan: Plan, results: dict[str, Any], all_servers: Servers,
                 cluster: LocalCluster, duration: float, reps: int) -> None:
    """Every client of every figure on one follower (the common case: most clients are
    not on the leader), and the uncontended lock cycle once more on the leader; the
    lock figures' repetitions interleaved across the subjects."""
    backend = all_servers.backend
    out = results.setdefault(backend, {"raw": {}, "locks": {}, "queues": {}, "depth": {}})
    leader = cluster.wait_for_leader()
    follower = next(i for i in range(cluster.size) if i != leader)
    servers, on_leader = all_servers.pinned(follower), all_servers.pinned(leader)
    out["pinned"] = {"follower": servers.endpoints[0], "leader": on_leader.endpoints[0]}
    for clients in RAW_CLIENTS:
        plan.add(f"{backend}: raw writes, {clients} clients",
                 _guarded(out["raw"], str(clients),
                          lambda c=clients: scenarios.raw_writes(servers, c, duration, reps)))
    for where, pinned, counts in (("follower", servers, CONTENDERS), ("leader", on_leader, (1,))):
        subjects = []
        for subject in lock_subjects(pinned):
            row = out["locks"].setdefault(subject.label, {"ours": subject.ours,
                                                          "reference": subject.reference})
            if subject.unavailable:
                row["unavailable"] = subject.unavailable
            else:
                subjects.append(subject)
        for n in counts:
            key = str(n) if where == "follower" else f"{n} on the leader"
            watched = cluster if n == max(CONTENDERS) else None
            plan.add(f"{backend}: locks, {n} contender(s), on the {where}, interleaved",
                     _interleaved(out["locks"], key, lambda s=subjects, n=n, w=watched:
                                  scenarios.lock_cycles_interleaved(s, n, duration, reps, w)))
    for subject in queue_subjects(servers):
        row = out["queues"].setdefault(subject.label, {"ours": subject.ours,
                                                       "reference": subject.reference})
        for producers, consumers in FLOWS:
            plan.add(f"{servers.backend}: {subject.label}, {producers}x{consumers}",
                     _guarded(row, f"{producers}x{consumers}",
                              lambda s=subject, p=producers, c=consumers:
                              scenarios.queue_flow(s, p, c, duration, reps)))
        if _takes_many(subject):
            plan.add(f"{servers.backend}: {subject.label}, 8x8 batched end to end",
                     _guarded(row, "8x8 batched", lambda s=subject: scenarios.queue_flow_batched(
                         s, *BATCHED_FLOW, duration, reps)))
        plan.add(f"{servers.backend}: {subject.label}, batches of {BATCH}",
                 _guarded(row, "batch", lambda s=subject: scenarios.queue_batches(
                     s, BATCH, duration, reps)))
    plan.add(f"{backend}: cart reservations, {carts.BUYERS} buyers",
             _guarded(out, "carts", lambda: carts.reservations(servers, duration, reps)))
    plan.add(f"{backend}: asyncio against threads",
             _guarded(out, "aio", lambda: aio.compare(servers, duration, reps)))
    plan.add(f"{backend}: metrics and tracing overhead",
             _guarded(out, "metrics", lambda: costs.metrics_cost(servers, duration, reps)))


def _interleaved(rows: dict[str, Any], key: str,
                 measure: Callable[[], dict[str, dict[str, Any]]]) -> Callable[[], None]:
    """A step that stores each subject's figure under ``rows[label][key]`` (or the
    error under every subject's)."""
    def step() -> None:
        try:
            figures = measure()
        except Exception as exc:  # noqa: BLE001 - one failed figure must not end the run
            figures = {label: {"error": f"{type(exc).__name__}: {exc}"} for label in rows
                       if "unavailable" not in rows[label]}
        for label, figure in figures.items():
            rows[label][key] = figure
    return step


def _takes_many(subject: Any) -> bool:
    """Whether the subject's queues take batches (ours and Redis; kazoo's do not)."""
    return subject.ours or subject.reference


def plan_depth(plan: Plan, results: dict[str, Any], servers: Servers, depths: list[int]) -> None:
    """Last of a backend's steps: a million waiting tasks slow everything after them."""
    out = results[servers.backend]
    name = "deep"
    filled = [0]
    for depth in depths:
        def measure(depth: int = depth) -> dict[str, Any]:
            if depth == 0:
                return scenarios.get_latency(servers.url, "shallow", 200, refill=True)
            started = time.monotonic()
            scenarios.fill(servers.url, name, depth + 200 - filled[0])
            filled[0] = depth
            figures = scenarios.get_latency(servers.url, name, 200, refill=False)
            return {**figures, "fill_s": time.monotonic() - started}
        plan.add(f"{servers.backend}: get latency at {depth:,} waiting", _guarded(
            out["depth"], str(depth), measure))


@click.command()
@click.option("--backend", "backends", multiple=True, type=click.Choice(["zookeeper", "etcd"]),
              help="Only this backend (repeatable); default both.")
@click.option("--quick", is_flag=True, help="Short smoke run: 1 s per figure, 1 repetition, "
              "depths 0 and 10,000.")
@click.option("--duration", type=float, default=2.0, show_default=True,
              help="Seconds per measurement.")
@click.option("--reps", type=int, default=3, show_default=True, help="Repetitions per figure.")
@click.option("--depths", default=None,
              help="Queue depths for the get latency, comma-separated "
              "[default: 0,10000,100000,1000000; with --quick 0,10000].")
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True,
              help="Where latest.json, latest.md and the plots go.")
@click.option("--only", default=None, metavar="TEXT",
              help="Run only the steps whose label contains TEXT (and the raw writes).")
def main(backends: tuple[str, ...], quick: bool, duration: float, reps: int,
         depths: str | None, out: Path, only: str | None) -> None:
    """Benchmark our locks and queues against kazoo, etcd-sdk-python, tooz and Redis,
    and cart reservations against counters and locks."""
    console = Console()
    if quick:
        duration, reps = 1.0, 1
    depths = depths or ("0,10000" if quick else "0,10000,100000,1000000")
    depth_list = [int(d) for d in depths.split(",") if d.strip()]
    chosen = list(backends) or ["zookeeper", "etcd"]
    redis = RedisServer()
    if not redis.available:
        console.print("[yellow]redis-server not installed: the Redis reference is skipped "
                      "(bash scripts/bench.sh installs it)[/]")
    results: dict[str, Any] = {}
    began = time.monotonic()
    meta = {"command": "python -m bench " + " ".join(sys.argv[1:]), "duration_s": duration,
            "reps": reps, "depths": depth_list, "python": platform.python_version(),
            "machine": f"{platform.machine()}, {_cpus()} CPUs", "date": time.strftime("%Y-%m-%d")}
    try:
        if redis.available:
            redis.start()
        for backend in chosen:
            # ZooKeeper keeps every node in memory: a million tasks need more than 1 GiB.
            cluster = LocalCluster(backend, nodes=3, zookeeper_heap="4g")
            console.print(f"starting a local 3-node {backend} cluster")
            cluster.start()
            secured = LocalCluster(backend, nodes=3, secure=True)
            try:
                servers = Servers(backend, f"{cluster.url}/bench", cluster.endpoints,
                                  redis.port if redis.available else None)
                plan = Plan()
                plan_backend(plan, results, servers, cluster, duration, reps)
                plan.add(f"{backend}: ours over TLS + auth vs plaintext", _guarded(
                    results[backend], "tls", lambda b=backend, s=servers, c=secured: _tls(
                        b, s, c, duration, reps)))
                plan_depth(plan, results, servers, depth_list)
                if only is not None:
                    plan.steps = [(label, step) for label, step in plan.steps
                                  if only in label or "raw writes" in label]
                _run(plan, console)
            finally:
                cluster.stop()
                secured.stop()
    finally:
        redis.stop()
    meta["total_s"] = round(time.monotonic() - began, 1)
    document = {"meta": meta, "results": results}
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    markdown = report.markdown(document)
    (out / "latest.md").write_text(markdown)
    plots = report.plots(document, out) if only is None else []  # plots need every figure
    console.print(markdown)
    console.print(f"wrote {out / 'latest.json'}, {out / 'latest.md'} and {len(plots)} plots "
                  f"in {meta['total_s']:.0f}s")


def _tls(backend: str, plain: Servers, secured: LocalCluster, duration: float,
         reps: int) -> dict[str, Any]:
    """The TLS figure: a secured cluster next to the plain one (TLS, client certificates,
    the app user; etcd tokens of the default TTL)."""
    secured.start()
    over_tls = Servers(backend, secured.client_url("app", "app-bench"), secured.endpoints)
    return costs.tls_cost(lock_subjects(plain)[0], queue_subjects(plain)[0],
                          lock_subjects(over_tls)[0], queue_subjects(over_tls)[0],
                          duration, reps)


def _run(plan: Plan, console: Console) -> None:
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("", total=len(plan.steps))
        for label, step in plan.steps:
            progress.update(task, description=label)
            step()
            progress.advance(task)


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
