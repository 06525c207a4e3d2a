"""A throwaway Redis server (Debian's ``redis-server``) for the reference figures:
one node, append-only file fsynced every second (its common production setting)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from coordination.lab.cluster import free_ports


class RedisServer:
    """Started on a free 127.0.0.1 port; stopped by its pid."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="bench-redis-"))

    @property
    def available(self) -> bool:
        return self.binary is not None

    def start(self) -> RedisServer:
        self.port = free_ports(1)[0]
        self._proc = subprocess.Popen(
            [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self._dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()  # by the Popen's pid
            self._proc.wait()
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)
