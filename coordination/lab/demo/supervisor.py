"""The child processes of a flash sale, kept running: :class:`Supervisor` starts the
buyers and order workers (:mod:`.roles`) with the lab's :func:`~coordination.lab.scenario.spawn_module`,
respawns those that die, and stops them by pid."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..scenario import reap, spawn_module, wait_exits
from .settings import Settings

#: The module the children run (``python -m``).
CHILD_MODULE = "coordination.lab.demo.roles"


@dataclass
class Child:
    role: str
    slot: int
    proc: subprocess.Popen[bytes]
    #: Its end is planned (the chaos monkey kills it): not a crash.
    doomed: bool = False
    #: Exited for good: not to be respawned.
    done: bool = False


class Supervisor:
    """The buyers and order workers of one sale: one child per (role, slot), its log in
    ``run_dir/<role>-<slot>.log``, in a session of its own (a Ctrl-C reaches only the
    orchestrator). Safe to use from the chaos monkey's thread too. ``on_event(text)``
    hears of unplanned exits."""

    def __init__(self, settings: Settings, run: str, run_dir: Path, db_path: Path,
                 on_event: Callable[[str], None]) -> None:
        self.settings = settings
        self.run = run
        self.run_dir = run_dir
        self.db_path = db_path
        self.on_event = on_event
        #: Children that exited unplanned so far.
        self.crashes = 0
        self._children: list[Child] = []
        self._guard = threading.RLock()

    def log_path(self, role: str, slot: int) -> Path:
        return self.run_dir / f"{role}-{slot}.log"

    def spawn(self, role: str, slot: int) -> Child:
        """Start the child ``role``-``slot`` (replacing the record of its predecessor)."""
        s = self.settings
        think = s.think if role == "buyer" else 0.0
        proc = spawn_module(
            CHILD_MODULE,
            [role, "--url", s.url, "--db", str(self.db_path), "--run", self.run,
             "--slot", str(slot), "--think", f"{think:.4f}", "--stock-store", s.stock_store]
            + (["--async"] if role == "buyer" and s.use_async else []),
            log=self.log_path(role, slot), cwd=None, own_session=True)
        child = Child(role, slot, proc)
        with self._guard:
            self._children = [c for c in self._children if (c.role, c.slot) != (role, slot)]
            self._children.append(child)
        return child

    def children(self, role: str | None = None) -> list[Child]:
        """The current children (of ``role``), dead or alive."""
        with self._guard:
            return [c for c in self._children if role is None or c.role == role]

    def alive(self, role: str | None = None) -> list[Child]:
        return [c for c in self.children(role) if c.proc.poll() is None]

    def supervise(self, respawn_buyers: bool, respawn_workers: bool) -> None:
        """Look at every child once: a buyer that exited with 0 is done (sold out, or the
        sale closed); any other exit is a crash unless the child was ``doomed``; the
        dead are respawned if their role's flag says so, else done."""
        for child in self.children():
            code = child.proc.poll()
            if code is None or child.done:
                continue
            if child.role == "buyer" and code == 0:
                child.done = True
                continue
            if not child.doomed:
                self.crashes += 1
                self.on_event(f"{child.role}-{child.slot} exited with code {code} "
                              f"(log: {self.log_path(child.role, child.slot)})")
            if respawn_buyers if child.role == "buyer" else respawn_workers:
                self.spawn(child.role, child.slot)
            else:
                child.done = True

    def stop(self, role: str, polite: float, grace: float) -> None:
        """Let the children of ``role`` exit by themselves for ``polite`` seconds, then
        SIGTERM them (and SIGCONT, if frozen), and SIGKILL them after ``grace`` more."""
        children = self.children(role)
        procs = [c.proc for c in children]
        for proc in wait_exits(procs, polite):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
                proc.send_signal(signal.SIGCONT)
        reap(procs, grace)
        for child in children:
            child.done = True

    def kill_all(self) -> None:
        """SIGKILL every child still running, and reap them all."""
        reap([c.proc for c in self.children()], 0.0)
