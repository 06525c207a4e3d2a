"""Bad input: typed errors from ``coordination.errors``, raised before any server change;
unreachable servers give ``BackendUnavailable`` within the connect timeout."""

from __future__ import annotations

import socket
import time

import pytest

import coordination
from coordination import errors
from coordination.backends.kv import Delete
from coordination.names import validate_name

BAD_NAMES = [
    "",
    "/lead",
    "trail/",
    "a//b",
    "a/../b",
    "..",
    "a/./b",
    "bell\x07",
    "new\nline",
    "x" * 257,
    "\ud800",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_rejected(name: str) -> None:
    with pytest.raises(errors.InvalidName):
        validate_name(name)


@pytest.mark.parametrize("name", [None, 42, b"bytes", ["a"]])
def test_non_str_names_are_rejected(name: object) -> None:
    with pytest.raises(errors.InvalidName):
        validate_name(name)


def test_good_names() -> None:
    for name in ("a", "inventory/sku-42", "prix-€/été", "a.b_c-d", "x" * 256):
        assert validate_name(name) == name


@pytest.mark.integration
def test_bad_lock_input_changes_nothing_on_the_server(coord: coordination.Coordinator) -> None:
    for name in [*BAD_NAMES, None, 3]:
        with pytest.raises(errors.InvalidName):
            coord.lock(name)  # type: ignore[arg-type]
    lock = coord.lock("fine")
    for timeout in (-1, float("nan"), "5", True):
        with pytest.raises(errors.InvalidArgument):
            lock.acquire(timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        coord.lock("fine", timeout=-2)
    with pytest.raises(errors.InvalidArgument):
        coord.lock("fine", node_style="redis")
    if coord.backend == "etcd":  # Curator's names are ZooKeeper's (was a raw TypeError)
        with pytest.raises(errors.InvalidArgument, match="etcd backend names its lock entries"):
            coord.lock("fine", node_style="curator").acquire(timeout=1)
    assert _namespace_is_empty(coord)


def _namespace_is_empty(coord: coordination.Coordinator) -> bool:
    backend = coord.driver
    if coord.backend == "zookeeper":
        return backend.client.exists(f"/{coord.namespace}") is None  # type: ignore[attr-defined]
    return backend.contenders(f"/{coord.namespace}/") == []  # type: ignore[attr-defined]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("scheme", ["zookeeper", "etcd"])
def test_unreachable_servers_fail_within_connect_timeout(scheme: str) -> None:
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(errors.BackendUnavailable) as raised:
        coordination.connect(f"{scheme}://127.0.0.1:{port}/shop", connect_timeout=1.5)
    assert time.monotonic() - started < 1.5 * 1.1 + 0.5
    if scheme == "etcd":  # the server and gRPC's reason, not only "connection failed"
        assert f"127.0.0.1:{port}: UNAVAILABLE" in str(raised.value)


def test_no_foreign_exception_escapes_config() -> None:
    with pytest.raises(errors.CoordinationError):
        coordination.connect("etcd://127.0.0.1:1/shop?session_ttl=x")


@pytest.mark.integration
def test_a_tampered_ordering_key_is_a_queue_error(coord: coordination.Coordinator) -> None:
    """Another client removed the task count of an ordering key: the ack says so with a
    QueueError (it was an ``assert``, gone under ``python -O``)."""
    queue = coord.queue("orders")
    queue.put(b"step 1", key="order-1")
    task = queue.get(timeout=5)
    assert task is not None
    count_key = queue.layout.key_count("order-1")
    backend = coord.driver
    entry = backend.kv.get(count_key)
    assert entry is not None
    backend.kv.commit([], [Delete(count_key)])
    with pytest.raises(errors.QueueError, match="order-1"):
        task.ack()
