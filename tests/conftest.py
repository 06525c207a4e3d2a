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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("backend") or list(BACKENDS)
        metafunc.parametrize("backend", chosen, scope="session")


_clusters: dict[str, LocalCluster] = {}


@pytest.fixture(scope="session")
def cluster(backend: str) -> Iterator[LocalCluster]:
    """The shared, healthy 3-node cluster of ``backend``. Tests must not break it."""
    if backend not in _clusters:
        _clusters[backend] = LocalCluster(backend, nodes=3).start()
    yield _clusters[backend]


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
    """The cluster's URL with a namespace of its own for this test."""
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
