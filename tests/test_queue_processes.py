"""Queue across real processes: consumers SIGKILLed at random mid-task; in the end every
task is acked exactly once, none lost, none left in flight, per-key order kept."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

import pytest

from coordination.lab.scenario import wait_drained

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
WORKER = [sys.executable, "-m", "tests.workers.queue_worker"]
ROOT = Path(__file__).resolve().parent.parent


def test_killed_consumers_lose_nothing_and_keep_key_order(
    url: str, connect, tmp_path: Path, python_env: dict[str, str]
) -> None:
    log = tmp_path / "queue.log"
    spawn = lambda: subprocess.Popen(  # noqa: E731
        [*WORKER, url, "orders", str(log)], cwd=ROOT, env=python_env,
        stdout=subprocess.DEVNULL,
    )
    workers = [spawn() for _ in range(3)]
    stop = threading.Event()
    kills = []

    def monkey() -> None:
        rng = random.Random(7)
        while not stop.wait(rng.uniform(0.5, 1.2)):
            victim = rng.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            kills.append(victim)
            workers[victim] = spawn()

    producers = [connect().queue("orders") for _ in range(2)]
    put: dict[str, tuple[str | None, int]] = {}
    chaos = threading.Thread(target=monkey)
    chaos.start()
    try:
        for i in range(40):  # 40 orders x 3 steps, keyed, from two producers
            queue = producers[i % 2]
            for step in range(3):
                put[queue.put(f"order-{i}:{step}", key=f"order-{i}")] = (f"order-{i}", step)
            put[queue.put(f"plain-{i}")] = (None, 0)
        checker = producers[0]
        wait_drained(checker, 120)
    finally:
        stop.set()
        chaos.join()
        for worker in workers:
            worker.kill()
            worker.wait()
    assert kills, "the chaos monkey killed nobody"
    claims, acked = [], []
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts[0] == "claimed" and len(parts) == 5:
            claims.append((int(parts[2]), parts[1], parts[4]))
        elif parts[0] == "acked" and len(parts) == 2:
            acked.append(parts[1])
    # The queue's record: a task leaves the queue only through its (fenced) ack, and
    # nothing is pending, in flight or dead. A worker killed between its ack and its
    # log line leaves no "acked" line, so the log gives a lower bound only.
    assert checker.stats() == {"pending": 0, "delayed": 0, "blocked": 0, "in_flight": 0,
                               "dead": 0}
    assert {task_id for _t, task_id, _d in claims} == set(put), "lost or unexpected task"
    assert len(set(acked)) == len(acked), "a task was acked twice"
    assert set(acked) <= set(put) and len(acked) >= len(put) - len(kills)
    # Claim tokens are global and grow, so they order the deliveries: per key, the first
    # claim of each step comes in put order.
    firsts: dict[str, list[int]] = defaultdict(list)
    for _token, task_id, _data in sorted(claims):
        key, step = put[task_id]
        if key is not None and step not in firsts[key]:
            firsts[key].append(step)
    assert all(steps == sorted(steps) for steps in firsts.values())
