"""``coordination top`` in a real terminal (tmux): it shows a held lock with its holder
and a queue with its depth and oldest task, and follows them as they change; ``--json``
is one snapshot."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import coordination

from .helpers import wait_for

pytestmark = pytest.mark.integration


def _pane(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_top_follows_locks_and_queues_in_a_terminal(url: str, connect, tmp_path: Path,
                                                    python_env: dict[str, str]) -> None:
    coord = connect()
    lock = coord.lock("sku-7", identifier="checkout-3")
    assert lock.acquire(timeout=5)
    waiter = connect().lock("sku-7")
    waited = threading.Thread(target=lambda: waiter.acquire(timeout=60) and waiter.release())
    waited.start()
    queue = coord.queue("orders")
    queue.put_many([b"a", b"b", b"c"])
    session = f"top-{uuid.uuid4().hex[:8]}"
    command = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in python_env.items()
                          if k in ("PYTHONPATH", "PATH", "HOME")),
                        shlex.quote(sys.executable), "-m", "coordination", "top", "--url",
                        shlex.quote(url), "--interval", "0.3"])
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "40",
                    f"env TERM=xterm-256color {command}"], check=True, cwd=tmp_path)
    pid = int(subprocess.run(["tmux", "display-message", "-p", "-t", session, "#{pane_pid}"],
                             capture_output=True, text=True, check=True).stdout)
    try:
        wait_for(lambda: "checkout-3" in _pane(session)
                 and "2 sessions holding or waiting" in _pane(session), timeout=30,
                 message="the lock and its waiter")
        screen = _pane(session)
        assert "sku-7" in screen and "orders" in screen
        lock_row = next(line for line in screen.splitlines() if "sku-7" in line)
        cells = [cell.strip() for cell in lock_row.split("│")]
        assert cells[5] == "1" and cells[6].startswith(">=")  # one waiter, already waiting
        row = next(line for line in screen.splitlines() if "orders" in line and "│" in line)
        assert row.split("│")[2].strip() == "3"  # pending
        task = queue.get(timeout=5)
        assert task is not None
        lock.release()
        waited.join(30)
        wait_for(lambda: "checkout-3" not in _pane(session), timeout=30, message="release")
        row = next(line for line in _pane(session).splitlines()
                   if "orders" in line and "│" in line)
        assert [cell.strip() for cell in row.split("│")[2:6:3]] == ["2", "1"]  # pending, in flight
        task.ack()
        # Out: the ack, counted over 5 s once its second is over (0.2/s).
        wait_for(lambda: any("orders" in line and line.split("│")[9].strip() == "0.2"
                             for line in _pane(session).splitlines() if line.count("│") > 9),
                 timeout=30, message="the ack counted")
    finally:
        os.kill(pid, signal.SIGINT)  # top's own pid: Ctrl-C
        wait_for(lambda: subprocess.run(["tmux", "has-session", "-t", session],
                                        capture_output=True).returncode != 0, timeout=20,
                 message="top to exit")


def test_top_json_is_one_snapshot(url: str, connect, python_env: dict[str, str]) -> None:
    coord: coordination.Coordinator = connect()
    coord.queue("orders").put(b"a")
    proc = subprocess.run([sys.executable, "-m", "coordination", "top", "--url", url, "--json"],
                          capture_output=True, text=True, env=python_env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    (orders,) = [q for q in snap["queues"] if q["name"] == "orders"]
    assert orders["pending"] == 1 and 0 <= orders["oldest_age"] < 60


def test_acked_counts_the_acks_of_the_last_seconds(connect) -> None:
    queue = connect().queue("orders")
    queue.put_many([b"a", b"b", b"c"])
    for task in queue.get_many(3, timeout=5):
        task.ack()
    second = int(time.time())
    wait_for(lambda: int(time.time()) > second, timeout=3)  # their second is complete
    assert queue.acked(5) == 3
    with pytest.raises(coordination.errors.InvalidArgument):
        queue.acked(0)
