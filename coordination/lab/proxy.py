"""A TCP proxy on 127.0.0.1 that can cut, stall or drop one direction of a link.

Each client connection gets a pair of pump threads. Modes (switchable at any time):

- ``pass``: bytes flow both ways.
- ``blackhole``: nothing flows either way; connections stay open, so the client sees
  silence, not a reset (a partition, not a crash).
- ``drop_replies``: requests reach the server, replies are discarded: writes commit on
  the server while their replies are lost.
- ``reset``: every connection is closed now and new ones are refused.

``delay`` adds a latency to every chunk of replies.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Literal

Mode = Literal["pass", "blackhole", "drop_replies", "reset"]


class FaultProxy:
    """Listen on ``listen_port`` (0: any free port) and forward to ``target``."""

    def __init__(self, target: tuple[str, int], listen_port: int = 0) -> None:
        self.target = target
        self.mode: Mode = "pass"
        self.delay = 0.0
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", listen_port))
        self._server.listen(128)
        self.port: int = self._server.getsockname()[1]
        self._links: set[socket.socket] = set()
        self._guard = threading.Lock()
        self._closed = threading.Event()
        self._flow = threading.Condition(self._guard)
        threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}").start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_mode(self, mode: Mode, delay: float = 0.0) -> None:
        with self._flow:
            self.mode, self.delay = mode, delay
            self._flow.notify_all()
            if mode == "reset":
                for link in list(self._links):
                    _close(link)
                self._links.clear()

    def heal(self) -> None:
        self.set_mode("pass")

    def close(self) -> None:
        self._closed.set()
        _close(self._server)
        self.set_mode("reset")

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.mode == "reset":
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._guard:
                self._links.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                with self._flow:
                    while self.mode == "blackhole" and not self._closed.is_set():
                        self._flow.wait(0.1)
                    mode, delay = self.mode, self.delay
                if mode == "reset":
                    break
                if replies and mode == "drop_replies":
                    continue
                if replies and delay:
                    time.sleep(delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class ProxiedCluster:
    """One :class:`FaultProxy` per client endpoint of a cluster; ``url`` goes through
    them, so that a client's links can be cut without touching the servers."""

    def __init__(self, backend: str, endpoints: list[str]) -> None:
        self.backend = backend
        self.proxies = [
            FaultProxy((host, int(port))) for host, port in (e.rsplit(":", 1) for e in endpoints)
        ]

    @property
    def url(self) -> str:
        return f"{self.backend}://{','.join(p.endpoint for p in self.proxies)}"

    def set_mode(self, mode: Mode, delay: float = 0.0) -> None:
        for proxy in self.proxies:
            proxy.set_mode(mode, delay)

    def heal(self) -> None:
        self.set_mode("pass")

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()
