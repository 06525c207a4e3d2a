"""Worker processes that record histories (one JSON line per event, monotonic clock).

    python -m coordination.lab.workloads lock URL SKU DB OUT [--hold S] [--unfenced]
    python -m coordination.lab.workloads produce URL QUEUE OUT --count N [--keys K]
    python -m coordination.lab.workloads consume URL QUEUE OUT [--threads T] [--nack F]
                                                 [--batch B]   (B: the library's worker loop)
    python -m coordination.lab.workloads semaphore URL NAME OUT [--permits P]
    python -m coordination.lab.workloads elect URL NAME OUT
    python -m coordination.lab.workloads count URL NAME OUT
    python -m coordination.lab.workloads shop URL NAME OUT [--ttl S]   (carts, reservations)

Workers run until the file ``OUT.stop`` exists (or are killed). Every public-API error is
recorded with its type; anything that is not a ``CoordinationError`` is a bug and ends
the worker with exit code 3.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

import coordination
from coordination.errors import (
    CoordinationError,
    LockLost,
    LockTimeout,
    UncertainOutcome,
)
from coordination.recipes.election import Election
from coordination.recipes.lock import Lock

from .resource import Inventory

T = TypeVar("T")


class Recorder:
    """Appends events to ``out``, one JSON line each, from any thread of the worker."""

    def __init__(self, out: str) -> None:
        self.stop_file = Path(out + ".stop")
        self._file: TextIO = open(out, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self._guard = threading.Lock()
        self.pid = os.getpid()
        self.failure: BaseException | None = None  # of a worker thread: ends the others

    def __call__(self, **event: Any) -> None:
        event.setdefault("pid", self.pid)
        line = json.dumps(event) + "\n"
        with self._guard:  # whole lines: a torn one is only a killed worker's last
            self._file.write(line)

    @property
    def stopping(self) -> bool:
        return self.failure is not None or self.stop_file.exists()


def _until_ok(record: Recorder, make: Callable[[], T]) -> T:
    """``make()``, retried until it works; each failure is recorded as a ``connect``."""
    while True:
        try:
            return make()
        except CoordinationError as exc:
            record(op="connect", ok=False, error=type(exc).__name__)
            time.sleep(0.2)


def connect(url: str, record: Recorder) -> coordination.Coordinator:
    return _until_ok(record, lambda: coordination.connect(url))


class _Hold:
    """One hold of a lock-like recipe, as the hold loop sees it: ``lock`` (a lock, or an
    election with its ``release`` and ``held``), its token and session."""

    def __init__(self, lock: Lock | Election, release: Callable[[], str] | None = None,
                 held: Callable[[], bool] | None = None) -> None:
        self.lock = lock
        self.token = lock.token
        if isinstance(lock, Lock):
            release, held = release or (lambda: _release(lock)), held or (lambda: lock.held)
        if release is None or held is None:
            raise TypeError("an election's hold needs its release and held")
        self._release, self._held = release, held

    @property
    def held(self) -> bool:
        return self._held()

    def release(self) -> str:
        """``ok``, or ``lost`` if the hold had ended with its session before."""
        return self._release()


def _release(lock: Lock) -> str:
    try:
        lock.release()
    except LockLost:
        return "lost"
    return "ok"


def _hold_loop(record: Recorder, coord: coordination.Coordinator,
               take: Callable[[], _Hold | None], hold: float,
               work: Callable[[_Hold], dict[str, Any]] | None = None,
               after: Callable[[_Hold, dict[str, Any]], None] | None = None) -> None:
    """Take, record ``acquire`` and ``cs`` (with the session, for the faults that aim at
    a holder), work for ``hold`` seconds, run ``after``, release, record ``release``."""
    backend = coord.driver
    while not record.stopping:
        t0 = time.monotonic()
        try:
            taken = take()
        except LockTimeout:
            taken = None
        except CoordinationError as exc:
            record(op="acquire", t0=t0, t1=time.monotonic(), ok=False, error=type(exc).__name__)
            time.sleep(0.05)
            continue
        t1 = time.monotonic()
        record(op="acquire", t0=t0, t1=t1, ok=taken is not None,
               token=taken.token if taken else None)
        if taken is None:
            continue
        state = work(taken) if work else {}
        held_in = taken.lock.session
        session: dict[str, Any] = {"session": held_in.id if held_in else None}
        if coord.backend == "zookeeper" and backend.client.client_id:  # type: ignore[attr-defined]
            session["password"] = backend.client.client_id[1].hex()  # type: ignore[attr-defined]
        held = taken.held and state.pop("readable", True)
        record(op="cs", token=taken.token, held=held, t=time.monotonic(), **state, **session)
        time.sleep(hold)  # a pause here is the dangerous one: after the check
        if after and held:
            after(taken, state)
        t2 = time.monotonic()
        try:
            result = taken.release()
        except CoordinationError as exc:
            result = type(exc).__name__
        record(op="release", t0=t2, t1=time.monotonic(), token=taken.token, result=result)
    coord.close()


def run_lock(args: argparse.Namespace) -> None:
    """Buy one unit per hold: read the stock, check ``held``, work, write stock - 1."""
    record = Recorder(args.out)
    inventory = Inventory(args.db, fenced=not args.unfenced)
    coord = connect(args.url, record)
    lock = coord.lock(args.sku)

    def take() -> _Hold | None:
        return _Hold(lock) if lock.acquire(timeout=args.timeout) else None

    def read(taken: _Hold) -> dict[str, Any]:
        qty = inventory.read(args.sku, taken.token)
        return {"qty": qty, "readable": qty is not None}

    def write(taken: _Hold, state: dict[str, Any]) -> None:
        qty = state["qty"]
        if qty > 0:
            applied = inventory.write(args.sku, qty - 1, taken.token, record.pid)  # type: ignore[arg-type]
            record(op="write", token=taken.token, qty=qty - 1, applied=applied, t=time.monotonic())

    _hold_loop(record, coord, take, args.hold, read, write)


def run_semaphore(args: argparse.Namespace) -> None:
    """Take a permit, work, give it back."""
    record = Recorder(args.out)
    coord = connect(args.url, record)
    semaphore = _until_ok(record, lambda: coord.semaphore(args.name, permits=args.permits))
    _hold_loop(record, coord, lambda: _Hold(semaphore.acquire(timeout=args.timeout)),
               args.hold)


def run_elect(args: argparse.Namespace) -> None:
    """Campaign, lead for a while (checking ``is_leader``), resign; meanwhile observe
    the election and record every change the observer reports."""
    record = Recorder(args.out)
    coord = connect(args.url, record)
    election = coord.election(args.name)

    def observed(value: bytes | None) -> None:
        record(op="observed", value=None if value is None else value.decode(), t=time.monotonic())

    observer = _until_ok(record, lambda: election.observe(observed))

    def resign() -> str:
        lost = not election.is_leader
        election.resign()
        return "lost" if lost else "ok"

    def take() -> _Hold | None:
        if not election.campaign(f"worker-{record.pid}", timeout=args.timeout):
            return None
        return _Hold(election, resign, lambda: election.is_leader)

    try:
        _hold_loop(record, coord, take, args.hold)
    finally:
        observer.stop()


def run_count(args: argparse.Namespace) -> None:
    """Sell one unit at a time from a counter: ``add(-1, min=0)``."""
    record = Recorder(args.out)
    coord = connect(args.url, record)
    stock = coord.counter(args.name)
    while not record.stopping:
        t0 = time.monotonic()
        try:
            value = stock.add(-1, min=0)
            record(op="add", t0=t0, t1=time.monotonic(), ok=True, value=value)
        except UncertainOutcome as exc:
            record(op="add", t0=t0, t1=time.monotonic(), ok=None, error=type(exc).__name__)
        except CoordinationError as exc:
            record(op="add", t0=t0, t1=time.monotonic(), ok=False, error=type(exc).__name__)
            time.sleep(0.05)
    coord.close()


#: The SKUs of the ``shop`` workload's inventory.
def run_produce(args: argparse.Namespace) -> None:
    """Put COUNT tasks with ids of this producer; keyed tasks carry their order number."""
    record = Recorder(args.out)
    coord = connect(args.url, record)
    queue = coord.queue(args.queue, max_attempts=1000)
    for i in range(args.count):
        if record.stopping:
            break
        key = f"{record.pid}-k{i % args.keys}" if args.keys else None
        task_id = f"{record.pid}-{i}"
        for _attempt in range(50):  # retried with the same id: stored once
            t0 = time.monotonic()
            try:
                queue.put(f"{i}", key=key, id=task_id)
                record(op="put", id=task_id, key=key, seq=i, ok=True, t0=t0, t1=time.monotonic())
                break
            except CoordinationError as exc:
                record(op="put", id=task_id, key=key, seq=i, ok=None, error=type(exc).__name__)
                time.sleep(0.1)
    record(op="done")
    coord.close()


def _consume(record: Recorder, queue: coordination.Queue, tid: int, work: float,
             nack: float) -> None:
    """One consumer thread: claim, work, ack (or nack a fraction of the claims)."""
    rng = random.Random(f"{record.pid}-{tid}")
    while not record.stopping:
        t0 = time.monotonic()
        try:
            task = queue.get(timeout=0.5)
        except CoordinationError as exc:
            record(op="get", tid=tid, ok=False, error=type(exc).__name__, t0=t0,
                   t1=time.monotonic())
            time.sleep(0.05)
            continue
        if task is None:
            continue
        record(op="claim", tid=tid, id=task.id, key=task.key, data=task.data.decode(),
               token=task.token, attempts=task.attempts, t0=t0, t1=time.monotonic())
        time.sleep(work)
        op = "nack" if rng.random() < nack else "ack"
        t2 = time.monotonic()
        try:
            if op == "ack":
                task.ack()
            else:
                task.nack(error="chaos nack")
            record(op=op, tid=tid, id=task.id, token=task.token, ok=True, t0=t2,
                   t1=time.monotonic())
        except CoordinationError as exc:
            record(op=op, tid=tid, id=task.id, token=task.token, ok=False,
                   error=type(exc).__name__, t0=t2, t1=time.monotonic())


class _ChaosNack(Exception):
    """Raised by the worker-loop handler for the claims it nacks."""


def _consume_with_worker(record: Recorder, coord: coordination.Coordinator,
                         args: argparse.Namespace) -> None:
    """The library's worker loop (``Queue.worker``, ``batch`` claims at a time): the
    handler records the claim, works, and fails a ``nack`` fraction of them; the
    settlements are recorded from ``on_settled``. A claim is recorded when its handler
    starts and its settle from when its handler ended: inside the true interval, so the
    exclusive-delivery check stays sound (if less sharp)."""
    rng = random.Random(f"{record.pid}-worker")
    ended: dict[tuple[str, int], tuple[str, float]] = {}  # (id, token) -> (op, t)
    guard = threading.Lock()

    def handle(task: coordination.Task) -> None:
        now = time.monotonic()
        record(op="claim", tid=threading.get_ident(), id=task.id, key=task.key,
               data=task.raw.decode(), token=task.token, attempts=task.attempts, t0=now, t1=now)
        time.sleep(args.work)
        with guard:
            op = "nack" if rng.random() < args.nack else "ack"
        ended[(task.id, task.token)] = (op, time.monotonic())
        if op == "nack":
            raise _ChaosNack("chaos nack")

    def settled(task: coordination.Task, outcome: str) -> None:
        done = ended.pop((task.id, task.token), None)
        if outcome == "abandoned" or done is None:  # given back at the stop, its handler
            # still running: when that nack began is not known, so it vouches for nothing
            record(op="nack", tid=threading.get_ident(), id=task.id, token=task.token,
                   ok=None, t0=time.monotonic(), t1=time.monotonic())
            return
        op, t0 = done
        ok = outcome in ("acked", "retried", "dead")
        record(op=op, tid=threading.get_ident(), id=task.id, token=task.token, ok=ok,
               **({} if ok else {"error": "ClaimLost"}), t0=t0, t1=time.monotonic())

    queue = coord.queue(args.queue, max_attempts=1000)
    worker = queue.worker(handle, concurrency=args.threads, batch=args.batch, grace=5.0,
                          retry=coordination.Retry(base=0.01, max=0.05), on_settled=settled)
    with worker:
        while not record.stopping:
            time.sleep(0.1)


def run_consume(args: argparse.Namespace) -> None:
    """THREADS consumer threads sharing one coordinator (issue 14: one session); threads
    0 and 1 also share one Queue object, the others have one each. With ``--batch``:
    the library's worker loop instead, on THREADS threads, BATCH claims at a time."""
    record = Recorder(args.out)
    coord = connect(args.url, record)
    if args.batch:
        _consume_with_worker(record, coord, args)
        coord.close()
        return
    shared = coord.queue(args.queue, max_attempts=1000)
    queues = [shared if i < 2 else coord.queue(args.queue, max_attempts=1000)
              for i in range(args.threads)]

    in_threads(record, lambda tid: _consume(record, queues[tid], tid, args.work, args.nack),
               args.threads, "consumer")
    coord.close()
    if record.failure is not None:
        raise record.failure


def in_threads(record: Recorder, body: Callable[[int], None], count: int, name: str) -> None:
    """``body(i)`` on ``count`` threads, joined; the first to fail stops the others
    (``record.stopping``) and is kept in ``record.failure``."""
    def run(tid: int) -> None:
        try:
            body(tid)
        except BaseException as exc:
            record.failure = record.failure or exc

    threads = [threading.Thread(target=run, args=(i,), name=f"{name}-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m coordination.lab.workloads")
    sub = parser.add_subparsers(dest="kind", required=True)
    lock = sub.add_parser("lock")
    for name in ("url", "sku", "db", "out"):
        lock.add_argument(name)
    lock.add_argument("--hold", type=float, default=0.005)
    lock.add_argument("--timeout", type=float, default=1.0)
    lock.add_argument("--unfenced", action="store_true")
    lock.add_argument("--aio", action="store_true", help="on coordination.aio (aio_workloads)")
    produce = sub.add_parser("produce")
    for name in ("url", "queue", "out"):
        produce.add_argument(name)
    produce.add_argument("--count", type=int, default=100)
    produce.add_argument("--keys", type=int, default=0)
    consume = sub.add_parser("consume")
    for name in ("url", "queue", "out"):
        consume.add_argument(name)
    consume.add_argument("--work", type=float, default=0.002)
    consume.add_argument("--threads", type=int, default=1)
    consume.add_argument("--nack", type=float, default=0.0, help="fraction of claims nacked")
    consume.add_argument("--batch", type=int, default=0,
                         help="run the library's worker loop, claiming this many at a time")
    consume.add_argument("--aio", action="store_true", help="on coordination.aio (aio_workloads)")
    shop = sub.add_parser("shop")
    for name in ("url", "name", "out"):
        shop.add_argument(name)
    shop.add_argument("--ttl", type=float, default=2.0)
    shop.add_argument("--threads", type=int, default=3)
    for kind in ("semaphore", "elect", "count"):
        recipe = sub.add_parser(kind)
        for name in ("url", "name", "out"):
            recipe.add_argument(name)
        recipe.add_argument("--hold", type=float, default=0.02)
        recipe.add_argument("--timeout", type=float, default=1.0)
        recipe.add_argument("--permits", type=int, default=2)
    args = parser.parse_args(argv)
    from . import aio_workloads  # their own modules; they build on Recorder
    from .shop import run_shop

    runs = {"lock": run_lock, "produce": run_produce, "consume": run_consume,
            "semaphore": run_semaphore, "elect": run_elect, "count": run_count,
            "shop": run_shop}
    if getattr(args, "aio", False):
        runs.update(lock=aio_workloads.run_lock, consume=aio_workloads.run_consume)
    try:
        runs[args.kind](args)
    except CoordinationError:
        raise
    except Exception:
        import traceback

        traceback.print_exc()
        raise SystemExit(3) from None


if __name__ == "__main__":
    main()
