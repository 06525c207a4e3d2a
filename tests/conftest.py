"""Fixtures: real 3-node clusters (one per backend per test session), a fresh namespace
per test, and coordinators that are always closed."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

import coordination
from coordination.cluster import LocalCluster

BACKENDS = ("zookeeper", "etcd")
#: Short sessions keep failure tests fast (ZooKeeper tickTime is 500 ms here).
TTL = 2.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend", action="append", choices=BACKENDS,
        help="run contract tests only against this backend (repeatable)",
    )


#: Contract tests that run twice: on a plaintext cluster, and over TLS with a user on a
#: secured one (``LocalCluster(secure=True)``), the same test bodies.
SECURED_MODULES = ("test_lock", "test_queue", "test_counter", "test_election")
#: etcd simple tokens of the secured cluster expire after this many idle seconds, so the
#: contract tests re-authenticate as they go.
AUTH_TOKEN_TTL = 3


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("backend") or list(BACKENDS)
        metafunc.parametrize("backend", chosen, scope="session")
        module = metafunc.module.__name__.rsplit(".", 1)[-1]
        if module in SECURED_MODULES and "cluster" in metafunc.fixturenames:
            metafunc.parametrize("security", ["plain", "secured"], scope="session")


@pytest.fixture(scope="session")
def security() -> str:
    """``"plain"``, or ``"secured"`` where a module's tests also run secured."""
    return "plain"


_clusters: dict[tuple[str, str], LocalCluster] = {}


def shared_cluster(backend: str, security: str) -> LocalCluster:
    """The shared, healthy 3-node cluster of ``backend`` (secured: TLS, client
    certificates, users), started at first use. Tests must not break it."""
    if (backend, security) not in _clusters:
        _clusters[backend, security] = LocalCluster(
            backend, nodes=3, secure=security == "secured", auth_token_ttl=AUTH_TOKEN_TTL).start()
    return _clusters[backend, security]


@pytest.fixture(scope="session")
def cluster(backend: str, security: str) -> LocalCluster:
    """See ``shared_cluster``; ``security`` is parametrized in ``SECURED_MODULES``."""
    return shared_cluster(backend, security)


_fault_clusters: dict[str, LocalCluster] = {}


@pytest.fixture
def fault_cluster(backend: str) -> Iterator[LocalCluster]:
    """A 3-node cluster of ``backend`` of its own, for tests that kill, pause or cut off
    servers: healthy when the test starts, healed (every node back) after it."""
    if backend not in _fault_clusters:
        _fault_clusters[backend] = LocalCluster(backend, nodes=3, cgroups=True).start()
    faulty = _fault_clusters[backend]
    faulty.wait_healthy()
    yield faulty
    faulty.heal()


@pytest.fixture(scope="session", autouse=True)
def _stop_clusters() -> Iterator[None]:
    yield
    for running in [*_clusters.values(), *_fault_clusters.values()]:
        running.stop()


@pytest.fixture
def url(cluster: LocalCluster) -> str:
    """The cluster's URL with a namespace of its own for this test (on a secured
    cluster under ``app``, the prefix the ``app`` user may use)."""
    if cluster.secure:
        return f"{cluster.client_url('app', f'app-{uuid.uuid4().hex[:12]}')}&session_ttl={TTL}"
    return f"{cluster.url}/t{uuid.uuid4().hex[:12]}?session_ttl={TTL}"


@pytest.fixture
def connect(url: str) -> Iterator[Callable[..., coordination.Coordinator]]:
    """``connect(**overrides)`` opens another coordinator on the test's namespace."""
    opened: list[coordination.Coordinator] = []

    def _connect(url_: str | None = None, **overrides: object) -> coordination.Coordinator:
        coord = coordination.connect(url_ or url, **overrides)
        opened.append(coord)
        return coord

    yield _connect
    for coord in opened:
        coord.close()


@pytest.fixture
def coord(connect: Callable[..., coordination.Coordinator]) -> coordination.Coordinator:
    return connect()


@pytest.fixture
def python_env() -> dict[str, str]:
    """Environment for child Python processes that import this checkout."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env
