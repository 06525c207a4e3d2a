"""The health layer of ``LocalCluster``: who leads, whether the nodes serve, the servers'
own request/watch counters, and waiting until the cluster is healthy.

Everything here is read from the servers with short probes (``servers.py``); paused and
dead nodes are never probed.
"""

from __future__ import annotations

from typing import Any

from .core import ClusterCore


class HealthChecks(ClusterCore):
    """Leader, health and counters of a cluster (see ``LocalCluster``)."""

    def leader(self) -> int | None:
        """Index of the node that leads, else None.

        ZooKeeper: 'srvr' says ``Mode: leader`` (or standalone); etcd: the node's
        ``etcd_server_is_leader`` metric is 1. Paused and dead nodes are skipped and each
        probe has a short timeout. If two nodes claim leadership (a deposed leader that
        has not noticed yet), the one with the higher ZooKeeper epoch wins; for etcd,
        which exposes no term over plain HTTP, the answer is None until only one remains.
        """
        claims: list[tuple[int, int]] = []
        for node in self._nodes:
            if node.probeable():
                rank = self._impl.leader_rank(node)
                if rank is not None:
                    claims.append((rank, node.index))
        if not claims:
            return None
        top = max(rank for rank, _ in claims)
        leaders = [index for rank, index in claims if rank == top]
        return leaders[0] if len(leaders) == 1 else None

    def wait_for_leader(self, timeout: float = 30.0, exclude: int | None = None) -> int:
        """Poll until some node other than ``exclude`` leads; its index. TimeoutError."""
        found: list[int] = []

        def elected() -> bool:
            leader = self.leader()
            if leader is not None and leader != exclude:
                found.append(leader)
                return True
            return False

        self._wait_until(elected, timeout, "a leader to be elected", [])
        return found[-1]

    def requests(self) -> float:
        """Client requests all running nodes received so far, from the servers' own
        counters (ZooKeeper ``mntr`` packets received, etcd's gRPC messages received)."""
        return sum(self._impl.requests(node) for node in self._nodes if node.probeable())

    def notifications(self) -> float:
        """Watch notifications all running nodes sent so far, from the servers' own
        counters (ZooKeeper ``mntr``: watchers fired per event, summed; etcd: watch
        events sent)."""
        return sum(self._impl.notifications(node) for node in self._nodes if node.probeable())

    def watches(self) -> float:
        """Watches all running nodes hold for their clients now (ZooKeeper ``mntr``
        ``zk_watch_count``; etcd's watcher gauge)."""
        return sum(self._impl.watches(node) for node in self._nodes if node.probeable())

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every running, unpaused node serves and there is a leader.

        Raises TimeoutError (with the tail of every node's log) if that takes longer.
        """
        self._wait_until(self._healthy, timeout, "the cluster to become healthy", [])

    def status(self) -> list[dict[str, Any]]:
        """One dict per node: ``index``, ``pid`` (None when down), ``endpoint``,
        ``state`` (``"running"``, ``"paused"`` or ``"down"``), ``leader`` and ``serving``
        (it answers client requests as part of a quorum)."""
        leader = self.leader()
        rows = []
        for node in self._nodes:
            state = "down" if not node.running() else ("paused" if node.paused else "running")
            rows.append({
                "index": node.index,
                "pid": self.pid(node.index),
                "endpoint": node.endpoint,
                "state": state,
                "leader": leader == node.index,
                "serving": node.probeable() and self._impl.serving(node),
            })
        return rows

    def _healthy(self) -> bool:
        live = [node for node in self._nodes if node.probeable()]
        return (
            bool(live)
            and all(self._impl.serving(node) for node in live)
            and self.leader() is not None
        )

    def _wait_all_serving(self, timeout: float) -> None:
        """Like wait_healthy(), but RuntimeError as soon as any node's process exits."""
        self._wait_until(self._healthy, timeout, "the cluster to become healthy", self._nodes)
