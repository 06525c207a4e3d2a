"""Cut a local server off from its peers, as a network partition would, on loopback.

The node keeps running and keeps its client connections; every packet it exchanges
with the other members (either direction, on connections opened by either side) is
dropped until the cut is healed. Needs root, ``iptables`` with the ``cgroup`` and
``connmark`` matches, and a writable cgroup v2 hierarchy (all on Debian 12 as root).

How: each node of a :class:`~coordination.lab.cluster.LocalCluster` started with
``cgroups=True`` runs in a cgroup of its own, joined before its server starts (a
socket belongs to the cgroup of the process that opened it). On loopback every packet
leaves through the OUTPUT chain of the process that sends it, so one chain per cut:

    -m cgroup --path NODE_CGROUP ! client port  -> CONNMARK --set-mark MARK
    -m connmark --mark MARK                     -> DROP

marks every peer connection the isolated node sends on (its own, and those it
accepted), then drops every packet of a marked connection, whoever sends it. Healing
deletes the chain; TCP retransmits and the connections recover or time out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

#: Where a cgroup v2 hierarchy is mounted: the unified one of a hybrid setup, or the root.
_CGROUP2_MOUNTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
_OUR_GROUP = "coordination-clusters"


def cgroup2_root() -> Path | None:
    """The mounted, writable cgroup v2 hierarchy, or None."""
    for mount in _CGROUP2_MOUNTS:
        if (mount / "cgroup.procs").exists() and (mount / "cgroup.controllers").exists() \
                and os.access(mount, os.W_OK):
            return mount
    return None


def unavailable() -> str | None:
    """Why cuts cannot be made on this machine, or None if they can."""
    if os.geteuid() != 0:
        return "cutting peer links needs root (iptables)"
    if shutil.which("iptables") is None:
        return "cutting peer links needs iptables (apt-get install iptables)"
    if cgroup2_root() is None:
        return "cutting peer links needs a writable cgroup v2 hierarchy"
    return None


def make_cgroup(name: str) -> Path | None:
    """A new cgroup for one server (``None`` where cuts are unavailable)."""
    root = cgroup2_root()
    if unavailable() is not None or root is None:
        return None
    path = root / _OUR_GROUP / name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path


def remove_cgroup(path: Path) -> None:
    """Remove a server's cgroup once its processes are gone (best effort)."""
    try:
        path.rmdir()
    except OSError:
        pass


def joining(path: Path | None, command: list[str]) -> list[str]:
    """``command``, run so that it joins cgroup ``path`` before it starts (if joining
    fails, it starts anyway; ``PeerCut`` then refuses to cut it)."""
    if path is None:
        return command
    return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs"; exec "$@"', str(path), *command]


def member(pid: int, path: Path) -> bool:
    """Whether process ``pid`` runs in cgroup ``path``."""
    root = cgroup2_root()
    if root is None:
        return False
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    return f"0::/{path.relative_to(root)}" in lines


class PeerCut:
    """The iptables chain that isolates one server; ``heal()`` removes it."""

    def __init__(self, cgroup: Path, client_port: int) -> None:
        root = cgroup2_root()
        if root is None:
            raise RuntimeError(unavailable() or "no cgroup v2 hierarchy")
        relative = str(cgroup.relative_to(root))
        tag = uuid.uuid4().hex[:8]
        self.chain = f"COORD-CUT-{tag}"
        mark = str(0xC0000000 | int(tag[:6], 16))
        self._iptables("-N", self.chain)
        try:
            self._iptables("-A", self.chain, "-p", "tcp", "-m", "cgroup", "--path", relative,
                           "-m", "multiport", "!", "--ports", str(client_port),
                           "-j", "CONNMARK", "--set-mark", mark)
            self._iptables("-A", self.chain, "-p", "tcp", "-m", "connmark", "--mark", mark,
                           "-j", "DROP")
            self._iptables("-I", "OUTPUT", "-j", self.chain)
        except RuntimeError:
            self.heal()
            raise

    def heal(self) -> None:
        """Let the server's peer traffic through again (idempotent)."""
        for args in (("-D", "OUTPUT", "-j", self.chain), ("-F", self.chain), ("-X", self.chain)):
            try:
                self._iptables(*args)
            except RuntimeError:
                pass

    @staticmethod
    def _iptables(*args: str) -> None:
        done = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"iptables {' '.join(args)}: {done.stderr.strip()}")
