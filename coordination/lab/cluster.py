"""Real local ZooKeeper / etcd clusters for tests: one child process per node on 127.0.0.1.

Standard library only (no kazoo/grpc): health and leader checks use ZooKeeper's
four-letter words over TCP and etcd's plain HTTP endpoints (/health, /metrics, peer /version).
``LocalCluster(..., secure=True)`` serves TLS ports only and probes them over TLS with a
client certificate; its parts (TLS settings, users, ``client_settings()``) live in
``secure.py``, its certificates are made by ``certs.py``.
Debian's etcd build has no gRPC JSON gateway (every /v3/... URL answers 404), so the
leader is read from the ``etcd_server_is_leader`` metric, not /v3/maintenance/status.

    with LocalCluster("etcd", nodes=3) as cluster:
        connect(cluster.url + "/shop")
        cluster.kill(cluster.leader())

Processes are tracked by pid only (never by name), each node's pid is also written to
``workdir/nodeN/server.pid`` and its output to ``workdir/nodeN/server.log``. Every
started cluster is stopped by an ``atexit`` hook, so an aborted test run does not
leave servers behind (a SIGKILLed interpreter cannot clean up, though).

A cluster can outlive the process that started it (the ``coordination cluster up``
command): ``detach()`` takes it off the ``atexit`` list and records its ports, pids and
settings in ``workdir/cluster.json``; ``LocalCluster.attach(workdir)`` in another process
re-attaches to it from that file (tracking the servers by pid, after checking that each
pid's command line names its node dir), and keeps the file up to date on every kill,
restart, pause, resume and stop.

Server config templates: the canonical copies are the files in the repository's
``backends/`` folder (shared with ``compose/``). A source checkout (``pip install -e .``
or ``PYTHONPATH``) reads those; an installed wheel has no ``backends/`` folder and uses
the identical copies embedded below in ``_EMBEDDED_TEMPLATES``.
``tests/test_cluster.py::test_embedded_templates_match_backends`` keeps them in sync.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib import request

from . import peercut

__all__ = ["LocalCluster", "BACKENDS"]

BACKENDS = ("zookeeper", "etcd")
HOST = "127.0.0.1"
INSTALL_HINT = (
    "run `bash backends/install.sh` (Debian packages zookeeper, etcd-server, etcd-client)"
)

_STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL in stop()
_PROBE_TIMEOUT = 0.5  # seconds for one health/leader probe of one node
_POLL = 0.05  # seconds between polls while waiting
_LOG_TAIL_LINES = 15

_REPO_BACKENDS = Path(__file__).resolve().parents[2] / "backends"

# Identical copies of backends/<name>; used only when backends/ is not next to the package.
_EMBEDDED_TEMPLATES: dict[str, str] = {
    "zookeeper/zoo.cfg": """\
# ZooKeeper server config template for coordination's local test clusters.
# Rendered with Python string.Template by coordination/lab/cluster.py (one copy per node):
# each dollar-prefixed word is a placeholder the launcher fills in (a literal dollar sign
# would have to be doubled). compose/compose.yml passes the same settings through the
# image's ZOO_* variables instead.
tickTime=$tick_ms
initLimit=10
syncLimit=5
minSessionTimeout=$min_session_timeout_ms
maxSessionTimeout=60000
dataDir=$data_dir
clientPort=$client_port
clientPortAddress=$client_host
# No per-IP connection cap: every test client connects from 127.0.0.1.
maxClientCnxns=0
snapCount=10000
# Preallocate the transaction log in 1 MiB steps (default 64 MiB) to save disk.
# forceSync stays at its default (yes): acknowledged writes must survive SIGKILL.
preAllocSize=1024
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
admin.enableServer=false
4lw.commands.whitelist=srvr,mntr,ruok,stat,cons
reconfigEnabled=false
$servers
""",
    "zookeeper/log4j.properties": """\
# Quiet log4j 1.2 config for ZooKeeper (Debian's zookeeper.jar logs through slf4j-log4j12).
# Warnings and errors go to one file; quorum state changes (LOOKING/LEADING/FOLLOWING)
# stay at INFO because they explain failover timings.
# The launcher passes -Dzookeeper.log.file=<node dir>/server.log; the value below is the
# fallback used when the property is not set.
zookeeper.log.file=zookeeper.log
log4j.rootLogger=WARN, FILE
log4j.logger.org.apache.zookeeper.server.quorum.QuorumPeer=INFO
log4j.logger.org.apache.zookeeper.server.quorum.Leader=INFO
log4j.logger.org.apache.zookeeper.server.quorum.Learner=INFO
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${zookeeper.log.file}
log4j.appender.FILE.Append=true
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
""",
    "etcd/etcd.conf.yml": """\
# etcd 3.4 member config template for coordination's local test clusters.
# Rendered with Python string.Template by coordination/lab/cluster.py and passed as
# `etcd --config-file` (etcd then ignores command-line flags and ETCD_* variables).
# Each dollar-prefixed word is a placeholder the launcher fills in (a literal dollar sign
# would have to be doubled). compose/compose.yml passes the same settings as flags.
name: $name
data-dir: $data_dir
listen-client-urls: $client_url
advertise-client-urls: $client_url
listen-peer-urls: $peer_url
initial-advertise-peer-urls: $peer_url
initial-cluster: $initial_cluster
initial-cluster-token: $cluster_token
# Ignored once the data dir exists, so restarts reuse the member's data.
initial-cluster-state: new
heartbeat-interval: 100
election-timeout: 1000
# 8 GiB backend quota (etcd's recommended maximum) for large queue tests.
quota-backend-bytes: 8589934592
snapshot-count: 10000
logger: zap
log-level: info
log-outputs: [stderr]
""",
}


def load_template(name: str) -> str:
    """Text of server template ``name`` (e.g. ``"etcd/etcd.conf.yml"``), repo copy first."""
    path = _REPO_BACKENDS / name
    if path.is_file():
        return path.read_text(encoding="utf-8")
    return _EMBEDDED_TEMPLATES[name]


def _render(template: str, **values: object) -> str:
    return string.Template(load_template(template)).substitute(values)


# --- small process / network helpers ------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _port_free(port: int) -> bool:
    """True if nothing is bound to HOST:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_ISSUED: set[int] = set()
_ISSUED_LOCK = threading.Lock()


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on HOST, chosen below the kernel's ephemeral range.

    Binding port 0 would return an ephemeral port, which an outgoing client connection
    may take as its source port while the node is down; restart() would then fail.
    """
    low, high = 10000, _ephemeral_range()[0]
    if high - low < 1000:  # unusual kernel settings: let the OS choose
        return [_os_chosen_port() for _ in range(count)]
    rng = random.SystemRandom()
    ports: list[int] = []
    for _ in range(count * 100):
        port = rng.randrange(low, high)
        with _ISSUED_LOCK:
            if port in _ISSUED or not _port_free(port):
                continue
            _ISSUED.add(port)  # never hand a port to two clusters of this process
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"could not find {count} free ports on {HOST}")


def _os_chosen_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _four_letter(port: int, word: str, timeout: float = _PROBE_TIMEOUT) -> str | None:
    """Send a ZooKeeper four-letter word; the reply, or None if the node did not answer."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(word.encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode("utf-8", "replace")


_HTTP = request.build_opener(request.ProxyHandler({}))  # never route 127.0.0.1 via a proxy


def _http_text(url: str, timeout: float = _PROBE_TIMEOUT) -> str | None:
    """GET a text page; None on any network or HTTP error."""
    try:
        with _HTTP.open(url, timeout=timeout) as resp:
            return resp.read().decode("utf-8", "replace")
    except OSError:
        return None


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class _PidProcess:
    """The part of ``subprocess.Popen`` that LocalCluster uses, for a server process that
    another process started (see ``LocalCluster.attach``): tracked by pid only.

    The exit code of a process that is not our child is unknown: ``returncode`` is -1
    once it is gone.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not _pid_alive(self.pid):
            self.returncode = -1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(_POLL)
        assert self.returncode is not None
        return self.returncode


def _proc_state(pid: int) -> str:
    """The one-letter state of ``/proc/PID/stat`` (``T``: stopped), or ``""``."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


def _runs_in(pid: int, node_dir: Path) -> bool:
    """True if process ``pid`` lives and its command line names ``node_dir`` (so a
    recycled pid is never mistaken for our server)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return False
    return str(node_dir) in cmdline


# --- nodes and backends -------------------------------------------------------------------


@dataclass
class _Node:
    """One server: its ports, directory and (when started by us) its process."""

    index: int
    dir: Path
    client_port: int
    peer_port: int
    election_port: int = 0  # ZooKeeper only
    proc: subprocess.Popen[bytes] | _PidProcess | None = None
    paused: bool = False
    cgroup: Path | None = None  # with cgroups=True, where cuts can be made
    cut: peercut.PeerCut | None = None

    @property
    def log(self) -> Path:
        return self.dir / "server.log"

    @property
    def pidfile(self) -> Path:
        return self.dir / "server.pid"

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.client_port}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def probeable(self) -> bool:
        """Running and not SIGSTOPped: worth a network probe."""
        return self.running() and not self.paused


class _Backend:
    """What differs between ZooKeeper and etcd: config, command line, probes."""

    ports_per_node = 2

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def check_installed(self) -> None:
        raise NotImplementedError

    def write_config(self, node: _Node) -> None:
        raise NotImplementedError

    def command(self, node: _Node) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self) -> None:
        """Before start() writes the node configs (the workdir exists); no-op here."""

    def bootstrap(self) -> None:
        """Once, when start() has found the new cluster healthy; no-op here."""

    def serving(self, node: _Node) -> bool:
        """The node serves client requests (it is part of a working quorum)."""
        raise NotImplementedError

    def alive(self, node: _Node) -> bool:
        """The node answers at all (quorum or not)."""
        raise NotImplementedError

    def leader_rank(self, node: _Node) -> int | None:
        """None unless the node believes it leads; then its epoch/term if known, else 0."""
        raise NotImplementedError

    def requests(self, node: _Node) -> float:
        """Client requests the node received so far, from its own counters."""
        raise NotImplementedError

    def notifications(self, node: _Node) -> float:
        """Watch notifications the node sent to its clients so far."""
        raise NotImplementedError

    def watches(self, node: _Node) -> float:
        """Watches the node holds for its clients now."""
        raise NotImplementedError


ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
# Debian's zookeeper.jar lists its dependencies in its manifest Class-Path but has no
# slf4j binding (it would log nothing); these two make it honour log4j.properties.
_ZOOKEEPER_LOG_JARS = ("/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar")


def _zookeeper_classpath(confdir: Path) -> str:
    """Config dir (for log4j.properties) + Debian's ZooKeeper jar + the log4j binding."""
    jars = [jar for jar in _ZOOKEEPER_LOG_JARS if Path(jar).is_file()]
    return os.pathsep.join([str(confdir), str(ZOOKEEPER_JAR), *jars])


class _ZooKeeper(_Backend):
    ports_per_node = 3
    MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
    JVM_FLAGS = [
        "-Xms64m",
        "-XX:+UseSerialGC",
        "-XX:-UsePerfData",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        "-Djava.net.preferIPv4Stack=true",
    ]

    def java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError(f"java not found on PATH; {INSTALL_HINT}")
        return java

    def check_installed(self) -> None:
        self.java()
        if not ZOOKEEPER_JAR.is_file():
            raise RuntimeError(f"{ZOOKEEPER_JAR} not found; {INSTALL_HINT}")

    def write_config(self, node: _Node) -> None:
        data = node.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{node.index + 1}\n")
        servers = "\n".join(
            f"server.{n.index + 1}={HOST}:{n.peer_port}:{n.election_port}"
            for n in self.cluster._nodes
        )
        tick = self.cluster.tick_ms
        cfg = _render(
            "zookeeper/zoo.cfg",
            tick_ms=tick,
            min_session_timeout_ms=2 * tick,
            data_dir=data,
            client_port=node.client_port,
            client_host=HOST,
            servers=servers,
        )
        (node.dir / "zoo.cfg").write_text(cfg)
        (node.dir / "log4j.properties").write_text(load_template("zookeeper/log4j.properties"))

    def command(self, node: _Node) -> list[str]:
        return [
            self.java(),
            f"-Xmx{self.cluster.zookeeper_heap}",
            *self.JVM_FLAGS,
            f"-Dzookeeper.log.dir={node.dir}",
            f"-Dzookeeper.log.file={node.log}",
            "-cp",
            _zookeeper_classpath(node.dir),
            self.MAIN,
            str(node.dir / "zoo.cfg"),
        ]

    def _word(self, node: _Node, word: str) -> str | None:
        """The node's reply to a four-letter word, None if it did not answer."""
        return _four_letter(node.client_port, word)

    def _srvr(self, node: _Node) -> dict[str, str]:
        reply = self._word(node, "srvr") or ""
        return dict(
            (key.strip(), value.strip())
            for key, sep, value in (line.partition(":") for line in reply.splitlines())
            if sep
        )

    def serving(self, node: _Node) -> bool:
        # A node without quorum answers "This ZooKeeper instance is not currently serving
        # requests" and no Mode line.
        return self._srvr(node).get("Mode") in ("leader", "follower", "observer", "standalone")

    def alive(self, node: _Node) -> bool:
        return self._word(node, "ruok") == "imok"

    def leader_rank(self, node: _Node) -> int | None:
        info = self._srvr(node)
        if info.get("Mode") not in ("leader", "standalone"):
            return None
        try:
            return int(info.get("Zxid", "0x0"), 16) >> 32  # epoch
        except ValueError:
            return 0

    def requests(self, node: _Node) -> float:
        return float(self._mntr(node).get("zk_packets_received", 0))

    def notifications(self, node: _Node) -> float:
        # Per event, the server records how many watchers it fired: these are the sums.
        counters = self._mntr(node)
        return sum(float(counters.get(f"zk_sum_node_{event}_watch_count", 0))
                   for event in ("created", "deleted", "changed", "children"))

    def watches(self, node: _Node) -> float:
        return float(self._mntr(node).get("zk_watch_count", 0))

    def _mntr(self, node: _Node) -> dict[str, str]:
        lines = (self._word(node, "mntr") or "").splitlines()
        return dict(line.split("\t", 1) for line in lines if "\t" in line)


class _Etcd(_Backend):
    def binary(self) -> str:
        found = shutil.which("etcd") or next(
            (p for p in ("/usr/bin/etcd", "/usr/local/bin/etcd") if os.access(p, os.X_OK)), None
        )
        if found is None:
            raise RuntimeError(f"etcd not found on PATH; {INSTALL_HINT}")
        return found

    def check_installed(self) -> None:
        self.binary()

    def _url(self, port: int) -> str:
        return f"http://{HOST}:{port}"

    def _get_text(self, url: str) -> str | None:
        """GET a text page; None on any network or HTTP error."""
        return _http_text(url)

    def _get_json(self, url: str) -> Any:
        text = self._get_text(url)
        try:
            return None if text is None else json.loads(text)
        except ValueError:
            return None

    def write_config(self, node: _Node) -> None:
        (node.dir / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
        initial = ",".join(f"n{n.index}={self._url(n.peer_port)}" for n in self.cluster._nodes)
        cfg = _render(
            "etcd/etcd.conf.yml",
            name=f"n{node.index}",
            data_dir=node.dir / "data",
            client_url=self._url(node.client_port),
            peer_url=self._url(node.peer_port),
            initial_cluster=initial,
            cluster_token=self.cluster._token,
        )
        (node.dir / "etcd.conf.yml").write_text(cfg)

    def command(self, node: _Node) -> list[str]:
        return [self.binary(), "--config-file", str(node.dir / "etcd.conf.yml")]

    def env(self) -> dict[str, str]:
        # etcd rejects unknown/conflicting ETCD_* variables; the config file says it all.
        return {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}

    def serving(self, node: _Node) -> bool:
        # /health in etcd 3.4 is true only with a leader and a working quorum.
        health = self._get_json(f"{self._url(node.client_port)}/health")
        return isinstance(health, dict) and health.get("health") in ("true", True)

    def alive(self, node: _Node) -> bool:
        # A member restarted without quorum never becomes "ready", and etcd serves its
        # client port only when ready; the peer port answers /version from the start.
        version = self._get_json(f"{self._url(node.peer_port)}/version")
        return isinstance(version, dict) and "etcdserver" in version

    def leader_rank(self, node: _Node) -> int | None:
        metrics = self._get_text(f"{self._url(node.client_port)}/metrics") or ""
        return 0 if re.search(r"^etcd_server_is_leader 1$", metrics, re.MULTILINE) else None

    def requests(self, node: _Node) -> float:
        # Every message a client sent: unary calls and stream messages (watch creates
        # and cancels, lease keep-alives).
        metrics = self._get_text(f"{self._url(node.client_port)}/metrics") or ""
        return sum(float(v) for v in re.findall(
            r"^grpc_server_msg_received_total\{[^}]*\} (\S+)$", metrics, re.MULTILINE))

    def notifications(self, node: _Node) -> float:
        metrics = self._get_text(f"{self._url(node.client_port)}/metrics") or ""
        found = re.search(r"^etcd_debugging_mvcc_events_total (\S+)$", metrics, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def watches(self, node: _Node) -> float:
        metrics = self._get_text(f"{self._url(node.client_port)}/metrics") or ""
        found = re.search(r"^etcd_debugging_mvcc_watcher_total (\S+)$", metrics, re.MULTILINE)
        return float(found.group(1)) if found else 0.0


_BACKEND_CLASSES: dict[str, type[_Backend]] = {"zookeeper": _ZooKeeper, "etcd": _Etcd}

# --- the cluster ----------------------------------------------------------------------------

#: Name of the state file that detach()/save_state() write into the workdir.
STATE_FILE = "cluster.json"
_STATE_VERSION = 1

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


class LocalCluster:
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
    """

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
            from .secure import backend_class  # imports this module

            self._impl = backend_class(backend)(self)
        else:
            self._impl = _BACKEND_CLASSES[backend](self)
        self._own_workdir = workdir is None
        #: Directory holding node0..nodeN-1; None until start() when it is a temp dir.
        self.workdir: Path | None = None if workdir is None else Path(workdir)
        self._token = f"coordination-{uuid.uuid4().hex[:12]}"
        self._lock = threading.RLock()
        self._started = False
        self._persistent = False  # keep workdir/cluster.json up to date (detach/attach)
        self._nodes = self._make_nodes(nodes, base_port)

    def _make_nodes(self, count: int, base_port: int | None) -> list[_Node]:
        per = self._impl.ports_per_node
        if base_port is None:
            ports = free_ports(count * per)
            groups = [ports[i * per : (i + 1) * per] for i in range(count)]
        else:
            if not 0 < base_port < 65536 - 200 - count:
                raise ValueError(f"base_port {base_port} out of range")
            groups = [[base_port + off + i for off in (0, 100, 200)[:per]] for i in range(count)]
        return [
            _Node(i, Path(), client_port=g[0], peer_port=g[1], election_port=g[2] if per > 2 else 0)
            for i, g in enumerate(groups)
        ]

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

    def log_path(self, i: int) -> Path:
        """``workdir/node<i>/server.log`` (exists once the cluster was started)."""
        return self._node(i).log

    def __repr__(self) -> str:
        secure = ", secure=True" if self.secure else ""
        return f"LocalCluster({self.backend!r}, nodes={self.size}{secure}, url={self.url!r})"

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
                self._terminate(group, _STOP_GRACE / 2)
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

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` and wait until its process is gone (no-op if not running)."""
        with self._lock:
            node = self._node(i)
            if node.running():
                self._signal(node, signal.SIGKILL)
                self._wait_exit(node, 30.0, kill_after=False)
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
            self._signal(node, signal.SIGSTOP)
            node.paused = True
            self._save_if_persistent()

    def resume(self, i: int) -> None:
        """SIGCONT node ``i`` after pause()."""
        with self._lock:
            node = self._running_node(i)
            self._signal(node, signal.SIGCONT)
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
    def _rejoin(node: _Node) -> None:
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

    # --- state -------------------------------------------------------------------------

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

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every running, unpaused node serves and there is a leader.

        Raises TimeoutError (with the tail of every node's log) if that takes longer.
        """
        self._wait_until(self._healthy, timeout, "the cluster to become healthy", [])

    def _healthy(self) -> bool:
        live = [node for node in self._nodes if node.probeable()]
        return (
            bool(live)
            and all(self._impl.serving(node) for node in live)
            and self.leader() is not None
        )

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

    # --- outliving this process: state file ------------------------------------------

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
            state = {
                "version": _STATE_VERSION,
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
            }
            path = self.workdir / STATE_FILE
            tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(state, indent=2) + "\n")
            os.replace(tmp, path)
            return path

    def _save_if_persistent(self) -> None:
        if self._persistent and self.workdir is not None and self.workdir.is_dir():
            self.save_state()

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
        path = Path(workdir) / STATE_FILE
        try:
            state = json.loads(path.read_text())
            backend, tick_ms, nodes = state["backend"], int(state["tick_ms"]), state["nodes"]
            if state.get("version") != _STATE_VERSION or not isinstance(nodes, list):
                raise ValueError("unsupported state version")
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a LocalCluster state file: {exc}") from None
        cluster = cls(backend, nodes=len(nodes), workdir=workdir, tick_ms=tick_ms,
                      secure=bool(state.get("secure", False)),
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
            if isinstance(pid, int) and _runs_in(pid, node.dir):
                node.proc = _PidProcess(pid)
                node.paused = _proc_state(pid) == "T"
        cluster._started = True
        cluster._persistent = True
        return cluster

    # --- context manager ---------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        return self if self._started else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- internals ---------------------------------------------------------------------

    def _node(self, i: int) -> _Node:
        if not isinstance(i, int) or not 0 <= i < len(self._nodes):
            raise IndexError(f"node index {i!r} out of range 0..{len(self._nodes) - 1}")
        return self._nodes[i]

    def _running_node(self, i: int) -> _Node:
        node = self._node(i)
        if not node.running():
            raise RuntimeError(f"node {i} is not running")
        return node

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError(f"{self!r} is not started")

    def _prepare_workdir(self) -> None:
        if self.workdir is None:  # own temp dir (also after stop() removed the last one)
            self.workdir = Path(tempfile.mkdtemp(prefix=f"coordination-{self.backend}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        for node in self._nodes:
            node.dir = self.workdir / f"node{node.index}"
            node.dir.mkdir(exist_ok=True)
            self._reap_stale(node)

    def _reap_stale(self, node: _Node) -> None:
        """SIGKILL a server left running in this node dir by a crashed earlier run.

        Only a pid from our pid file whose command line names this node dir is killed.
        """
        try:
            pid = int(node.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
        except (OSError, ValueError):
            return
        if str(node.dir) in cmdline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(_POLL)

    def _check_ports_free(self) -> None:
        for node in self._nodes:
            for port in (node.client_port, node.peer_port, node.election_port):
                if port and not _port_free(port):
                    raise RuntimeError(f"port {HOST}:{port} for node {node.index} is in use")

    def _launch(self, node: _Node) -> None:
        """Start node's server process (its config must exist); no waiting."""
        with node.log.open("ab") as log:
            log.write(f"\n=== coordination.lab.cluster: starting node {node.index} ===\n".encode())
            log.flush()
            if self.cgroups and node.cgroup is None:
                node.cgroup = peercut.make_cgroup(f"{self._token}-n{node.index}")
            node.proc = subprocess.Popen(
                peercut.joining(node.cgroup, self._impl.command(node)),
                cwd=node.dir,
                env=self._impl.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the test terminal must not hit servers
            )
        node.paused = False
        node.pidfile.write_text(f"{node.proc.pid}\n")
        self._save_if_persistent()

    def _signal(self, node: _Node, sig: signal.Signals) -> None:
        if node.proc is not None and node.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.proc.pid, sig)

    def _terminate(self, nodes: list[_Node], grace: float) -> None:
        """SIGTERM ``nodes`` (SIGCONT if paused), SIGKILL whatever outlives ``grace``."""
        for node in nodes:
            self._signal(node, signal.SIGTERM)
            if node.paused:
                self._signal(node, signal.SIGCONT)
        deadline = time.monotonic() + grace
        for node in nodes:
            self._wait_exit(node, max(0.0, deadline - time.monotonic()), kill_after=True)

    def _wait_exit(self, node: _Node, timeout: float, kill_after: bool) -> None:
        assert node.proc is not None
        try:
            node.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if not kill_after:
                raise RuntimeError(
                    f"node {node.index} (pid {node.proc.pid}) did not exit"
                ) from None
            self._signal(node, signal.SIGKILL)
            node.proc.wait(timeout=30)

    def _wait_all_serving(self, timeout: float) -> None:
        self._wait_until(self._healthy, timeout, "the cluster to become healthy", self._nodes)

    def _wait_until(
        self, predicate: Callable[[], bool], timeout: float, what: str, watch: list[_Node]
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
            time.sleep(_POLL)

    def _log_tails(self) -> str:
        parts = []
        for node in self._nodes:
            state = "paused" if node.paused else ("running" if node.running() else "down")
            parts.append(f"--- node {node.index} ({state}) {node.log} ---\n{_tail(node.log)}")
        return "\n".join(parts)
