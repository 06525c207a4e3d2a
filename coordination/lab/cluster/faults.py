"""The fault layer of ``LocalCluster``: kill, restart, pause, resume, isolate and rejoin
single nodes, crash and recover the whole cluster, and heal every fault.

Processes are signalled by pid (``process.py``); isolation cuts a node's peer links in
its cgroup (``peercut.py``). Every change is recorded in the state file of a detached
cluster.
"""

from __future__ import annotations

import signal

from .. import peercut
from .health import HealthChecks
from .process import Node, send_signal, wait_exit


class FaultInjection(HealthChecks):
    """Faults of single nodes and of the whole cluster (see ``LocalCluster``)."""

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` and wait until its process is gone (no-op if not running)."""
        with self._lock:
            node = self._node(i)
            if node.running():
                send_signal(node, signal.SIGKILL)
                wait_exit(node, 30.0, kill_after=False)
            node.proc, node.paused = None, False
            node.pidfile.unlink(missing_ok=True)
            self._save_if_persistent()

    def restart(self, i: int, wait: bool = True, timeout: float = 30.0) -> None:
        """(Re)start node ``i`` from its data dir, SIGKILLing it first if it runs.

        With ``wait``, return once the node serves client requests (ZooKeeper: 'srvr'
        reports leader/follower; etcd: /health is true). If fewer than a majority of
        nodes run, no quorum is possible and it only waits until the process answers
        (ZooKeeper 'ruok' -> 'imok'; etcd GET /version on the peer port).
        """
        with self._lock:
            self._require_started()
            node = self._node(i)
            self.kill(i)
            self._launch(node)
            if not wait:
                return
            quorum_possible = sum(n.probeable() for n in self._nodes) > self.size // 2
            check = self._impl.serving if quorum_possible else self._impl.alive
            self._wait_until(lambda: check(node), timeout, f"node {i} to serve", [node])

    def pause(self, i: int) -> None:
        """SIGSTOP node ``i`` (it keeps its sockets but stops responding)."""
        with self._lock:
            node = self._running_node(i)
            send_signal(node, signal.SIGSTOP)
            node.paused = True
            self._save_if_persistent()

    def resume(self, i: int) -> None:
        """SIGCONT node ``i`` after pause()."""
        with self._lock:
            node = self._running_node(i)
            send_signal(node, signal.SIGCONT)
            node.paused = False
            self._save_if_persistent()

    def isolate(self, i: int) -> None:
        """Cut node ``i`` off from the other nodes (both directions, every peer link)
        while it keeps running and keeps its clients, until ``rejoin(i)`` or ``heal()``.
        RuntimeError if the cluster was not started with ``cgroups=True`` on a machine
        where cuts can be made (see ``peercut.unavailable()``)."""
        with self._lock:
            node = self._running_node(i)
            if node.cgroup is None:
                raise RuntimeError(peercut.unavailable()
                                   or "the cluster was not started with cgroups=True")
            if node.proc is None or not peercut.member(node.proc.pid, node.cgroup):
                raise RuntimeError(f"node {i} did not join its cgroup {node.cgroup}")
            if node.cut is None:
                node.cut = peercut.PeerCut(node.cgroup, node.client_port)

    def rejoin(self, i: int) -> None:
        """Undo ``isolate(i)`` (no-op if node ``i`` is not cut off)."""
        with self._lock:
            self._rejoin(self._node(i))

    @staticmethod
    def _rejoin(node: Node) -> None:
        if node.cut is not None:
            node.cut.heal()
            node.cut = None

    def is_isolated(self, i: int) -> bool:
        """True between isolate(i) and rejoin(i)."""
        return self._node(i).cut is not None

    def stop_all_and_restart(self, timeout: float = 60.0) -> None:
        """Full-cluster crash and recovery: SIGKILL every node, start all from their data
        dirs, wait until healthy."""
        with self._lock:
            self._require_started()
            for node in self._nodes:
                self.kill(node.index)
            for node in self._nodes:
                self._launch(node)
            self._wait_all_serving(timeout)

    def heal(self, timeout: float = 60.0) -> None:
        """Undo every fault: rejoin isolated nodes, resume paused ones, restart dead ones,
        wait until healthy (TimeoutError if that takes longer than ``timeout``)."""
        for i in range(self.size):
            self.rejoin(i)
            if self.is_paused(i):
                self.resume(i)
            if not self.is_running(i):
                self.restart(i, wait=False)
        self.wait_healthy(timeout)
