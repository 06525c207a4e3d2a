"""Free TCP ports on the address every local cluster node listens on (``HOST``).

``free_ports(n)`` never hands out the same port twice in one process, and picks ports
below the kernel's ephemeral range so that a client connection cannot take a stopped
node's port as its source port.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

#: The address of every node of a local cluster.
HOST = "127.0.0.1"

_ISSUED: set[int] = set()
_ISSUED_LOCK = threading.Lock()


def port_free(port: int) -> bool:
    """True if nothing is bound to HOST:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


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
            if port in _ISSUED or not port_free(port):
                continue
            _ISSUED.add(port)  # never hand a port to two clusters of this process
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"could not find {count} free ports on {HOST}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _os_chosen_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
