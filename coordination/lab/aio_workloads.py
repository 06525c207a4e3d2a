"""The lock and queue workloads of the chaos scenarios written on ``coordination.aio``
(``python -m coordination.lab.workloads lock|consume ... --aio``): the same histories
as the thread workloads (``workloads.py``), so the same checkers judge them.

- lock: one buyer task per process: take the lock, read the stock, check ``held``,
  work, write stock - 1 with the token, release;
- consume: ``THREADS`` consumer tasks sharing one async coordinator, each claiming,
  working, acking (or nacking a fraction); with ``--batch``, the async worker loop.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import coordination
import coordination.aio
from coordination.errors import CoordinationError, LockLost, LockTimeout

from .resource import Inventory
from .workloads import Recorder


async def _connect(url: str, record: Recorder) -> coordination.aio.AsyncCoordinator:
    """Connect, retried until it works; each failure is recorded as a ``connect``."""
    while True:
        try:
            return await coordination.aio.connect(url)
        except CoordinationError as exc:
            record(op="connect", ok=False, error=type(exc).__name__)
            await asyncio.sleep(0.2)


def _session(coord: coordination.aio.AsyncCoordinator, lock: coordination.aio.AsyncLock
             ) -> dict[str, Any]:
    """The hold's session, for the faults that aim at a holder (``client_faults``)."""
    session = lock.session
    found: dict[str, Any] = {"session": session.id if session else None}
    backend = coord.sync.driver
    if coord.backend == "zookeeper" and backend.client.client_id:  # type: ignore[attr-defined]
        found["password"] = backend.client.client_id[1].hex()  # type: ignore[attr-defined]
    return found


async def _buy(args: argparse.Namespace) -> None:
    record = Recorder(args.out)
    inventory = Inventory(args.db, fenced=not args.unfenced)
    coord = await _connect(args.url, record)
    lock = coord.lock(args.sku)
    while not record.stopping:
        t0 = time.monotonic()
        try:
            got = await lock.acquire(timeout=args.timeout)
        except LockTimeout:
            got = False
        except CoordinationError as exc:
            record(op="acquire", t0=t0, t1=time.monotonic(), ok=False, error=type(exc).__name__)
            await asyncio.sleep(0.05)
            continue
        record(op="acquire", t0=t0, t1=time.monotonic(), ok=got, token=lock.token if got else None)
        if not got:
            continue
        token = lock.token
        qty = inventory.read(args.sku, token)
        held = lock.held and qty is not None
        record(op="cs", token=token, held=held, t=time.monotonic(), qty=qty,
               **_session(coord, lock))
        await asyncio.sleep(args.hold)  # a pause here is the dangerous one: after the check
        if held and qty is not None and qty > 0:
            applied = inventory.write(args.sku, qty - 1, token, record.pid)  # type: ignore[arg-type]
            record(op="write", token=token, qty=qty - 1, applied=applied, t=time.monotonic())
        t2 = time.monotonic()
        try:
            await lock.release()
            result = "ok"
        except LockLost:
            result = "lost"
        except CoordinationError as exc:
            result = type(exc).__name__
        record(op="release", t0=t2, t1=time.monotonic(), token=token, result=result)
    await coord.close()


async def _consume(record: Recorder, queue: coordination.aio.AsyncQueue, tid: int, work: float,
                   nack: float) -> None:
    rng = random.Random(f"{record.pid}-{tid}")
    while not record.stopping:
        t0 = time.monotonic()
        try:
            task = await queue.get(timeout=0.5)
        except CoordinationError as exc:
            record(op="get", tid=tid, ok=False, error=type(exc).__name__, t0=t0,
                   t1=time.monotonic())
            await asyncio.sleep(0.05)
            continue
        if task is None:
            continue
        record(op="claim", tid=tid, id=task.id, key=task.key, data=task.data.decode(),
               token=task.token, attempts=task.attempts, t0=t0, t1=time.monotonic())
        await asyncio.sleep(work)
        op = "nack" if rng.random() < nack else "ack"
        t2 = time.monotonic()
        try:
            await (task.ack() if op == "ack" else task.nack(error="chaos nack"))
            record(op=op, tid=tid, id=task.id, token=task.token, ok=True, t0=t2,
                   t1=time.monotonic())
        except CoordinationError as exc:
            record(op=op, tid=tid, id=task.id, token=task.token, ok=False,
                   error=type(exc).__name__, t0=t2, t1=time.monotonic())


class _ChaosNack(Exception):
    """Raised by the worker's handler for the claims it nacks."""


async def _consume_with_worker(record: Recorder, coord: coordination.aio.AsyncCoordinator,
                               args: argparse.Namespace) -> None:
    """The async worker loop, ``batch`` claims at a time; recorded as the thread
    workload's worker (see ``workloads._consume_with_worker``)."""
    rng = random.Random(f"{record.pid}-worker")
    ended: dict[tuple[str, int], tuple[str, float]] = {}

    async def handle(task: coordination.aio.AsyncTask) -> None:
        now = time.monotonic()
        record(op="claim", tid=id(asyncio.current_task()), id=task.id, key=task.key,
               data=task.raw.decode(), token=task.token, attempts=task.attempts, t0=now, t1=now)
        await asyncio.sleep(args.work)
        op = "nack" if rng.random() < args.nack else "ack"
        ended[(task.id, task.token)] = (op, time.monotonic())
        if op == "nack":
            raise _ChaosNack("chaos nack")

    def settled(task: coordination.Task, outcome: str) -> None:
        done = ended.pop((task.id, task.token), None)
        if outcome == "abandoned" or done is None:
            record(op="nack", tid=0, id=task.id, token=task.token, ok=None,
                   t0=time.monotonic(), t1=time.monotonic())
            return
        op, t0 = done
        ok = outcome in ("acked", "retried", "dead")
        record(op=op, tid=0, id=task.id, token=task.token, ok=ok,
               **({} if ok else {"error": "ClaimLost"}), t0=t0, t1=time.monotonic())

    queue = coord.queue(args.queue, max_attempts=1000)
    async with queue.worker(handle, concurrency=args.threads, batch=args.batch, grace=5.0,
                            retry=coordination.Retry(base=0.01, max=0.05), on_settled=settled):
        while not record.stopping:
            await asyncio.sleep(0.1)


async def _consume_all(args: argparse.Namespace) -> None:
    record = Recorder(args.out)
    coord = await _connect(args.url, record)
    if args.batch:
        await _consume_with_worker(record, coord, args)
    else:
        queue = coord.queue(args.queue, max_attempts=1000)
        await asyncio.gather(*(_consume(record, queue, tid, args.work, args.nack)
                               for tid in range(args.threads)))
    await coord.close()


def run_lock(args: argparse.Namespace) -> None:
    asyncio.run(_buy(args))


def run_consume(args: argparse.Namespace) -> None:
    asyncio.run(_consume_all(args))
