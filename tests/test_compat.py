"""The private API of the client libraries that the drivers use (``compat.py`` of each)
is there, in a release it was tested with: a new kazoo or pyetcd fails here, loudly,
before it fails in a session."""

from __future__ import annotations

from importlib.metadata import version

import pytest


def test_kazoo_has_what_the_zookeeper_driver_uses() -> None:
    pytest.importorskip("kazoo")
    from kazoo.client import KazooClient

    from coordination.backends.zookeeper import compat

    client = KazooClient(hosts="127.0.0.1:1")
    assert compat.missing(client) == []
    assert version("kazoo") in compat.TESTED, (
        "a kazoo release compat.py was not tested with: check its wrappers, then add it to TESTED")


def test_pyetcd_has_what_the_etcd_driver_uses() -> None:
    pyetcd = pytest.importorskip("pyetcd")
    from coordination.backends.etcd import compat

    client = pyetcd.MultiEndpointEtcd3Client(
        endpoints=[pyetcd.Endpoint("127.0.0.1", 1, secure=False)], timeout=1, failover=True)
    try:
        assert compat.missing(client) == []
    finally:
        client.close()
    assert version("etcd-sdk-python") in compat.TESTED, (
        "a pyetcd release compat.py was not tested with: check it, then add it to TESTED")
