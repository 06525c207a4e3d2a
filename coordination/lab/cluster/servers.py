"""What differs between a ZooKeeper and an etcd node: config, command line, probes.

``Backend`` is the interface a LocalCluster drives; ``ZooKeeper`` and ``Etcd`` run the
Debian packages' servers in plaintext (``secure_servers.py`` derives their TLS-only
variants). Probes are read from the servers' own answers: ZooKeeper's four-letter words
(``srvr``, ``ruok``, ``mntr``) and etcd's HTTP pages. Debian's etcd build has no gRPC
JSON gateway (every /v3/... URL answers 404), so the leader is read from the
``etcd_server_is_leader`` metric, not /v3/maintenance/status.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ports import HOST
from .probes import four_letter, http_text
from .process import Node
from .templates import load_template, render

if TYPE_CHECKING:
    from .core import ClusterCore

BACKENDS = ("zookeeper", "etcd")
INSTALL_HINT = (
    "run `bash backends/install.sh` (Debian packages zookeeper, etcd-server, etcd-client)"
)

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
# Debian's zookeeper.jar lists its dependencies in its manifest Class-Path but has no
# slf4j binding (it would log nothing); these two make it honour log4j.properties.
_ZOOKEEPER_LOG_JARS = ("/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar")


class Backend:
    """The servers of one cluster: ``cluster`` gives the settings (tick, heap, token,
    security), ``nodes`` are all of its nodes, in order."""

    #: Ports each node needs: client, peer and (ZooKeeper) election.
    ports_per_node = 2

    def __init__(self, cluster: ClusterCore, nodes: list[Node]) -> None:
        self.cluster = cluster
        self.nodes = nodes

    def check_installed(self) -> None:
        """RuntimeError (with the install hint) unless the server binaries are there."""
        raise NotImplementedError

    def write_config(self, node: Node) -> None:
        """Write node's config into its dir (which exists)."""
        raise NotImplementedError

    def command(self, node: Node) -> list[str]:
        """The command line that runs node's server."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The servers' environment."""
        return dict(os.environ)

    def prepare(self) -> None:
        """Before start() writes the node configs (the workdir exists); no-op here."""

    def bootstrap(self) -> None:
        """Once, when start() has found the new cluster healthy; no-op here."""

    def serving(self, node: Node) -> bool:
        """The node serves client requests (it is part of a working quorum)."""
        raise NotImplementedError

    def alive(self, node: Node) -> bool:
        """The node answers at all (quorum or not)."""
        raise NotImplementedError

    def leader_rank(self, node: Node) -> int | None:
        """None unless the node believes it leads; then its epoch/term if known, else 0."""
        raise NotImplementedError

    def requests(self, node: Node) -> float:
        """Client requests the node received so far, from its own counters."""
        raise NotImplementedError

    def notifications(self, node: Node) -> float:
        """Watch notifications the node sent to its clients so far."""
        raise NotImplementedError

    def watches(self, node: Node) -> float:
        """Watches the node holds for its clients now."""
        raise NotImplementedError


def _zookeeper_classpath(confdir: Path) -> str:
    """Config dir (for log4j.properties) + Debian's ZooKeeper jar + the log4j binding."""
    jars = [jar for jar in _ZOOKEEPER_LOG_JARS if Path(jar).is_file()]
    return os.pathsep.join([str(confdir), str(ZOOKEEPER_JAR), *jars])


class ZooKeeper(Backend):
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

    def write_config(self, node: Node) -> None:
        data = node.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{node.index + 1}\n")
        servers = "\n".join(
            f"server.{n.index + 1}={HOST}:{n.peer_port}:{n.election_port}" for n in self.nodes
        )
        tick = self.cluster.tick_ms
        cfg = render(
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

    def command(self, node: Node) -> list[str]:
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

    def word(self, node: Node, word: str) -> str | None:
        """The node's reply to a four-letter word, None if it did not answer."""
        return four_letter(node.client_port, word)

    def _srvr(self, node: Node) -> dict[str, str]:
        reply = self.word(node, "srvr") or ""
        return dict(
            (key.strip(), value.strip())
            for key, sep, value in (line.partition(":") for line in reply.splitlines())
            if sep
        )

    def serving(self, node: Node) -> bool:
        # A node without quorum answers "This ZooKeeper instance is not currently serving
        # requests" and no Mode line.
        return self._srvr(node).get("Mode") in ("leader", "follower", "observer", "standalone")

    def alive(self, node: Node) -> bool:
        return self.word(node, "ruok") == "imok"

    def leader_rank(self, node: Node) -> int | None:
        info = self._srvr(node)
        if info.get("Mode") not in ("leader", "standalone"):
            return None
        try:
            return int(info.get("Zxid", "0x0"), 16) >> 32  # epoch
        except ValueError:
            return 0

    def requests(self, node: Node) -> float:
        return float(self._mntr(node).get("zk_packets_received", 0))

    def notifications(self, node: Node) -> float:
        # Per event, the server records how many watchers it fired: these are the sums.
        counters = self._mntr(node)
        return sum(float(counters.get(f"zk_sum_node_{event}_watch_count", 0))
                   for event in ("created", "deleted", "changed", "children"))

    def watches(self, node: Node) -> float:
        return float(self._mntr(node).get("zk_watch_count", 0))

    def _mntr(self, node: Node) -> dict[str, str]:
        lines = (self.word(node, "mntr") or "").splitlines()
        return dict(line.split("\t", 1) for line in lines if "\t" in line)


class Etcd(Backend):
    def binary(self) -> str:
        found = shutil.which("etcd") or next(
            (p for p in ("/usr/bin/etcd", "/usr/local/bin/etcd") if os.access(p, os.X_OK)), None
        )
        if found is None:
            raise RuntimeError(f"etcd not found on PATH; {INSTALL_HINT}")
        return found

    def check_installed(self) -> None:
        self.binary()

    def url(self, port: int) -> str:
        """The node URL of ``port`` (client or peer)."""
        return f"http://{HOST}:{port}"

    def get_text(self, url: str) -> str | None:
        """GET a text page; None on any network or HTTP error."""
        return http_text(url)

    def _get_json(self, url: str) -> Any:
        text = self.get_text(url)
        try:
            return None if text is None else json.loads(text)
        except ValueError:
            return None

    def write_config(self, node: Node) -> None:
        (node.dir / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
        initial = ",".join(f"n{n.index}={self.url(n.peer_port)}" for n in self.nodes)
        cfg = render(
            "etcd/etcd.conf.yml",
            name=f"n{node.index}",
            data_dir=node.dir / "data",
            client_url=self.url(node.client_port),
            peer_url=self.url(node.peer_port),
            initial_cluster=initial,
            cluster_token=self.cluster.token,
        )
        (node.dir / "etcd.conf.yml").write_text(cfg)

    def command(self, node: Node) -> list[str]:
        return [self.binary(), "--config-file", str(node.dir / "etcd.conf.yml")]

    def env(self) -> dict[str, str]:
        # etcd rejects unknown/conflicting ETCD_* variables; the config file says it all.
        return {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}

    def serving(self, node: Node) -> bool:
        # /health in etcd 3.4 is true only with a leader and a working quorum.
        health = self._get_json(f"{self.url(node.client_port)}/health")
        return isinstance(health, dict) and health.get("health") in ("true", True)

    def alive(self, node: Node) -> bool:
        # A member restarted without quorum never becomes "ready", and etcd serves its
        # client port only when ready; the peer port answers /version from the start.
        version = self._get_json(f"{self.url(node.peer_port)}/version")
        return isinstance(version, dict) and "etcdserver" in version

    def leader_rank(self, node: Node) -> int | None:
        metrics = self.get_text(f"{self.url(node.client_port)}/metrics") or ""
        return 0 if re.search(r"^etcd_server_is_leader 1$", metrics, re.MULTILINE) else None

    def requests(self, node: Node) -> float:
        # Every message a client sent: unary calls and stream messages (watch creates
        # and cancels, lease keep-alives).
        metrics = self.get_text(f"{self.url(node.client_port)}/metrics") or ""
        return sum(float(v) for v in re.findall(
            r"^grpc_server_msg_received_total\{[^}]*\} (\S+)$", metrics, re.MULTILINE))

    def notifications(self, node: Node) -> float:
        metrics = self.get_text(f"{self.url(node.client_port)}/metrics") or ""
        found = re.search(r"^etcd_debugging_mvcc_events_total (\S+)$", metrics, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def watches(self, node: Node) -> float:
        metrics = self.get_text(f"{self.url(node.client_port)}/metrics") or ""
        found = re.search(r"^etcd_debugging_mvcc_watcher_total (\S+)$", metrics, re.MULTILINE)
        return float(found.group(1)) if found else 0.0


#: The plaintext server classes by backend name.
BACKEND_CLASSES: dict[str, type[Backend]] = {"zookeeper": ZooKeeper, "etcd": Etcd}
