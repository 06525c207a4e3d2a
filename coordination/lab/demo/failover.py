"""How a demo process rides out a failover (a node killed, a leader elected): it
connects, and calls, again until it works; the demo never gives up on its own."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import coordination
from coordination.errors import BackendUnavailable, CoordinationError

from .settings import SESSION_TTL

T = TypeVar("T")


def connect(url: str, give_up: Callable[[], bool]) -> coordination.Coordinator:
    """A coordinator with the demo's session TTL, retrying while the cluster is
    unavailable; ``SystemExit(0)`` once ``give_up()`` (the parent is gone)."""
    while True:
        try:
            return coordination.connect(url, session_ttl=SESSION_TTL)
        except BackendUnavailable:
            if give_up():
                raise SystemExit(0) from None
            time.sleep(0.2)


def retry(fn: Callable[[], T], timeout: float) -> T:
    """``fn()``, called again while it raises a ``CoordinationError``, for up to
    ``timeout`` seconds (then the error is raised)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except CoordinationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
