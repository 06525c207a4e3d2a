"""Plaintext probes of one node, standard library only: ZooKeeper's four-letter words
over TCP and etcd's HTTP pages (/health, /metrics, the peer port's /version).

Each probe has a short timeout and answers None when the node does not answer, so a
dead or paused node never holds up a caller for long. Secure clusters probe over TLS
instead (``secure_servers.py``).
"""

from __future__ import annotations

import http.client
import socket
from urllib import request

from .ports import HOST

#: Seconds for one health/leader probe of one node.
PROBE_TIMEOUT = 0.5

_HTTP = request.build_opener(request.ProxyHandler({}))  # never route 127.0.0.1 via a proxy


def four_letter(port: int, word: str, timeout: float = PROBE_TIMEOUT) -> str | None:
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


def http_text(url: str, timeout: float = PROBE_TIMEOUT,
              opener: request.OpenerDirector = _HTTP) -> str | None:
    """GET a text page (through ``opener``: TLS for a secured node); None on any
    network or HTTP error."""
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):  # e.g. a reply cut off by the node's death
        return None
