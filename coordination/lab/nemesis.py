"""Faults, each bounded in time and aimed by pid: servers of a LocalCluster, client
processes (:mod:`.client_faults`), and client links through a ProxiedCluster. Each fault is a function
``fault(ctx) -> str`` that injects, waits, heals, and returns what it did; as it goes,
it counts each injection and reports its steps through the :class:`Context` (for a
live view)."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .client_faults import holder_kill, holder_pause, session_expiry, worker_kill, worker_pause
from .cluster import LocalCluster
from .proxy import ProxiedCluster


@dataclass
class Context:
    """What a fault may touch, and where it reports. ``cluster`` is None where the
    servers are not ours to kill (process faults only), ``proxies`` None where the
    clients connect directly (no network faults): a fault that needs one raises
    ``RuntimeError`` then."""

    cluster: LocalCluster | None
    proxies: ProxiedCluster | None
    ttl: float
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    histories: list[Path] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    log: list[str] = field(default_factory=list)
    #: Once set, the faults' waits end early (a fault still heals what it broke).
    stop: threading.Event = field(default_factory=threading.Event)
    #: Told each step of a fault as it happens (called from the fault's thread).
    on_step: Callable[[str], None] = field(default=lambda _text: None)
    _counts: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def servers(self) -> LocalCluster:
        """The cluster, for a server fault."""
        if self.cluster is None:
            raise RuntimeError("a server fault needs a local cluster; there is none")
        return self.cluster

    @property
    def links(self) -> ProxiedCluster:
        """The client-link proxies, for a network fault."""
        if self.proxies is None:
            raise RuntimeError("a network fault needs the clients' proxies; there are none")
        return self.proxies

    def follower(self) -> int:
        leader = self.servers.wait_for_leader()
        return self.rng.choice([i for i in range(self.servers.size) if i != leader])

    def wait(self, seconds: float) -> None:
        """Let a fault last ``seconds``, or less once :attr:`stop` is set."""
        self.stop.wait(seconds)

    def injected(self, fault: str, text: str) -> str:
        """Count ``fault`` (a name, such as ``"leader-kill"``) as taking effect now and
        report ``text`` (which it returns)."""
        with self._guard:
            self._counts[fault] = self._counts.get(fault, 0) + 1
        self.on_step(text)
        return text

    def counts(self) -> dict[str, int]:
        """The faults that took effect so far, by name (safe from any thread)."""
        with self._guard:
            return dict(self._counts)


Fault = Callable[[Context], str]
#: Longer than both election timeouts (etcd 1 s; ZooKeeper syncLimit 5 x 500 ms ticks).
ELECTION_PAUSE = 3.0


def follower_kill(ctx: Context) -> str:
    node = ctx.follower()
    ctx.servers.kill(node)
    ctx.injected("follower-kill", f"SIGKILL follower {node}")
    ctx.wait(1.0)
    ctx.servers.restart(node)
    return f"SIGKILL follower {node}, restarted"


def leader_kill(ctx: Context) -> str:
    node = ctx.servers.wait_for_leader()
    ctx.servers.kill(node)
    ctx.injected("leader-kill", f"SIGKILL leader {node}")
    ctx.servers.wait_for_leader(exclude=node)
    ctx.servers.restart(node)
    return f"SIGKILL leader {node}, restarted"


def bounce(ctx: Context, leader: bool, down: float = 1.0, timeout: float = 60.0) -> str:
    """:func:`leader_kill` or :func:`follower_kill` gentle enough for a live run: once the
    cluster is healthy (so never two nodes down), SIGKILL its leader (``leader``, if one
    is known right now; else a follower) or a running follower, restart it ``down``
    seconds later, and wait until the cluster is healthy again."""
    cluster = ctx.servers
    cluster.wait_healthy(timeout=timeout)
    current = cluster.leader()
    if leader and current is not None:
        node = current
    else:
        followers = [i for i in range(cluster.size) if i != current and cluster.is_running(i)]
        if not followers:
            return "no running follower to kill"
        node = ctx.rng.choice(followers)
    role = "the leader" if node == current else "a follower"
    cluster.kill(node)
    ctx.injected("leader-kill" if node == current else "follower-kill",
                 f"SIGKILL {cluster.backend} node {node} ({role})")
    ctx.wait(down)
    started = time.monotonic()
    cluster.restart(node, wait=True, timeout=timeout)
    cluster.wait_healthy(timeout=timeout)
    ctx.on_step(f"node {node} restarted, serving again after {time.monotonic() - started:.1f}s")
    return f"SIGKILL {role} (node {node}), restarted, cluster healthy again"


def leader_bounce(ctx: Context) -> str:
    return bounce(ctx, leader=True)


def follower_bounce(ctx: Context) -> str:
    return bounce(ctx, leader=False)


def leader_pause(ctx: Context) -> str:
    node = ctx.servers.wait_for_leader()
    ctx.servers.pause(node)
    ctx.injected("leader-pause", f"SIGSTOP leader {node}")
    ctx.wait(ELECTION_PAUSE)
    ctx.servers.resume(node)
    return f"SIGSTOP leader {node} for {ELECTION_PAUSE}s"


def follower_pause(ctx: Context) -> str:
    node = ctx.follower()
    ctx.servers.pause(node)
    ctx.injected("follower-pause", f"SIGSTOP follower {node}")
    ctx.wait(ELECTION_PAUSE)
    ctx.servers.resume(node)
    return f"SIGSTOP follower {node} for {ELECTION_PAUSE}s"


def quorum_loss(ctx: Context) -> str:
    leader = ctx.servers.wait_for_leader()
    victims = [leader, ctx.follower()]
    for node in victims:
        ctx.servers.kill(node)
    ctx.injected("quorum-loss", f"SIGKILL nodes {victims} (quorum lost)")
    ctx.wait(2.0)
    for node in victims:
        ctx.servers.restart(node, wait=False)
    ctx.servers.wait_healthy()
    return f"SIGKILL nodes {victims} (quorum lost) for 2s, restarted"


def full_restart(ctx: Context) -> str:
    ctx.injected("full-restart", "SIGKILL every node")
    ctx.servers.stop_all_and_restart()
    return "SIGKILL every node, restarted from disk"


def client_partition(ctx: Context) -> str:
    ctx.links.set_mode("blackhole")
    ctx.injected("client-partition", "client links cut")
    ctx.wait(ctx.ttl * 2)
    ctx.links.heal()
    return f"client links cut for {ctx.ttl * 2}s"


def _cut_off(ctx: Context, node: int, role: str) -> str:
    """Cut ``node``'s peer links (iptables, see peercut.py) for longer than the session
    TTL: a minority server that keeps its clients."""
    seconds = ctx.ttl * 2.5
    ctx.servers.isolate(node)
    try:
        ctx.injected(f"{role}-partition", f"peer links of {role} {node} cut")
        ctx.wait(seconds)
    finally:
        ctx.servers.rejoin(node)
    ctx.servers.wait_healthy(60)
    return f"peer links of {role} {node} cut for {seconds:g}s"


def leader_partition(ctx: Context) -> str:
    return _cut_off(ctx, ctx.servers.wait_for_leader(), "leader")


def follower_partition(ctx: Context) -> str:
    return _cut_off(ctx, ctx.follower(), "follower")


def lost_replies(ctx: Context) -> str:
    ctx.links.set_mode("drop_replies")
    ctx.injected("lost-replies", "replies dropped")
    ctx.wait(1.5)
    ctx.links.set_mode("reset")  # the clients reconnect and retry
    ctx.wait(0.2)
    ctx.links.heal()
    return "replies dropped for 1.5s (writes committed, replies lost), links reset"


def compact_history(cluster: LocalCluster) -> int:
    """Compact the etcd history of ``cluster`` at its current revision, as ``etcdctl
    compact`` does (physically: the member that took the request applied it when this
    returns): a watch or read from an older revision fails from then on. The revision."""
    import grpc
    import pyetcd

    errors: list[str] = []
    for endpoint in cluster.endpoints:  # the first member that answers
        host, port = endpoint.rsplit(":", 1)
        client = pyetcd.client(host=host, port=int(port), timeout=5)
        try:
            revision = int(client.get_response(b"/").header.revision)
            client.compact(revision, physical=True)
            return revision
        except grpc.RpcError as exc:
            if "compacted" in (exc.details() or ""):  # nothing written since the last one
                return revision
            errors.append(f"{endpoint}: {exc.code().name} {exc.details()}")
        except pyetcd.Etcd3Exception as exc:
            errors.append(f"{endpoint}: {exc!r}")
        finally:
            client.close()
    raise RuntimeError(f"could not compact the etcd history: {'; '.join(errors)}")


def compaction(ctx: Context) -> str:
    """etcd: compact the history at the current revision, three times 0.3 s apart, so
    that watches resumed from a revision seen before (an election observer's) find it
    gone. ZooKeeper keeps no history: nothing to do."""
    if ctx.servers.backend != "etcd":
        return "compaction: ZooKeeper keeps no history to compact, nothing done"
    revisions = []
    for i in range(3):
        if i:
            ctx.wait(0.3)
        revisions.append(compact_history(ctx.servers))
    return ctx.injected("compaction", f"etcd history compacted at revisions {revisions}")


SERVER_FAULTS: dict[str, Fault] = {
    "follower-kill": follower_kill,
    "leader-kill": leader_kill,
    "leader-pause": leader_pause,
    "follower-pause": follower_pause,
    "quorum-loss": quorum_loss,
    "full-restart": full_restart,
    "compaction": compaction,
}
NETWORK_FAULTS: dict[str, Fault] = {
    "client-partition": client_partition,
    "lost-replies": lost_replies,
    "leader-partition": leader_partition,
    "follower-partition": follower_partition,
}
#: Faults that need ``LocalCluster(cgroups=True)`` on a machine where cuts can be made.
PEER_CUTS = frozenset({"leader-partition", "follower-partition"})
#: Faults that do something on etcd only (elsewhere they are no-ops, not worth a run).
ETCD_ONLY = frozenset({"compaction"})
LOCK_CLIENT_FAULTS: dict[str, Fault] = {
    "holder-kill": holder_kill,
    "holder-pause": holder_pause,
    "session-expiry": session_expiry,
}
ALL_FAULTS: dict[str, Fault] = {**SERVER_FAULTS, **NETWORK_FAULTS, **LOCK_CLIENT_FAULTS,
                                "worker-kill": worker_kill, "worker-pause": worker_pause,
                                "leader-bounce": leader_bounce, "follower-bounce": follower_bounce}
