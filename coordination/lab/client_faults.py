"""Faults aimed at client processes by pid: kill or freeze (SIGSTOP) a lock holder or a
queue worker, or expire a holder's session on the server. Each is a nemesis fault
(``fault(ctx) -> str``, see :mod:`.nemesis`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .nemesis import Context


def holder_event(ctx: Context, timeout: float = 10.0) -> dict[str, Any]:
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


def kill_process(ctx: Context, proc: subprocess.Popen[bytes], fault: str, text: str) -> str:
    """SIGKILL ``proc`` (by its pid) and reap it; counted as ``fault``, reported as
    ``text``, which it returns."""
    proc.kill()
    proc.wait()
    return ctx.injected(fault, text)


def stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP) right now; False if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()  # the name, in parentheses, may hold spaces
    return bool(fields) and fields[0] == "T"


def thaw(pid: int) -> None:
    """SIGCONT process ``pid``; one that is gone meanwhile is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def holder_kill(ctx: Context) -> str:
    pid = holder_event(ctx)["pid"]
    os.kill(pid, signal.SIGKILL)
    return ctx.injected("holder-kill", f"SIGKILL lock holder {pid}")


def _freeze(ctx: Context, pid: int, fault: str) -> float:
    """SIGSTOP ``pid`` past its session TTL (a GC pause), then SIGCONT; for how long."""
    pause = ctx.ttl * 2.5
    os.kill(pid, signal.SIGSTOP)
    ctx.injected(fault, f"SIGSTOP {pid} (GC pause)")
    ctx.wait(pause)
    thaw(pid)
    return pause


def _any_worker(ctx: Context) -> subprocess.Popen[bytes]:
    """A running worker, chosen by the scenario's seeded random source."""
    return ctx.rng.choice([w for w in ctx.workers if w.poll() is None])


def holder_pause(ctx: Context) -> str:
    pid = holder_event(ctx)["pid"]
    return f"SIGSTOP lock holder {pid} for {_freeze(ctx, pid, 'holder-pause')}s (GC pause)"


def worker_kill(ctx: Context) -> str:
    worker = _any_worker(ctx)
    return kill_process(ctx, worker, "worker-kill", f"SIGKILL worker {worker.pid}")


def worker_pause(ctx: Context) -> str:
    pid = _any_worker(ctx).pid
    return f"SIGSTOP worker {pid} for {_freeze(ctx, pid, 'worker-pause')}s (GC pause)"


def session_expiry(ctx: Context) -> str:
    """Expire a worker's session on the server: ZooKeeper, by closing a second handle
    with its session id and password; etcd, by revoking its lease."""
    holder = holder_event(ctx)
    if ctx.servers.backend == "zookeeper":
        from kazoo.client import KazooClient
        from kazoo.exceptions import KazooException
        from kazoo.handlers.threading import KazooTimeoutError

        twin = KazooClient(hosts=",".join(ctx.servers.endpoints),
                           client_id=(holder["session"], bytes.fromhex(holder["password"])))
        try:
            twin.start(timeout=10)
        except (KazooException, KazooTimeoutError):  # an earlier fault let it expire already
            return f"the ZooKeeper session of holder {holder['pid']} had expired already"
        finally:
            twin.stop()
            twin.close()
        return ctx.injected("session-expiry", f"expired the ZooKeeper session of holder "
                            f"{holder['pid']} on the server")
    revoke = subprocess.run(["etcdctl", f"--endpoints={','.join(ctx.servers.endpoints)}",
                             "lease", "revoke", f"{holder['session']:x}"],
                            capture_output=True, text=True, timeout=10)
    if revoke.returncode != 0:
        if "not found" in revoke.stderr:  # an earlier fault (a pause) let it expire already
            return f"the etcd lease of holder {holder['pid']} had expired already"
        raise RuntimeError(f"etcdctl lease revoke failed: {revoke.stderr.strip()}")
    return ctx.injected("session-expiry",
                        f"revoked the etcd lease of holder {holder['pid']} on the server")
