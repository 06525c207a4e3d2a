"""The base layer of ``LocalCluster``: its settings, nodes and servers, and what the
layers above share (node lookup, launching a node, waiting, the state file).

``LocalCluster`` is built in layers, one module each: this one, ``health.py`` (leader,
status, waiting for health), ``faults.py`` (kill, restart, pause, isolate, heal) and
``local.py`` (start/stop, detach/attach, a secure cluster's client settings).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from .ports import free_ports
from .process import POLL, Node, launch
from .servers import BACKEND_CLASSES, BACKENDS, Backend
from .state import STATE_FILE, write_state

_LOG_TAIL_LINES = 15


class ClusterCore:
    """The settings, nodes and servers of a cluster; nothing runs yet. The parameters
    are those of ``LocalCluster``, which documents them."""

    def __init__(
        self,
        backend: str,
        nodes: int = 3,
        base_port: int | None = None,
        workdir: str | os.PathLike[str] | None = None,
        tick_ms: int = 500,
        zookeeper_heap: str = "1g",
        cgroups: bool = False,
        secure: bool = False,
        auth_token_ttl: int = 300,
        require_sasl: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        if tick_ms < 1:
            raise ValueError("tick_ms must be positive")
        if auth_token_ttl < 1:
            raise ValueError("auth_token_ttl must be positive")
        if require_sasl and not (secure and backend == "zookeeper"):
            raise ValueError("require_sasl is for a secure ZooKeeper cluster")
        self.backend = backend
        self.tick_ms = tick_ms
        self.zookeeper_heap = zookeeper_heap
        self.cgroups = cgroups
        self.secure = secure
        self.auth_token_ttl = auth_token_ttl
        self.require_sasl = require_sasl
        if secure:
            # Not at the top: secure servers need ``cryptography`` (an optional
            # dependency), plain clusters must work without it.
            from .secure_servers import backend_class

            server_class = backend_class(backend)
        else:
            server_class = BACKEND_CLASSES[backend]
        self._own_workdir = workdir is None
        #: Directory holding node0..nodeN-1; None until start() when it is a temp dir.
        self.workdir: Path | None = None if workdir is None else Path(workdir)
        self._token = f"coordination-{uuid.uuid4().hex[:12]}"
        self._lock = threading.RLock()
        self._started = False
        self._persistent = False  # keep workdir/cluster.json up to date (detach/attach)
        self._nodes = _make_nodes(nodes, base_port, server_class.ports_per_node)
        self._impl: Backend = server_class(self, self._nodes)

    # --- addresses ---------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """Client endpoints, ``["127.0.0.1:port", ...]`` in node order."""
        return [node.endpoint for node in self._nodes]

    @property
    def url(self) -> str:
        """``zookeeper://h:p,h:p,..`` or ``etcd://h:p,..`` without a path (append "/ns")."""
        return f"{self.backend}://{','.join(self.endpoints)}"

    @property
    def size(self) -> int:
        """Number of nodes."""
        return len(self._nodes)

    @property
    def token(self) -> str:
        """This cluster's unique name: etcd's ``initial-cluster-token`` and the prefix of
        its cgroups; kept in the state file, so an attached cluster has the same."""
        return self._token

    def log_path(self, i: int) -> Path:
        """``workdir/node<i>/server.log`` (exists once the cluster was started)."""
        return self._node(i).log

    def __repr__(self) -> str:
        secure = ", secure=True" if self.secure else ""
        return f"LocalCluster({self.backend!r}, nodes={self.size}{secure}, url={self.url!r})"

    # --- node states -------------------------------------------------------------------

    def pid(self, i: int) -> int | None:
        """Pid of node ``i`` while its process runs, else None."""
        node = self._node(i)
        return node.proc.pid if node.proc is not None and node.running() else None

    def is_running(self, i: int) -> bool:
        """True while node ``i``'s process exists (paused counts as running)."""
        return self._node(i).running()

    def is_paused(self, i: int) -> bool:
        """True between pause(i) and resume(i)."""
        node = self._node(i)
        return node.running() and node.paused

    # --- the state file ----------------------------------------------------------------

    @property
    def state_path(self) -> Path | None:
        """``workdir/cluster.json`` (None while there is no workdir)."""
        return None if self.workdir is None else self.workdir / STATE_FILE

    def save_state(self) -> Path:
        """Write ports, pids and settings to ``workdir/cluster.json`` (atomically) and
        keep that file up to date from now on; its path."""
        with self._lock:
            if self.workdir is None:
                raise RuntimeError(f"{self!r} has no workdir yet (start it first)")
            self._persistent = True
            return write_state(self.workdir, {
                "backend": self.backend,
                "tick_ms": self.tick_ms,
                "secure": self.secure,
                "auth_token_ttl": self.auth_token_ttl,
                "require_sasl": self.require_sasl,
                "token": self._token,
                "workdir": str(self.workdir),
                "nodes": [
                    {
                        "index": node.index,
                        "client_port": node.client_port,
                        "peer_port": node.peer_port,
                        "election_port": node.election_port,
                        "pid": self.pid(node.index),
                        "paused": self.is_paused(node.index),
                    }
                    for node in self._nodes
                ],
            })

    def _save_if_persistent(self) -> None:
        if self._persistent and self.workdir is not None and self.workdir.is_dir():
            self.save_state()

    # --- for the layers above ----------------------------------------------------------

    def _node(self, i: int) -> Node:
        if not isinstance(i, int) or not 0 <= i < len(self._nodes):
            raise IndexError(f"node index {i!r} out of range 0..{len(self._nodes) - 1}")
        return self._nodes[i]

    def _running_node(self, i: int) -> Node:
        node = self._node(i)
        if not node.running():
            raise RuntimeError(f"node {i} is not running")
        return node

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError(f"{self!r} is not started")

    def _launch(self, node: Node) -> None:
        """Start node's server process (its config must exist); no waiting."""
        cgroup = f"{self._token}-n{node.index}" if self.cgroups else None
        launch(node, self._impl.command(node), self._impl.env(), cgroup)
        self._save_if_persistent()

    def _wait_until(
        self, predicate: Callable[[], bool], timeout: float, what: str, watch: list[Node]
    ) -> None:
        """Poll ``predicate`` until true. RuntimeError if a ``watch`` node's process exits,
        TimeoutError after ``timeout`` seconds; both quote the node logs."""
        deadline = time.monotonic() + timeout
        while True:
            for node in watch:
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.backend} node {node.index} exited with code "
                        f"{node.proc.returncode} while waiting for {what}\n{self._log_tails()}"
                    )
            if predicate():
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"timed out after {timeout:.1f}s waiting for {what} ({self!r})\n"
                    f"{self._log_tails()}"
                )
            time.sleep(POLL)

    def _log_tails(self) -> str:
        parts = []
        for node in self._nodes:
            state = "paused" if node.paused else ("running" if node.running() else "down")
            parts.append(f"--- node {node.index} ({state}) {node.log} ---\n{_tail(node.log)}")
        return "\n".join(parts)


def _make_nodes(count: int, base_port: int | None, per: int) -> list[Node]:
    """``count`` nodes with ``per`` ports each: from ``base_port`` (client ``+i``, peer
    ``+100+i``, election ``+200+i``) or free ones; their dirs are set by start()."""
    if base_port is None:
        ports = free_ports(count * per)
        groups = [ports[i * per : (i + 1) * per] for i in range(count)]
    else:
        if not 0 < base_port < 65536 - 200 - count:
            raise ValueError(f"base_port {base_port} out of range")
        groups = [[base_port + off + i for off in (0, 100, 200)[:per]] for i in range(count)]
    return [
        Node(i, Path(), client_port=g[0], peer_port=g[1], election_port=g[2] if per > 2 else 0)
        for i, g in enumerate(groups)
    ]


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
