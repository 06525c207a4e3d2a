"""The worker loop on real clusters: threads sharing one coordinator, ordering keys,
retries into the dead letters, and ``coordination worker`` stopped by SIGTERM (with
grace, and at once on a second signal)."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import coordination
from coordination.recipes.queue import Retry, Task

from .helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("batch", [1, 5])
def test_a_worker_handles_every_task_once_in_key_order(coord: coordination.Coordinator,
                                                       batch: int) -> None:
    queue = coord.queue("orders", max_attempts=3)
    plain = set(queue.put_many([f"plain {i}" for i in range(40)]))
    for step in range(4):
        for order in range(3):
            plain.add(queue.put(f"order-{order} step {step}", key=f"order-{order}"))
    broken = queue.put("poison")
    handled: collections.Counter[str] = collections.Counter()
    steps: dict[str, list[int]] = collections.defaultdict(list)
    guard = threading.Lock()

    def handle(task: Task) -> None:
        text = task.data.decode()
        if text == "poison":
            raise ValueError("cannot parse")
        if task.attempts == 0 and text.endswith("7"):
            raise ConnectionError("payment service blip")  # fails once, then goes through
        with guard:
            handled[task.id] += 1
            if task.key is not None:
                steps[task.key].append(int(text.rsplit(" ", 1)[1]))

    with queue.worker(handle, concurrency=6, retry=Retry(base=0.05), batch=batch) as worker:
        wait_for(lambda: worker.stats.processed == len(plain) and worker.stats.dead == 1, 60)
    assert set(handled) == plain and set(handled.values()) == {1}
    assert all(order == [0, 1, 2, 3] for order in steps.values()) and len(steps) == 3
    assert worker.stats.retried == 4 + 2  # plain 7, 17, 27, 37; poison twice
    [dead] = queue.dead_letters()
    assert dead.id == broken and dead.error == "ValueError: cannot parse"
    assert queue.stats()["pending"] == queue.stats()["in_flight"] == 0


HANDLER = """
import time
from pathlib import Path

LOG = Path(__file__).with_name("handled.log")

def _note(task, what):
    with LOG.open("a") as log:
        log.write(f"{task.data.decode()} {what}\\n")

def slow(task):
    _note(task, "start")
    time.sleep(0.4)
    _note(task, "end")

def stuck(task):
    _note(task, "start")
    time.sleep(3600)
"""


class Running:
    """``coordination worker`` in a subprocess, its stderr collected as it comes."""

    def __init__(self, url: str, tmp_path: Path, env: dict[str, str], handler: str,
                 *options: str) -> None:
        (tmp_path / "handlers.py").write_text(HANDLER)
        self.log = tmp_path / "handled.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coordination", "worker", "orders", "--handler",
             f"handlers:{handler}", "--url", url, *options],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)

    def lines(self, suffix: str) -> list[str]:
        text = self.log.read_text() if self.log.exists() else ""
        return [line[: -len(suffix)] for line in text.splitlines() if line.endswith(suffix)]

    def signal(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout)
        finally:
            self.proc.kill()
        self._reader.join(5)
        return code, "".join(self.err)


def test_sigterm_lets_running_handlers_finish_and_loses_nothing(
        url: str, tmp_path: Path, python_env: dict[str, str]) -> None:
    with coordination.connect(url) as coord:
        queue = coord.queue("orders")
        put = queue.put_many([f"t{i}" for i in range(40)])
        worker = Running(url, tmp_path, python_env, "slow", "--concurrency", "4")
        wait_for(lambda: len(worker.lines(" end")) >= 6, 60, message="handled tasks")
        worker.signal()
        code, err = worker.wait(30)
        assert code == 0, err
        started, ended = worker.lines(" start"), worker.lines(" end")
        assert sorted(started) == sorted(ended)  # every running handler finished
        assert len(set(ended)) == len(ended)  # none twice
        stats = queue.stats()
        assert stats["in_flight"] == 0 and stats["pending"] == len(put) - len(ended)
        assert f"processed {len(ended)} " in err
        rest = {task.data.decode() for task in iter(lambda: queue.get(timeout=0), None)}
        assert rest | set(ended) == {f"t{i}" for i in range(40)} and not rest & set(ended)


def test_a_second_signal_gives_the_running_tasks_back_at_once(
        url: str, tmp_path: Path, python_env: dict[str, str]) -> None:
    with coordination.connect(url) as coord:
        queue = coord.queue("orders")
        task_id = queue.put("stuck order")
        worker = Running(url, tmp_path, python_env, "stuck", "--grace", "600")
        wait_for(lambda: worker.lines(" start"), 60, message="the handler to start")
        worker.signal()
        wait_for(lambda: "stopping" in "".join(worker.err), 10, message="the first stop")
        worker.signal()
        code, err = worker.wait(15)
        assert code == 130, err
        again = queue.get(timeout=10)
        assert again is not None and again.id == task_id and again.attempts == 1
        assert "stopped before the handler finished" in (again.error or "")
