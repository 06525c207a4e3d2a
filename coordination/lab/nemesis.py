"""Faults, each bounded in time and aimed by pid: servers of a LocalCluster, client
processes, and client links through a ProxiedCluster. Each fault is a function
``fault(ctx) -> str`` that injects, waits, heals, and returns what it did."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cluster import LocalCluster
from .proxy import ProxiedCluster


@dataclass
class Context:
    """What a fault may touch."""

    cluster: LocalCluster
    proxies: ProxiedCluster
    ttl: float
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    histories: list[Path] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    log: list[str] = field(default_factory=list)

    def follower(self) -> int:
        leader = self.cluster.wait_for_leader()
        return self.rng.choice([i for i in range(self.cluster.size) if i != leader])


Fault = Callable[[Context], str]
#: Longer than both election timeouts (etcd 1 s; ZooKeeper syncLimit 5 x 500 ms ticks).
ELECTION_PAUSE = 3.0


def follower_kill(ctx: Context) -> str:
    node = ctx.follower()
    ctx.cluster.kill(node)
    time.sleep(1.0)
    ctx.cluster.restart(node)
    return f"SIGKILL follower {node}, restarted"


def leader_kill(ctx: Context) -> str:
    node = ctx.cluster.wait_for_leader()
    ctx.cluster.kill(node)
    ctx.cluster.wait_for_leader(exclude=node)
    ctx.cluster.restart(node)
    return f"SIGKILL leader {node}, restarted"


def leader_pause(ctx: Context) -> str:
    node = ctx.cluster.wait_for_leader()
    ctx.cluster.pause(node)
    time.sleep(ELECTION_PAUSE)
    ctx.cluster.resume(node)
    return f"SIGSTOP leader {node} for {ELECTION_PAUSE}s"


def follower_pause(ctx: Context) -> str:
    node = ctx.follower()
    ctx.cluster.pause(node)
    time.sleep(ELECTION_PAUSE)
    ctx.cluster.resume(node)
    return f"SIGSTOP follower {node} for {ELECTION_PAUSE}s"


def quorum_loss(ctx: Context) -> str:
    leader = ctx.cluster.wait_for_leader()
    victims = [leader, ctx.follower()]
    for node in victims:
        ctx.cluster.kill(node)
    time.sleep(2.0)
    for node in victims:
        ctx.cluster.restart(node, wait=False)
    ctx.cluster.wait_healthy()
    return f"SIGKILL nodes {victims} (quorum lost) for 2s, restarted"


def full_restart(ctx: Context) -> str:
    ctx.cluster.stop_all_and_restart()
    return "SIGKILL every node, restarted from disk"


def client_partition(ctx: Context) -> str:
    ctx.proxies.set_mode("blackhole")
    time.sleep(ctx.ttl * 2)
    ctx.proxies.heal()
    return f"client links cut for {ctx.ttl * 2}s"


def _cut_off(ctx: Context, node: int, role: str) -> str:
    """Cut ``node``'s peer links (iptables, see peercut.py) for longer than the session
    TTL: a minority server that keeps its clients."""
    seconds = ctx.ttl * 2.5
    ctx.cluster.isolate(node)
    try:
        time.sleep(seconds)
    finally:
        ctx.cluster.rejoin(node)
    ctx.cluster.wait_healthy(60)
    return f"peer links of {role} {node} cut for {seconds:g}s"


def leader_partition(ctx: Context) -> str:
    return _cut_off(ctx, ctx.cluster.wait_for_leader(), "leader")


def follower_partition(ctx: Context) -> str:
    return _cut_off(ctx, ctx.follower(), "follower")


def lost_replies(ctx: Context) -> str:
    ctx.proxies.set_mode("drop_replies")
    time.sleep(1.5)
    ctx.proxies.set_mode("reset")  # the clients reconnect and retry
    time.sleep(0.2)
    ctx.proxies.heal()
    return "replies dropped for 1.5s (writes committed, replies lost), links reset"


def _holder(ctx: Context, timeout: float = 10.0) -> dict[str, Any]:
    """The ``cs`` event of a worker inside its critical section right now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in ctx.histories:
            lines = path.read_text().splitlines() if path.exists() else []
            for line in reversed(lines):
                event = _parse(line)
                if event is None:
                    continue
                if event["op"] == "cs":
                    return event
                if event["op"] in ("write", "release"):
                    break
        time.sleep(0.005)
    raise TimeoutError("no worker entered its critical section")


def _parse(line: str) -> dict[str, Any] | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def holder_kill(ctx: Context) -> str:
    pid = _holder(ctx)["pid"]
    os.kill(pid, signal.SIGKILL)
    return f"SIGKILL lock holder {pid}"


def _freeze(ctx: Context, pid: int) -> float:
    """SIGSTOP ``pid`` past its session TTL (a GC pause), then SIGCONT; for how long."""
    pause = ctx.ttl * 2.5
    os.kill(pid, signal.SIGSTOP)
    time.sleep(pause)
    os.kill(pid, signal.SIGCONT)
    return pause


def _any_worker(ctx: Context) -> int:
    """The pid of a running worker, chosen by the scenario's seeded random source."""
    return ctx.rng.choice([w for w in ctx.workers if w.poll() is None]).pid


def holder_pause(ctx: Context) -> str:
    pid = _holder(ctx)["pid"]
    return f"SIGSTOP lock holder {pid} for {_freeze(ctx, pid)}s (GC pause)"


def worker_kill(ctx: Context) -> str:
    pid = _any_worker(ctx)
    os.kill(pid, signal.SIGKILL)
    return f"SIGKILL worker {pid}"


def worker_pause(ctx: Context) -> str:
    pid = _any_worker(ctx)
    return f"SIGSTOP worker {pid} for {_freeze(ctx, pid)}s (GC pause)"


def session_expiry(ctx: Context) -> str:
    """Expire a worker's session on the server: ZooKeeper, by closing a second handle
    with its session id and password; etcd, by revoking its lease."""
    holder = _holder(ctx)
    if ctx.cluster.backend == "zookeeper":
        from kazoo.client import KazooClient
        from kazoo.exceptions import KazooException
        from kazoo.handlers.threading import KazooTimeoutError

        twin = KazooClient(hosts=",".join(ctx.cluster.endpoints),
                           client_id=(holder["session"], bytes.fromhex(holder["password"])))
        try:
            twin.start(timeout=10)
        except (KazooException, KazooTimeoutError):  # an earlier fault let it expire already
            return f"the ZooKeeper session of holder {holder['pid']} had expired already"
        finally:
            twin.stop()
            twin.close()
        return f"expired the ZooKeeper session of holder {holder['pid']} on the server"
    revoke = subprocess.run(["etcdctl", f"--endpoints={','.join(ctx.cluster.endpoints)}",
                             "lease", "revoke", f"{holder['session']:x}"],
                            capture_output=True, text=True, timeout=10)
    if revoke.returncode != 0:
        if "not found" in revoke.stderr:  # an earlier fault (a pause) let it expire already
            return f"the etcd lease of holder {holder['pid']} had expired already"
        raise RuntimeError(f"etcdctl lease revoke failed: {revoke.stderr.strip()}")
    return f"revoked the etcd lease of holder {holder['pid']} on the server"


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
    if ctx.cluster.backend != "etcd":
        return "compaction: ZooKeeper keeps no history to compact, nothing done"
    revisions = []
    for i in range(3):
        if i:
            time.sleep(0.3)
        revisions.append(compact_history(ctx.cluster))
    return f"etcd history compacted at revisions {revisions}"


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
                                "worker-kill": worker_kill, "worker-pause": worker_pause}
