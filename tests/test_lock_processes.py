"""Locks across real processes: no overlapping holds, and a killed holder's lock is
taken over within one session TTL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import TTL

pytestmark = pytest.mark.integration
WORKER = [sys.executable, "-m", "tests.workers.lock_worker"]
ROOT = Path(__file__).resolve().parent.parent


def test_four_processes_never_overlap_and_tokens_increase(
    url: str, tmp_path: Path, python_env: dict[str, str]
) -> None:
    log = tmp_path / "holds.log"
    procs = [
        subprocess.Popen([*WORKER, url, "stock/sku-1", "60", str(log)], cwd=ROOT, env=python_env)
        for _ in range(4)
    ]
    for proc in procs:
        assert proc.wait(timeout=240) == 0
    holds = sorted(
        (float(start), float(end), int(token), pid)
        for pid, token, start, end in (line.split() for line in log.read_text().splitlines())
    )
    assert len(holds) == 240
    assert len({pid for *_, pid in holds}) == 4
    for (start, end, token, _pid), (next_start, _e, next_token, _p) in zip(holds, holds[1:]):
        assert end <= next_start, "two processes held the lock at once"
        assert next_token > token, "fencing token did not increase"


def test_killed_holder_is_taken_over_within_one_ttl(
    url: str, connect, tmp_path: Path, python_env: dict[str, str]
) -> None:
    holder = subprocess.Popen(
        [*WORKER, url, "stock/sku-2", "0", "-"], cwd=ROOT, env=python_env,
        stdout=subprocess.PIPE, text=True,
    )
    try:
        token = int(holder.stdout.readline())  # type: ignore[union-attr]
        lock = connect().lock("stock/sku-2")
        assert lock.acquire(blocking=False) is False
        os.kill(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert lock.acquire(timeout=TTL * 3)
        taken_after = time.monotonic() - killed
        assert lock.token > token
        # One TTL, plus the server's expiry granularity (ZooKeeper ticks, etcd's
        # lease checker runs every 500 ms).
        assert taken_after <= TTL + 0.8, taken_after
    finally:
        holder.kill()
        holder.wait()
