"""Worker processes that record histories (one JSON line per event, monotonic clock).

    python -m coordination.testing.workloads lock URL SKU DB OUT [--hold S] [--unfenced]
    python -m coordination.testing.workloads produce URL QUEUE OUT --count N [--keys K]
    python -m coordination.testing.workloads consume URL QUEUE OUT

Workers run until the file ``OUT.stop`` exists (or are killed). Every public-API error is
recorded with its type; anything that is not a ``CoordinationError`` is a bug and ends
the worker with exit code 3.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

import coordination
from coordination.errors import CoordinationError, LockLost

from .resource import Inventory


class Recorder:
    def __init__(self, out: str) -> None:
        self.stop_file = Path(out + ".stop")
        self._file: TextIO = open(out, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self.pid = os.getpid()

    def __call__(self, **event: Any) -> None:
        event.setdefault("pid", self.pid)
        self._file.write(json.dumps(event) + "\n")

    @property
    def stopping(self) -> bool:
        return self.stop_file.exists()


def _connect(url: str, record: Recorder) -> coordination.Coordinator:
    while True:
        try:
            return coordination.connect(url)
        except CoordinationError as exc:
            record(op="connect", ok=False, error=type(exc).__name__)
            time.sleep(0.2)


def run_lock(args: argparse.Namespace) -> None:
    """Buy one unit per hold: read the stock, check ``held``, work, write stock - 1."""
    record = Recorder(args.out)
    inventory = Inventory(args.db, fenced=not args.unfenced)
    coord = _connect(args.url, record)
    backend = coord._backend
    lock = coord.lock(args.sku)
    while not record.stopping:
        t0 = time.monotonic()
        try:
            ok = lock.acquire(timeout=args.timeout)
        except CoordinationError as exc:
            record(op="acquire", t0=t0, t1=time.monotonic(), ok=False, error=type(exc).__name__)
            time.sleep(0.05)
            continue
        t1 = time.monotonic()
        record(op="acquire", t0=t0, t1=t1, ok=ok, token=lock.token if ok else None)
        if not ok:
            continue
        qty = inventory.read(args.sku, lock.token)
        held = lock.held and qty is not None
        session: dict[str, Any] = {"session": lock._entry.session.id if lock._entry else None}
        if coord.backend == "zookeeper" and backend.client.client_id:  # type: ignore[attr-defined]
            session["password"] = backend.client.client_id[1].hex()  # type: ignore[attr-defined]
        record(op="cs", token=lock.token, qty=qty, held=held, t=time.monotonic(), **session)
        time.sleep(args.hold)  # a pause here is the dangerous one: after the check
        if held and qty is not None and qty > 0:
            applied = inventory.write(args.sku, qty - 1, lock.token, record.pid)  # type: ignore[arg-type]
            record(op="write", token=lock.token, qty=qty - 1, applied=applied, t=time.monotonic())
        t2 = time.monotonic()
        try:
            lock.release()
            result = "ok"
        except LockLost:
            result = "lost"
        except CoordinationError as exc:
            result = type(exc).__name__
        record(op="release", t0=t2, t1=time.monotonic(), token=lock.token, result=result)
    coord.close()


def run_produce(args: argparse.Namespace) -> None:
    """Put COUNT tasks with ids of this producer; keyed tasks carry their order number."""
    record = Recorder(args.out)
    coord = _connect(args.url, record)
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


def run_consume(args: argparse.Namespace) -> None:
    record = Recorder(args.out)
    coord = _connect(args.url, record)
    queue = coord.queue(args.queue, max_attempts=1000)
    while not record.stopping:
        try:
            task = queue.get(timeout=0.5)
        except CoordinationError as exc:
            record(op="get", ok=False, error=type(exc).__name__)
            time.sleep(0.05)
            continue
        if task is None:
            continue
        record(op="claim", id=task.id, key=task.key, data=task.data.decode(), token=task.token,
               attempts=task.attempts, t=time.monotonic())
        time.sleep(args.work)
        try:
            task.ack()
            record(op="ack", id=task.id, ok=True)
        except CoordinationError as exc:
            record(op="ack", id=task.id, ok=False, error=type(exc).__name__)
    coord.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m coordination.testing.workloads")
    sub = parser.add_subparsers(dest="kind", required=True)
    lock = sub.add_parser("lock")
    for name in ("url", "sku", "db", "out"):
        lock.add_argument(name)
    lock.add_argument("--hold", type=float, default=0.005)
    lock.add_argument("--timeout", type=float, default=1.0)
    lock.add_argument("--unfenced", action="store_true")
    produce = sub.add_parser("produce")
    for name in ("url", "queue", "out"):
        produce.add_argument(name)
    produce.add_argument("--count", type=int, default=100)
    produce.add_argument("--keys", type=int, default=0)
    consume = sub.add_parser("consume")
    for name in ("url", "queue", "out"):
        consume.add_argument(name)
    consume.add_argument("--work", type=float, default=0.002)
    args = parser.parse_args(argv)
    try:
        {"lock": run_lock, "produce": run_produce, "consume": run_consume}[args.kind](args)
    except CoordinationError:
        raise
    except Exception:
        import traceback

        traceback.print_exc()
        raise SystemExit(3) from None


if __name__ == "__main__":
    main()
