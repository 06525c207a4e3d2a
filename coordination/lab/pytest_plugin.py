"""pytest fixtures to test a service against real local ZooKeeper and etcd clusters.

Installed with the package (a ``pytest11`` entry point), so a project that depends on
``coordination`` and runs pytest has these fixtures with no conftest of its own:

- ``coordination_backend``: ``"zookeeper"`` or ``"etcd"``; a test that uses any fixture
  below runs once per backend chosen with ``--coordination-backend`` (repeatable; default
  both, or the ``coordination_backends`` ini setting).
- ``coordination_cluster``: a healthy 3-node :class:`LocalCluster` of that backend, one
  per test session (``coordination_nodes`` ini setting for another size), shared by the
  tests, which must not break it. With ``coordination_security`` parametrized
  (indirectly) to ``"secured"`` it is a secured one (TLS, client certificates, users).
- ``coordination_url``: the cluster's URL with a namespace of its own for this test.
- ``coordination_connect``: ``connect(**overrides)`` opens a coordinator on that
  namespace; every coordinator it opened is closed after the test.
- ``coordinator``: one such coordinator.
- ``coordination_faults``: a :class:`Faults` handle on a cluster of its own (cgroups,
  so root for ``isolate``): kill, pause or isolate the leader or any node; every fault
  is healed after the test.

Override ``coordination_cluster_options`` (keyword arguments of ``LocalCluster``) or
``coordination_client_options`` (URL query settings, e.g. ``{"session_ttl": 2}``) in a
conftest to tune them. Clusters stop when the session ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest

from .cluster import BACKENDS

if TYPE_CHECKING:
    from ..client import Coordinator
    from .cluster import LocalCluster

_shared: dict[tuple[str, str], LocalCluster] = {}
_faulty: dict[str, LocalCluster] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("coordination", "coordination: real local clusters")
    group.addoption(
        "--coordination-backend", action="append", choices=BACKENDS,
        help="run tests that use the coordination fixtures against this backend only "
             "(repeatable; default: the coordination_backends ini setting, else both)",
    )
    parser.addini("coordination_backends", "backends to test against (default: both)",
                  type="args", default=list(BACKENDS))
    parser.addini("coordination_nodes", "nodes per shared local cluster", default="3")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "coordination_backend" in metafunc.fixturenames:
        config = metafunc.config
        chosen = config.getoption("coordination_backend") or config.getini("coordination_backends")
        metafunc.parametrize("coordination_backend", chosen, scope="session")


def pytest_sessionfinish(session: pytest.Session) -> None:
    for running in [*_shared.values(), *_faulty.values()]:
        running.stop()
    _shared.clear()
    _faulty.clear()


@pytest.fixture(scope="session")
def coordination_security(request: pytest.FixtureRequest) -> str:
    """``"plain"``, or ``"secured"`` where a test parametrizes it so, indirectly:
    ``@pytest.mark.parametrize("coordination_security", ["secured"], indirect=True)``
    (then the cluster fixture changes with it)."""
    return str(getattr(request, "param", "plain"))


@pytest.fixture(scope="session")
def coordination_cluster_options() -> dict[str, Any]:
    """Extra keyword arguments for every ``LocalCluster`` the fixtures start."""
    return {}


@pytest.fixture(scope="session")
def coordination_client_options() -> dict[str, Any]:
    """Settings added to ``coordination_url``'s query (``session_ttl``, ...)."""
    return {}


def shared_cluster(backend: str, security: str = "plain", **options: Any) -> LocalCluster:
    """The shared, healthy cluster of ``backend``, started at first use and stopped when
    the test session ends."""
    from .cluster import LocalCluster

    if (backend, security) not in _shared:
        _shared[backend, security] = LocalCluster(
            backend, secure=security == "secured", **options).start()
    return _shared[backend, security]


@pytest.fixture(scope="session")
def coordination_cluster(request: pytest.FixtureRequest, coordination_backend: str,
                         coordination_security: str,
                         coordination_cluster_options: dict[str, Any]) -> LocalCluster:
    options = {"nodes": int(request.config.getini("coordination_nodes")),
               **coordination_cluster_options}
    return shared_cluster(coordination_backend, coordination_security, **options)


@pytest.fixture
def coordination_url(coordination_cluster: LocalCluster,
                     coordination_client_options: dict[str, Any]) -> str:
    """A URL of the cluster with a fresh namespace (on a secured cluster, one under
    ``app``, the prefix its ``app`` user may use)."""
    cluster = coordination_cluster
    if cluster.secure:
        url = cluster.client_url("app", f"app-{uuid.uuid4().hex[:12]}")
    else:
        url = f"{cluster.url}/t{uuid.uuid4().hex[:12]}"
    if coordination_client_options:
        url += ("&" if "?" in url else "?") + urlencode(coordination_client_options)
    return url


@pytest.fixture
def coordination_connect(coordination_url: str) -> Iterator[Callable[..., Coordinator]]:
    """``connect(url=None, **overrides)``: a coordinator on the test's namespace (or on
    ``url``), closed after the test."""
    from ..client import connect

    opened: list[Coordinator] = []

    def _connect(url: str | None = None, **overrides: Any) -> Coordinator:
        coord = connect(url or coordination_url, **overrides)
        opened.append(coord)
        return coord

    yield _connect
    for coord in opened:
        coord.close()


@pytest.fixture
def coordinator(coordination_connect: Callable[..., Coordinator]) -> Coordinator:
    return coordination_connect()


class Faults:
    """Faults on a cluster that only this test harms; ``heal()`` undoes them all (the
    fixture calls it after the test)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    @property
    def url(self) -> str:
        """A URL of this cluster with a fresh namespace."""
        return f"{self.cluster.url}/t{uuid.uuid4().hex[:12]}"

    def leader(self, timeout: float = 30.0) -> int:
        """The index of the node that leads now (waits for an election)."""
        return self.cluster.wait_for_leader(timeout)

    def kill_leader(self) -> int:
        """SIGKILL the leader; its index."""
        return self._on_leader(self.cluster.kill)

    def pause_leader(self) -> int:
        """SIGSTOP the leader (it keeps its sockets, answers nothing); its index."""
        return self._on_leader(self.cluster.pause)

    def isolate_leader(self) -> int:
        """Cut the leader's links to its peers (clients still reach it); its index."""
        return self._on_leader(self.cluster.isolate)

    def kill(self, i: int) -> None:
        self.cluster.kill(i)

    def pause(self, i: int) -> None:
        self.cluster.pause(i)

    def isolate(self, i: int) -> None:
        self.cluster.isolate(i)

    def heal(self) -> None:
        """Every node back, running and connected; waits until the cluster is healthy."""
        self.cluster.heal()

    def _on_leader(self, fault: Callable[[int], None]) -> int:
        leader = self.leader()
        fault(leader)
        return leader


@pytest.fixture
def coordination_faults(coordination_backend: str,
                        coordination_cluster_options: dict[str, Any]) -> Iterator[Faults]:
    """A :class:`Faults` handle on a 3-node cluster of the backend kept for fault tests
    (healthy when the test starts, healed after it)."""
    from .cluster import LocalCluster

    if coordination_backend not in _faulty:
        options = {**coordination_cluster_options, "nodes": 3, "cgroups": True}
        _faulty[coordination_backend] = LocalCluster(coordination_backend, **options).start()
    cluster = _faulty[coordination_backend]
    cluster.wait_healthy()
    faults = Faults(cluster)
    yield faults
    faults.heal()
