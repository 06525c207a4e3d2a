"""Our suite runs on the fixtures we ship (coordination/lab/pytest_plugin.py): real
3-node clusters (one per backend per test session), a fresh namespace per test,
coordinators that are always closed, and a cluster of its own for fault tests. Here they
get the short names the tests use, and the contract modules run secured too."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import coordination
from coordination.lab.cluster import LocalCluster
from coordination.lab.pytest_plugin import Faults
from coordination.lab.pytest_plugin import shared_cluster as _shared_cluster

from .aio_facade import BlockingCoordinator

#: Short sessions keep failure tests fast (ZooKeeper tickTime is 500 ms here).
TTL = 2.0
#: Contract tests that run twice: on a plaintext cluster, and over TLS with a user on a
#: secured one (``LocalCluster(secure=True)``), the same test bodies.
SECURED_MODULES = ("test_lock", "test_queue", "test_counter", "test_election")
#: Contract tests that run a second time against the async API (``coordination.aio``),
#: the same test bodies, through the sync face of ``tests/aio_facade.py`` (plaintext).
ASYNC_MODULES = ("test_lock", "test_queue", "test_counter")
#: Modules whose tests run on the secured cluster only.
SECURED_ONLY_MODULES = ("test_security",)
#: etcd simple tokens of the secured cluster expire after this many idle seconds, so the
#: contract tests re-authenticate as they go.
AUTH_TOKEN_TTL = 3


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "coordination_cluster" not in metafunc.fixturenames:
        return
    if module in SECURED_MODULES and module in ASYNC_MODULES and "api" in metafunc.fixturenames:
        # The async API talks through the sync API's connection: over TLS once is enough.
        metafunc.parametrize(("coordination_security", "api"),
                             [("plain", "sync"), ("secured", "sync"), ("plain", "async")],
                             indirect=True, scope="session")
    elif module in SECURED_MODULES:
        metafunc.parametrize("coordination_security", ["plain", "secured"], indirect=True,
                            scope="session")
    elif module in SECURED_ONLY_MODULES:
        metafunc.parametrize("coordination_security", ["secured"], indirect=True, scope="session")


@pytest.fixture
def api(request: pytest.FixtureRequest) -> str:
    """Which API the contract test's body talks to: ``sync``, or ``async`` through
    ``tests/aio_facade.py``."""
    return getattr(request, "param", "sync")


@pytest.fixture(scope="session")
def coordination_cluster_options() -> dict[str, Any]:
    return {"auth_token_ttl": AUTH_TOKEN_TTL}


@pytest.fixture(scope="session")
def coordination_client_options() -> dict[str, Any]:
    return {"session_ttl": TTL}


def shared_cluster(backend: str, security: str) -> LocalCluster:
    """The shared cluster of the plugin's fixtures (started at first use)."""
    return _shared_cluster(backend, security, auth_token_ttl=AUTH_TOKEN_TTL)


@pytest.fixture(scope="session")
def backend(coordination_backend: str) -> str:
    return coordination_backend


@pytest.fixture(scope="session")
def cluster(coordination_cluster: LocalCluster) -> LocalCluster:
    return coordination_cluster


@pytest.fixture
def url(coordination_url: str) -> str:
    return coordination_url


@pytest.fixture
def connect(coordination_connect: Callable[..., coordination.Coordinator], url: str,
            api: str) -> Iterator[Callable[..., Any]]:
    if api == "sync":
        yield coordination_connect
        return
    opened: list[BlockingCoordinator] = []

    def _connect(to: str | None = None, **overrides: Any) -> BlockingCoordinator:
        coord = BlockingCoordinator(to or url, **overrides)
        opened.append(coord)
        return coord

    yield _connect
    for coord in opened:
        coord.shutdown()


@pytest.fixture
def coord(connect: Callable[..., coordination.Coordinator]) -> coordination.Coordinator:
    return connect()


@pytest.fixture
def fault_cluster(coordination_faults: Faults) -> Iterator[LocalCluster]:
    """A 3-node cluster of ``backend`` of its own, for tests that kill, pause or cut off
    servers: healthy when the test starts, healed (every node back) after it."""
    yield coordination_faults.cluster


@pytest.fixture
def python_env() -> dict[str, str]:
    """Environment for child Python processes that import this checkout."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env
