"""A leader kill on a secured cluster (TLS, client certificates, the app user with its
role; etcd tokens of 3 s), both backends: the lock and queue checkers hold as on a
plaintext cluster, with re-authentication and TLS reconnects in the failover."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coordination.lab import nemesis
from coordination.lab.cluster import LocalCluster
from coordination.lab.scenario import run_lock_scenario, run_queue_scenario

from ..conftest import AUTH_TOKEN_TTL

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

_secured: dict[str, LocalCluster] = {}


@pytest.fixture
def secured_cluster(backend: str) -> Iterator[LocalCluster]:
    """A secured 3-node cluster of ``backend`` for faults, healed after each test."""
    if backend not in _secured:
        _secured[backend] = LocalCluster(backend, nodes=3, secure=True,
                                         auth_token_ttl=AUTH_TOKEN_TTL).start()
    cluster = _secured[backend]
    cluster.wait_healthy()
    yield cluster
    cluster.heal()


@pytest.fixture(scope="module", autouse=True)
def _stop_secured() -> Iterator[None]:
    yield
    for cluster in _secured.values():
        cluster.stop()
    _secured.clear()


@pytest.mark.parametrize("recipe", ["lock", "queue"])
def test_secured_leader_kill(secured_cluster: LocalCluster, recipe: str, tmp_path: Path) -> None:
    run = run_lock_scenario if recipe == "lock" else run_queue_scenario
    verdict = run(secured_cluster, "leader-kill", [nemesis.ALL_FAULTS["leader-kill"]], tmp_path)
    assert verdict.ok, verdict.report()
