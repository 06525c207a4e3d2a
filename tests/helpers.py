"""Small test helpers: polling with a deadline, and contender listings."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import coordination

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.02,
             message: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout}s")
        time.sleep(interval)


def contenders(coord: coordination.Coordinator, lock: coordination.Lock) -> list[str]:
    """Names of the contender nodes/keys currently on the server for ``lock``."""
    return [entry.key for entry in coord.driver.contenders(lock.path)]


def namespace_is_empty(coord: coordination.Coordinator) -> bool:
    """True if nothing at all was written under ``coord``'s namespace."""
    backend = coord.driver
    if coord.backend == "zookeeper":
        return backend.client.exists(f"/{coord.namespace}") is None  # type: ignore[attr-defined]
    return backend.contenders(f"/{coord.namespace}/") == []  # type: ignore[attr-defined]


def entries(coord: coordination.Coordinator, path: str) -> list[tuple[str, bytes]]:
    """``(key, value)`` of the contender entries under ``path``, oldest first."""
    return [(entry.key, entry.value) for entry in coord.driver.contenders(path)]
