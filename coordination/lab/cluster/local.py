"""``LocalCluster``: start and stop a local cluster, let it outlive this process
(detach/attach), and hand out a secure cluster's client settings.

Every started cluster is stopped by an ``atexit`` hook, so an aborted test run does not
leave servers behind (a SIGKILLed interpreter cannot clean up, though); ``detach()``
takes a cluster off that list.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from .. import peercut
from .faults import FaultInjection
from .ports import HOST, port_free
from .process import PidProcess, proc_state, reap_stale, runs_in, terminate
from .state import read_state

_STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL in stop()

_LIVE: set[LocalCluster] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all_live() -> None:
    """Stop every cluster that was started and not stopped (interpreter exit)."""
    with _LIVE_LOCK:
        clusters = list(_LIVE)
    for cluster in clusters:
        with contextlib.suppress(Exception):  # best effort at exit
            cluster.stop()


class LocalCluster(FaultInjection):
    """A ZooKeeper or etcd cluster of ``nodes`` local server processes on 127.0.0.1.

    ``base_port``: node i uses client port ``base_port + i``, peer port
    ``base_port + 100 + i`` and (ZooKeeper) election port ``base_port + 200 + i``;
    None picks free ports. ``workdir``: where node dirs go (kept); None uses a temp dir
    that stop() removes. ``tick_ms``: ZooKeeper tickTime (etcd uses heartbeat 100 ms,
    election timeout 1000 ms). ``zookeeper_heap``: each ZooKeeper JVM's ``-Xmx``.
    ``cgroups``: run each node in a cgroup of its own, so that ``isolate()`` can cut
    its peer links (root only; see peercut.py). ``secure``: TLS-only client and peer
    ports, client certificates and users (see secure.py: ``client_settings()``,
    ``write_config()``); ``auth_token_ttl``: etcd's simple-token TTL in seconds then;
    ``require_sasl``: a secure ZooKeeper accepts only sessions authenticated by SASL.
    Nothing runs until start().

    The methods come in layers: ``core.ClusterCore`` (addresses, node states, the state
    file), ``health.HealthChecks`` (leader, status, waiting), ``faults.FaultInjection``
    (kill, restart, pause, isolate, heal) and this class (lifecycle, detach/attach,
    client settings of a secure cluster).
    """

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> LocalCluster:
        """Start every node and wait until the cluster serves (quorum + leader); self.

        Raises RuntimeError if binaries are missing, a port is taken or a node exits,
        TimeoutError if the cluster is not healthy within ``timeout`` seconds. On failure
        everything started so far is stopped again.
        """
        with self._lock:
            if self._started:
                raise RuntimeError(f"{self!r} is already started")
            self._impl.check_installed()
            self._prepare_workdir()
            self._impl.prepare()
            self._started = True
            with _LIVE_LOCK:
                _LIVE.add(self)
            try:
                self._check_ports_free()
                for node in self._nodes:
                    self._impl.write_config(node)
                    self._launch(node)
                self._wait_all_serving(timeout)
                self._impl.bootstrap()
            except BaseException:
                self.stop()
                raise
        return self

    def stop(self) -> None:
        """Stop every node (SIGTERM followers, then the leader; SIGKILL after a grace
        period) and wait until all processes are gone; idempotent.

        Removes the workdir if it was a temp dir created by start().
        """
        with self._lock:
            for node in self._nodes:
                self._rejoin(node)
            # Followers first: an etcd leader that gets SIGTERM hands leadership to a
            # follower, and if that follower is shutting down too, etcd waits ~7 s.
            leader = self.leader() if any(n.probeable() for n in self._nodes) else None
            followers = [n for n in self._nodes if n.running() and n.index != leader]
            for group in (followers, [n for n in self._nodes if n.running()]):
                terminate(group, _STOP_GRACE / 2)
            for node in self._nodes:
                node.proc, node.paused = None, False
                node.pidfile.unlink(missing_ok=True)
                if node.cgroup is not None:
                    peercut.remove_cgroup(node.cgroup)
                    node.cgroup = None
            self._started = False
            with _LIVE_LOCK:
                _LIVE.discard(self)
            self._save_if_persistent()
            if self._own_workdir and self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None

    def __enter__(self) -> LocalCluster:
        return self if self._started else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- outliving this process ------------------------------------------------------

    def detach(self) -> Path:
        """Let the servers outlive this process: take the cluster off the ``atexit``
        stop list and write its state file (see :meth:`attach`); the state file's path.

        The workdir must be one given to the constructor (a temp workdir is removed by
        stop(), so another process could not find it reliably)."""
        with self._lock:
            self._require_started()
            if self._own_workdir:
                raise RuntimeError("detach() needs a cluster created with an explicit workdir")
            with _LIVE_LOCK:
                _LIVE.discard(self)
            return self.save_state()

    @classmethod
    def attach(cls, workdir: str | os.PathLike[str]) -> LocalCluster:
        """Re-attach to a cluster that another process started and detached, from
        ``workdir/cluster.json``. Its servers are tracked by pid; a node whose pid is
        gone (or now belongs to another program) counts as down. The state file is kept
        up to date by every later kill/restart/pause/resume/stop. ``FileNotFoundError``
        if there is no state file, ``ValueError`` if it is not one of ours.

        Stopping is explicit (``stop()``): nothing is stopped when this process exits.
        """
        state = read_state(workdir)
        nodes = state["nodes"]
        cluster = cls(state["backend"], nodes=len(nodes), workdir=workdir,
                      tick_ms=state["tick_ms"], secure=bool(state.get("secure", False)),
                      auth_token_ttl=int(state.get("auth_token_ttl", 300)),
                      require_sasl=bool(state.get("require_sasl", False)))
        cluster._token = str(state["token"])
        cluster._own_workdir = False
        assert cluster.workdir is not None
        for node, saved in zip(cluster._nodes, sorted(nodes, key=lambda n: n["index"])):
            node.client_port = int(saved["client_port"])
            node.peer_port = int(saved["peer_port"])
            node.election_port = int(saved.get("election_port") or 0)
            node.dir = cluster.workdir / f"node{node.index}"
            pid = saved.get("pid")
            if isinstance(pid, int) and runs_in(pid, node.dir):
                node.proc = PidProcess(pid)
                node.paused = proc_state(pid) == "T"
        cluster._started = True
        cluster._persistent = True
        return cluster

    # --- secure clusters: what clients need (secure.py) -----------------------

    def client_settings(self, identity: str = "app", method: str = "password") -> dict[str, Any]:
        """Settings for ``coordination.Config`` (``tls``, ``ca``, ``cert``, ``key`` and,
        with ``method="password"``, ``username``/``password``; ``method="sasl"``: those
        and ``sasl``, ZooKeeper) of ``identity`` (``root``, ``app``, ``other``) on a
        secure cluster."""
        return self._secrets().client_settings(identity, method)

    def client_url(self, identity: str = "app", namespace: str = "app") -> str:
        """A URL for ``identity`` on a secure cluster: ``user@`` before the hosts, the
        TLS files and a ``password_file`` as parameters (never the password)."""
        return str(self._secrets().client_url(identity, namespace))

    def root_settings(self) -> dict[str, Any]:
        """Admin settings of a secure cluster (etcd root, ZooKeeper super user)."""
        return self._secrets().root_settings()

    def write_config(
        self, path: str | os.PathLike[str], identity: str = "app", namespace: str = "app"
    ) -> Path:
        """Write a coordination.toml for ``identity`` on a secure cluster (TLS settings
        and a ``password_file``; never the password); its path."""
        return self._secrets().write_config(path, identity, namespace)

    @property
    def wrong_ca(self) -> Path:
        """A CA certificate unrelated to the secure cluster's (``tls/wrong-ca.pem``)."""
        return self._secrets().files.wrong_ca

    def _secrets(self) -> Any:
        secrets = getattr(self._impl, "secrets", None)
        if secrets is None:
            raise RuntimeError(f"{self!r} is not secure (LocalCluster(..., secure=True))")
        return secrets

    # --- start() helpers -------------------------------------------------------------

    def _prepare_workdir(self) -> None:
        if self.workdir is None:  # own temp dir (also after stop() removed the last one)
            self.workdir = Path(tempfile.mkdtemp(prefix=f"coordination-{self.backend}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        for node in self._nodes:
            node.dir = self.workdir / f"node{node.index}"
            node.dir.mkdir(exist_ok=True)
            reap_stale(node)

    def _check_ports_free(self) -> None:
        for node in self._nodes:
            for port in (node.client_port, node.peer_port, node.election_port):
                if port and not port_free(port):
                    raise RuntimeError(f"port {HOST}:{port} for node {node.index} is in use")
