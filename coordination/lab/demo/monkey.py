"""The flash sale's chaos monkey, made of :mod:`coordination.lab.nemesis` faults.

In turn it kills the cluster's leader node, a buyer, an order worker, a follower node,
and freezes a buyer past its session TTL, then thaws it; without a local cluster, the
process faults only. The node faults are :func:`~coordination.lab.nemesis.leader_bounce`
and :func:`~coordination.lab.nemesis.follower_bounce`: a killed node is restarted about
a second later and the cluster is healthy again before the next node is killed, so
never two nodes are down. The buyer freezes itself when asked (SIGUSR1), at the worst
moment: with carts between its reserve and its confirm, so the hold expires meanwhile
and a late confirm is refused; with the fenced store while it holds a lock, so its
next write comes with a stale token; with the counters between two purchases. The monkey sees it stopped and
thaws it (SIGCONT) :data:`FREEZE_FOR` seconds later.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .. import client_faults, nemesis
from ..cluster import LocalCluster
from .settings import SESSION_TTL, Settings
from .supervisor import Child, Supervisor

#: How long a buyer stays frozen: the servers expire its session meanwhile.
FREEZE_FOR = 2 * SESSION_TTL


class ChaosMonkey:
    """Injects faults into one sale from a thread of its own (:meth:`start`,
    :meth:`stop`); :meth:`watch` is to be called now and then from the orchestrator's
    loop, for the freezes. Each step is told to ``on_event`` as ``"chaos: ..."``; a fault
    that failed is told too and kept in :attr:`errors` for the verdict."""

    def __init__(self, settings: Settings, cluster: LocalCluster | None,
                 supervisor: Supervisor, on_event: Callable[[str], None]) -> None:
        self.settings = settings
        self.cluster = cluster
        self.supervisor = supervisor
        self.on_event = on_event
        #: Buyers are hit only while the sale is open (the orchestrator says so).
        self.sale_open = False
        self.errors: list[str] = []
        self.ctx = nemesis.Context(cluster, None, SESSION_TTL,
                                   on_step=lambda text: on_event(f"chaos: {text}"))
        self._frozen_since: dict[int, float] = {}  # pid -> when first seen stopped
        self._plan: list[tuple[str, nemesis.Fault]] = [
            ("leader", nemesis.leader_bounce),
            ("buyer", lambda ctx: self._kill("buyer")),
            ("worker", lambda ctx: self._kill("worker")),
            ("freeze", lambda ctx: self._ask_to_freeze()),
            ("follower", nemesis.follower_bounce),
        ]
        if cluster is None:
            self._plan = [fault for fault in self._plan if fault[0] not in ("leader", "follower")]
        self._thread = threading.Thread(target=self._loop, name="chaos-monkey", daemon=True)

    def interval(self) -> float:
        """Seconds between two faults: about eight faults in the paced sale."""
        if self.settings.duration <= 0:
            return 2.0
        return max(1.5, min(5.0, self.settings.duration / 8))

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """No more faults; a fault in progress cuts its waits short and heals. Waits up
        to ``timeout`` seconds for it."""
        self.ctx.stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def counts(self) -> dict[str, int]:
        """The faults that took effect so far, by nemesis name."""
        return self.ctx.counts()

    def _loop(self) -> None:
        """Inject faults during the sale, for at most 1.5 x ``duration`` seconds (at
        least 10 s), then let the sale finish in peace: the run stays bounded."""
        until = time.monotonic() + max(10.0, 1.5 * self.settings.duration)
        pause = min(1.0, self.interval())  # the first fault comes early
        turn = 0
        while not self.ctx.stop.wait(pause) and time.monotonic() < until:
            pause = self.interval()
            kind, fault = self._plan[turn % len(self._plan)]
            turn += 1
            try:
                self.ctx.log.append(fault(self.ctx))
            except Exception as exc:  # noqa: BLE001 - reported in the verdict
                self.errors.append(f"{kind}: {exc}".splitlines()[0])
                self.on_event(f"chaos: {kind} fault failed: {_first_line(exc)}")

    def _victims(self, role: str) -> list[Child]:
        return [c for c in self.supervisor.alive(role) if c.proc.pid not in self._frozen_since]

    def _kill(self, role: str) -> str:
        victims = self._victims(role)
        if not victims or (role == "buyer" and not self.sale_open):
            return f"no {role} to kill"
        victim = self.ctx.rng.choice(victims)
        victim.doomed = True  # before the signal: the supervisor must not see a crash
        return client_faults.kill_process(
            self.ctx, victim.proc, f"{role}-kill",
            f"SIGKILL {role}-{victim.slot} (pid {victim.proc.pid}); respawning it")

    def _ask_to_freeze(self) -> str:
        # A buyer respawned a moment ago may not handle SIGUSR1 yet: it would die of it.
        victims = [c for c in self._victims("buyer") if _catches(c.proc.pid, signal.SIGUSR1)]
        if not victims or not self.sale_open:
            return "no buyer to freeze"
        victim = self.ctx.rng.choice(victims)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim.proc.pid, signal.SIGUSR1)  # counted by watch() once it froze
        return f"asked buyer-{victim.slot} to freeze"

    def watch(self) -> None:
        """Count the children that froze since the last call; thaw those frozen for
        :data:`FREEZE_FOR` seconds."""
        now = time.monotonic()
        for child in self.supervisor.alive():
            pid = child.proc.pid
            if not client_faults.stopped(pid):
                continue
            since = self._frozen_since.get(pid)
            name = f"{child.role}-{child.slot}"
            if since is None:
                self._frozen_since[pid] = now
                where = ("while holding its lock" if self.settings.fenced else
                         "holding a reserved cart" if self.settings.carts else
                         "between two purchases")
                self.ctx.injected("buyer-freeze", f"{name} froze {where} "
                                  f"(a {FREEZE_FOR:.0f}s stop-the-world pause)")
            elif now - since >= FREEZE_FOR:
                client_faults.thaw(pid)
                del self._frozen_since[pid]
                self.ctx.on_step(f"{name} thawed; its session expired meanwhile" + (
                    ", so its token is stale now" if self.settings.fenced else
                    ", and its cart's hold too" if self.settings.carts else ""))

    def heal(self) -> None:
        """After the chaos: every node running and the cluster healthy (a failure is
        kept in :attr:`errors`)."""
        if self.cluster is None:
            return
        try:
            self.cluster.heal(timeout=60)
        except Exception as exc:  # noqa: BLE001 - reported in the verdict
            self.errors.append(f"heal: {exc}".splitlines()[0])

    def healthy(self) -> bool:
        """Every node of the local cluster running (True without one)."""
        return self.cluster is None or all(self.cluster.is_running(i)
                                           for i in range(self.cluster.size))


def _catches(pid: int, signum: signal.Signals) -> bool:
    """Whether process ``pid`` has a handler installed for ``signum`` (per the SigCgt
    mask in /proc); False if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
