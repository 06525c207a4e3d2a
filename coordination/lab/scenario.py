"""Run a workload against a cluster while faults are injected, then check the history.

A scenario: worker processes (lock buyers, or queue producers and consumers) connect
through a :class:`ProxiedCluster`; once they make progress the faults run one after the
other; the workers go on until they made progress again after the last fault, then stop;
the checkers read the recorded histories and the servers' final state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import coordination

from .. import inspect
from ..errors import CoordinationError
from . import checkers
from .cluster import LocalCluster
from .nemesis import Context, Fault
from .proxy import ProxiedCluster
from .resource import Inventory

STOCK = 1_000_000
#: The shop workload's inventory (``shop.SHOP_SKUS``) and its holds' lifetime (s).
SHOP_STOCK = {"sku-a": 12, "sku-b": 9, "sku-c": 6}  # small: carts run it out
HOLD_TTL = 2.0
ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class Verdict:
    scenario: str
    backend: str
    faults: list[str]
    checks: dict[str, list[str]]
    operations: int

    @property
    def ok(self) -> bool:
        return not any(self.checks.values())

    def report(self) -> str:
        lines = [f"{self.backend} {self.scenario}: {'OK' if self.ok else 'VIOLATION'} "
                 f"({self.operations} operations)"]
        lines += [f"  fault: {fault}" for fault in self.faults]
        for name, problems in self.checks.items():
            lines.append(f"  {name}: {'ok' if not problems else ''}")
            lines += [f"    {problem}" for problem in problems[:10]]
        return "\n".join(lines)


def namespace_url(cluster: LocalCluster, namespace: str, hosts: str | None = None,
                  **query: object) -> str:
    """The URL of ``namespace`` on ``cluster``, through ``hosts`` (the proxies') if given;
    on a secure cluster the app user's (TLS files and password file as parameters)."""
    extra = "&".join(f"{key}={value}" for key, value in query.items())
    if cluster.secure:
        url = cluster.client_url("app", namespace)
        if hosts is not None:
            url = url.replace(",".join(cluster.endpoints), hosts)
        return f"{url}&{extra}" if extra else url
    url = f"{cluster.backend}://{hosts or ','.join(cluster.endpoints)}/{namespace}"
    return f"{url}?{extra}" if extra else url


def spawn_module(module: str, args: Sequence[str], log: Path | None = None,
                 cwd: Path | None = ROOT, own_session: bool = False) -> subprocess.Popen[bytes]:
    """Start ``python -m MODULE *ARGS`` with this checkout importable (first on
    PYTHONPATH) and faulthandler on, in ``cwd`` (None: ours). Its stdout and stderr are
    appended to ``log``, its stdin closed; without a log its stdout is dropped and its
    stderr is ours. ``own_session``: in a session of its own, so that a Ctrl-C at the
    terminal reaches us only. Stop it by its pid (:func:`reap`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONFAULTHANDLER"] = "1"  # a child that crashes (a signal) leaves its stacks
    command = [sys.executable, "-m", module, *args]
    if log is None:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                start_new_session=own_session)
    with log.open("ab") as out:  # the child has its own copy of the descriptor
        return subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=own_session)


def wait_exits(procs: Sequence[subprocess.Popen[bytes]],
               timeout: float) -> list[subprocess.Popen[bytes]]:
    """Give ``procs`` until ``timeout`` seconds from now to exit (each at least 0.1 s,
    if ``timeout`` > 0; else just look); those still running."""
    deadline = time.monotonic() + timeout
    running = []
    for proc in procs:
        try:
            if timeout > 0:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            elif proc.poll() is None:
                running.append(proc)
        except subprocess.TimeoutExpired:
            running.append(proc)
    return running


def reap(procs: Sequence[subprocess.Popen[bytes]], timeout: float) -> None:
    """Give ``procs`` ``timeout`` seconds to exit (see :func:`wait_exits`), then SIGKILL
    the rest, by pid, and reap them."""
    for proc in wait_exits(procs, timeout):
        proc.kill()
        proc.wait()


def _spawn(args: Sequence[str]) -> subprocess.Popen[bytes]:
    return spawn_module("coordination.lab.workloads", args)


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)


def wait_drained(queue: coordination.Queue, timeout: float) -> dict[str, int]:
    """Wait until nothing is pending, delayed, blocked or in flight in ``queue``, all in
    one ``stats()`` reading (a task may move between two reads); return that reading.
    Raises ``TimeoutError``."""
    stats: dict[str, int] = {}

    def drained() -> bool:
        stats.update(queue.stats())
        return not any(n for state, n in stats.items() if state != "dead")

    _wait(drained, timeout, "queue drained")
    return stats


def _stop(workers: list[subprocess.Popen[bytes]], histories: list[Path], timeout: float) -> None:
    for path in histories:
        Path(str(path) + ".stop").touch()
    reap(workers, timeout)


def _count(histories: list[Path], op: str) -> int:
    return sum(1 for e in checkers.load(histories) if e["op"] == op and e.get("ok", True))


@dataclasses.dataclass
class _Run:
    """Workers of one scenario, started through client-link proxies in a new namespace."""

    cluster: LocalCluster
    workdir: Path
    ttl: float
    seed: int

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proxies = ProxiedCluster(self.cluster.backend, self.cluster.endpoints)
        # On a secure cluster, under the prefix of the app user, whose URL the workers get.
        self.namespace = f"{'app-' if self.cluster.secure else ''}chaos{uuid.uuid4().hex[:8]}"
        self.url = namespace_url(self.cluster, self.namespace, self.proxies.url.split("://")[1],
                                 session_ttl=self.ttl, request_timeout=10)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.histories: list[Path] = []
        self.faults_ended = 0.0  # monotonic
        self.alive_after_faults: list[int] = []  # pids

    def spawn(self, kind: str, history: str, positional: Sequence[str],
              options: Sequence[str] = ()) -> None:
        """Start ``workloads KIND URL *POSITIONAL HISTORY *OPTIONS``."""
        path = self.workdir / f"{history}.jsonl"
        self.histories.append(path)
        self.procs.append(_spawn([kind, self.url, *positional, str(path), *options]))

    def inject(self, faults: Sequence[Fault], progress: str,
               caught_up: Callable[[], bool] | None = None) -> list[str]:
        """Wait for progress, inject the faults one after the other, wait for progress
        again (and up to 20 s for ``caught_up()``, which a checker then judges), stop the
        workers; what the faults did."""
        ctx = Context(self.cluster, self.proxies, self.ttl, self.procs, self.histories,
                      random.Random(self.seed))
        try:
            _wait(lambda: _count(self.histories, progress) >= 3, 60, f"first {progress}s")
            done = [fault(ctx) for fault in faults]
            self.faults_ended = time.monotonic()
            self.alive_after_faults = [p.pid for p in self.procs if p.poll() is None]
            before = _count(self.histories, progress)
            _wait(lambda: _count(self.histories, progress) >= before + 3, 60,
                  "progress after the faults")
            if caught_up is not None:
                with contextlib.suppress(TimeoutError):
                    _wait(caught_up, 20, "caught up")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.diagnose()}") from None
        finally:
            _stop(self.procs, self.histories, timeout=self.ttl * 3 + 10)
            self.proxies.close()
        return done

    def diagnose(self) -> str:
        """The servers' states and what the namespace holds, read directly (no proxy),
        for a scenario that stopped making progress."""
        lines = [f"  node {row}" for row in self.cluster.status()]
        try:
            url = namespace_url(self.cluster, self.namespace, connect_timeout=3, request_timeout=3)
            with coordination.connect(url) as coord:
                lines.append(f"  namespace: {inspect.snapshot(coord)}")
        except CoordinationError as exc:
            lines.append(f"  namespace unreadable: {type(exc).__name__}: {exc}")
        return "\n".join(lines)

    def exits(self) -> list[str]:
        return [f"worker exit code {p.returncode}" for p in self.procs
                if p.returncode not in (0, -9)]


def run_lock_scenario(cluster: LocalCluster, name: str, faults: Sequence[Fault], workdir: Path,
                      ttl: float = 2.0, workers: int = 3, fenced: bool = True,
                      hold: float = 0.02, seed: int = 0, aio: bool = False) -> Verdict:
    """Buyers take one lock and decrement one SKU in the inventory; see module doc.
    ``aio``: the buyers use ``coordination.aio``."""
    run = _Run(cluster, workdir, ttl, seed)
    db = workdir / "inventory.sqlite"
    inventory = Inventory(db, fenced=fenced)
    inventory.create("sku-1", STOCK)
    extra = ["--hold", str(hold)] + ([] if fenced else ["--unfenced"]) + (["--aio"] if aio else [])
    for i in range(workers):
        run.spawn("lock", f"buyer{i}", ["sku-1", str(db)], extra)
    done = run.inject(faults, "write")
    events = checkers.load(run.histories)
    checks = {
        "fenced writes": checkers.check_fenced_writes(inventory.writes("sku-1"), STOCK),
        "holds never overlap": checkers.check_lock_holds(events),
        "typed errors": checkers.check_errors_typed(events),
        "no orphans": _orphans(cluster, run.namespace, ttl, lambda c: c.lock("sku-1").path),
        "workers exited cleanly": run.exits(),
    }
    sales = sum(1 for _pid, _t, _q, applied in inventory.writes("sku-1") if applied)
    checks["inventory"] = checkers.check_inventory(STOCK, inventory.read("sku-1"), sales)
    inventory.close()
    return Verdict(name, cluster.backend, done, checks, len(events))


def run_recipe_scenario(cluster: LocalCluster, recipe: str, name: str, faults: Sequence[Fault],
                        workdir: Path, ttl: float = 2.0, workers: int = 3, permits: int = 2,
                        seed: int = 0) -> Verdict:
    """``recipe`` is ``semaphore`` (at most ``permits`` holders at once), ``election``
    (one leader at a time, tokens grow), ``counter`` (decrements of a stock: none lost
    or applied twice, real-time order) or ``inventory`` (carts reserved, confirmed,
    released or left to expire: no unit oversold or lost, no hold ended twice)."""
    run = _Run(cluster, workdir, ttl, seed)
    kind = {"semaphore": "semaphore", "election": "elect", "counter": "count",
            "inventory": "shop"}[recipe]
    extra = {"semaphore": ["--permits", str(permits)], "inventory": ["--ttl", str(HOLD_TTL)]
             }.get(recipe, [])
    if recipe == "counter":
        with coordination.connect(namespace_url(cluster, run.namespace)) as coord:
            coord.counter("stock").set(STOCK)
    if recipe == "inventory":
        with coordination.connect(namespace_url(cluster, run.namespace)) as coord:
            coord.inventory("stock").set(SHOP_STOCK)
    for i in range(workers):
        run.spawn(kind, f"{kind}{i}", ["stock"], extra)

    def observers() -> list[str]:
        return checkers.check_observers(checkers.load(run.histories), run.faults_ended,
                                        run.alive_after_faults)

    progress = {"counter": "add", "inventory": "answer"}.get(recipe, "release")
    done = run.inject(faults, progress,
                      (lambda: not observers()) if recipe == "election" else None)
    events = checkers.load(run.histories)
    checks = {"typed errors": checkers.check_errors_typed(events),
              "workers exited cleanly": run.exits()}
    if recipe == "counter":
        with coordination.connect(namespace_url(cluster, run.namespace)) as coord:
            final = coord.counter("stock").value
        checks["counter"] = checkers.check_counter(events, STOCK, final)
    elif recipe == "inventory":
        checks["reservations"] = checkers.check_reservations(events, SHOP_STOCK, _final_levels(
            namespace_url(cluster, run.namespace)))
    else:
        if recipe == "semaphore":
            checks["at most permits holders"] = checkers.check_capacity(events, permits)
        else:
            checks["one leader at a time"] = checkers.check_lock_holds(events)
            checks["observers keep reporting"] = observers()

        def path(coord: coordination.Coordinator) -> str:
            if recipe == "semaphore":
                return coord.semaphore("stock", permits=permits).path
            return coord.election("stock").path

        checks["no orphans"] = _orphans(cluster, run.namespace, ttl, path)
    return Verdict(name, cluster.backend, done, checks, len(events))


def _final_levels(url: str) -> dict[str, tuple[int, int, int]]:
    """The levels of the shop's SKUs once every hold left by the workers has expired
    (returned by a sweep of this client)."""
    with coordination.connect(url) as coord:
        inventory = coord.inventory("stock")

        def all_returned() -> bool:
            inventory.sweep()
            return all(inventory.reserved(sku) == 0 for sku in SHOP_STOCK)

        with contextlib.suppress(TimeoutError):  # the checker reports what is left
            _wait(all_returned, HOLD_TTL + 30, "every hold ended")
        return {sku: inventory.levels(sku) for sku in SHOP_STOCK}


def _orphans(cluster: LocalCluster, namespace: str, ttl: float,
             path: Callable[[coordination.Coordinator], str]) -> list[str]:
    """After the workers are gone, no contender of theirs may stay (within one TTL)."""
    with coordination.connect(namespace_url(cluster, namespace)) as coord:
        where = path(coord)
        backend = coord.driver

        def entries() -> list[str]:
            return [entry.key for entry in backend.contenders(where)]

        try:
            _wait(lambda: not entries(), ttl * 2 + 3, "dead sessions' entries gone")
        except TimeoutError:
            return [f"orphan contender {entry}" for entry in entries()]
        return []


def run_queue_scenario(cluster: LocalCluster, name: str, faults: Sequence[Fault], workdir: Path,
                       ttl: float = 2.0, producers: int = 2, consumers: int = 3,
                       count: int = 60, seed: int = 0, threads: int = 3,
                       nack: float = 0.1, aio: bool = False) -> Verdict:
    """Producers put keyed and plain tasks with their own ids; consumer processes of
    ``threads`` threads each, sharing one coordinator, ack them (and nack a ``nack``
    fraction of the claims): the even ones by hand-written ``get`` loops, the odd ones
    through the library's worker loop claiming batches of 4. ``aio``: the consumers use
    ``coordination.aio`` (tasks instead of threads, the async worker)."""
    run = _Run(cluster, workdir, ttl, seed)  # the links and namespace; the workers are ours
    proxies, namespace, url = run.proxies, run.namespace, run.url
    put_logs = [workdir / f"producer{i}.jsonl" for i in range(producers)]
    histories = [workdir / f"consumer{i}.jsonl" for i in range(consumers)]
    procs = [_spawn(["produce", url, "orders", str(h), "--count", str(count), "--keys", "5"])
             for h in put_logs]

    def consumer(history: Path) -> subprocess.Popen[bytes]:
        batch = "4" if histories.index(history) % 2 else "0"
        return _spawn(["consume", url, "orders", str(history), "--threads", str(threads),
                       "--nack", str(nack), "--batch", batch] + (["--aio"] if aio else []))

    workers = [consumer(h) for h in histories]
    ctx = Context(cluster, proxies, ttl, workers, histories, random.Random(seed))
    try:
        _wait(lambda: _count(histories, "ack") >= 5, 60, "first acks")
        done = [fault(ctx) for fault in faults]
        for i, worker in enumerate(workers):  # replace consumers a fault killed
            if worker.poll() is not None:
                workers[i] = consumer(histories[i])
        _wait(lambda: all(p.poll() is not None for p in procs), 120, "producers done")
        with coordination.connect(namespace_url(cluster, namespace)) as coord:
            queue = coord.queue("orders")
            stats = wait_drained(queue, 120)
            dead = {task.id for task in queue.dead_letters()}
    finally:
        _stop(workers + procs, histories + put_logs, timeout=ttl * 3 + 10)
        proxies.close()
    events = checkers.load(put_logs + histories)
    checks = {
        "total queue": checkers.check_queue(events, stats, dead),
        "exclusive delivery": checkers.check_exclusive_delivery(events),
        "typed errors": checkers.check_errors_typed(events),
        "workers exited cleanly": [f"worker exit code {p.returncode}" for p in workers + procs
                                   if p.returncode not in (0, -9)],
    }
    return Verdict(name, cluster.backend, done, checks, len(events))
