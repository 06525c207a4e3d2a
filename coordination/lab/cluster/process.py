"""The server processes of a local cluster's nodes: start, signal, stop, find again.

Processes are tracked by pid only, never by name. Each node's pid is also written to
``nodeN/server.pid`` and its output appended to ``nodeN/server.log``. A pid read back
from a file (another process started the server, or a crashed run left it behind) is
trusted only while that process's command line names the node's dir, so a recycled pid
is never mistaken for one of our servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .. import peercut
from .ports import HOST

#: Seconds between polls while waiting.
POLL = 0.05


def pid_alive(pid: int) -> bool:
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


def proc_state(pid: int) -> str:
    """The one-letter state of ``/proc/PID/stat`` (``T``: stopped), or ``""``."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


def runs_in(pid: int, node_dir: Path) -> bool:
    """True if process ``pid`` lives and its command line names ``node_dir`` (so a
    recycled pid is never mistaken for our server)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return False
    return str(node_dir) in cmdline


class PidProcess:
    """The part of ``subprocess.Popen`` that LocalCluster uses, for a server process that
    another process started (see ``LocalCluster.attach``): tracked by pid only.

    The exit code of a process that is not our child is unknown: ``returncode`` is -1
    once it is gone.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not pid_alive(self.pid):
            self.returncode = -1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(POLL)
        assert self.returncode is not None
        return self.returncode


@dataclass
class Node:
    """One server: its ports, directory and (when started) its process."""

    index: int
    dir: Path
    client_port: int
    peer_port: int
    election_port: int = 0  # ZooKeeper only
    proc: subprocess.Popen[bytes] | PidProcess | None = None
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


def launch(node: Node, command: list[str], env: dict[str, str], cgroup: str | None = None) -> None:
    """Start ``command`` as node's server in its dir (its config must exist), output
    appended to its log, pid written to its pid file; no waiting. With ``cgroup``, the
    server runs in a cgroup of that name (made on the node's first launch)."""
    with node.log.open("ab") as log:
        log.write(f"\n=== coordination.lab.cluster: starting node {node.index} ===\n".encode())
        log.flush()
        if cgroup is not None and node.cgroup is None:
            node.cgroup = peercut.make_cgroup(cgroup)
        node.proc = subprocess.Popen(
            peercut.joining(node.cgroup, command),
            cwd=node.dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the test terminal must not hit servers
        )
    node.paused = False
    node.pidfile.write_text(f"{node.proc.pid}\n")


def send_signal(node: Node, sig: signal.Signals) -> None:
    """Send ``sig`` to node's server if it runs (no-op otherwise)."""
    if node.proc is not None and node.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.proc.pid, sig)


def terminate(nodes: list[Node], grace: float) -> None:
    """SIGTERM ``nodes`` (SIGCONT if paused), SIGKILL whatever outlives ``grace``."""
    for node in nodes:
        send_signal(node, signal.SIGTERM)
        if node.paused:
            send_signal(node, signal.SIGCONT)
    deadline = time.monotonic() + grace
    for node in nodes:
        wait_exit(node, max(0.0, deadline - time.monotonic()), kill_after=True)


def wait_exit(node: Node, timeout: float, kill_after: bool) -> None:
    """Wait up to ``timeout`` for node's started server to exit; then SIGKILL it (with
    ``kill_after``) or raise RuntimeError."""
    assert node.proc is not None
    try:
        node.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if not kill_after:
            raise RuntimeError(
                f"node {node.index} (pid {node.proc.pid}) did not exit"
            ) from None
        send_signal(node, signal.SIGKILL)
        node.proc.wait(timeout=30)


def reap_stale(node: Node) -> None:
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
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(POLL)
