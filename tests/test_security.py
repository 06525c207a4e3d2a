"""Secured clusters, both backends (``LocalCluster(secure=True)``: TLS with client
certificates, users, etcd auth with per-prefix roles, ZooKeeper digest and SASL auth,
and a ZooKeeper that requires SASL): another
identity cannot touch our entries, bad credentials and bad TLS fail fast with their
typed error, etcd tokens that expire are renewed, and no secret is ever shown.
(The contract tests of locks, queues, counters and elections also run secured: see
``SECURED_MODULES`` in conftest.py.)"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import coordination
from coordination import errors
from coordination.lab.cluster import LocalCluster

from .conftest import AUTH_TOKEN_TTL

pytestmark = pytest.mark.integration




def _namespace() -> str:
    return f"app-{uuid.uuid4().hex[:10]}"


def _quick(cluster: LocalCluster, **settings: object) -> coordination.Coordinator:
    return coordination.connect(f"{cluster.url}/{settings.pop('namespace', _namespace())}",
                                connect_timeout=5, request_timeout=5, session_ttl=2, **settings)


def test_another_identity_cannot_touch_our_entries(cluster: LocalCluster,
                                                   connect: Callable[..., coordination.Coordinator]
                                                   ) -> None:
    ours = connect()
    lock = ours.lock("sku-1")
    assert lock.acquire(timeout=5)
    queue = ours.queue("orders")
    queue.put(b"order 1", id="o1")
    ours.counter("stock").set(10)
    election = ours.election("e")
    assert election.campaign(b"ours", timeout=5)
    namespace = ours.namespace
    for settings in (cluster.client_settings("other"), cluster.client_settings("other", "cert")):
        try:
            intruder = _quick(cluster, namespace=namespace, **settings)
        except errors.PermissionDenied as refused:  # ZooKeeper: it may not read our root
            assert namespace in str(refused)
            continue
        with intruder:
            with pytest.raises(errors.PermissionDenied) as denied:
                intruder.lock("sku-1").acquire(timeout=1)
            assert namespace in str(denied.value)
            with pytest.raises(errors.PermissionDenied):
                intruder.queue("orders").get(timeout=0)
            with pytest.raises(errors.PermissionDenied):
                intruder.queue("orders").put(b"forged")
            with pytest.raises(errors.PermissionDenied):
                intruder.counter("stock").add(-10)
            with pytest.raises(errors.PermissionDenied):
                intruder.election("e").leader()
        assert lock.held and election.is_leader
    assert ours.counter("stock").value == 10 and election.leader() == b"ours"
    task = queue.get(timeout=5)
    assert task is not None and task.data == b"order 1"
    task.ack()
    lock.ensure_held()
    lock.release()


def test_wrong_password_fails_at_connect_at_once(cluster: LocalCluster,
                                                 connect: Callable[..., coordination.Coordinator]
                                                 ) -> None:
    ours = connect()
    ours.counter("c").add(1)  # the namespace exists, with our ACL on ZooKeeper
    settings = {**cluster.client_settings("app"), "password": "not-the-password"}
    started = time.monotonic()
    with pytest.raises(errors.AuthenticationFailed) as failed:
        _quick(cluster, namespace=ours.namespace, **settings)
    assert time.monotonic() - started < 3
    assert "not-the-password" not in str(failed.value)
    if cluster.backend == "etcd":  # an unknown user too (ZooKeeper digest has no users)
        with pytest.raises(errors.AuthenticationFailed):
            _quick(cluster, **{**settings, "username": "nobody"})


def test_wrong_ca_and_plaintext_fail_fast_saying_which(cluster: LocalCluster) -> None:
    settings = cluster.client_settings("app")
    started = time.monotonic()
    with pytest.raises(errors.TLSError, match="not trusted"):
        _quick(cluster, **{**settings, "ca": str(cluster.wrong_ca)})
    assert time.monotonic() - started < 3
    started = time.monotonic()
    plain = {k: v for k, v in settings.items() if k not in ("tls", "ca", "cert", "key")}
    with pytest.raises(errors.TLSError, match="speaks TLS"):
        _quick(cluster, **plain)
    assert time.monotonic() - started < 5  # within connect_timeout
    with pytest.raises(errors.TLSError, match="issued to"):
        _quick(cluster, **{**settings, "server_name": "not-this-host.example"})


def test_server_name_override(cluster: LocalCluster) -> None:
    """Certificates name ``localhost``; connecting by IP with that name checked works."""
    with _quick(cluster, **{**cluster.client_settings("app"), "server_name": "localhost"}) as coord:
        assert coord.counter("n").add(1) == 1


def test_etcd_token_expiry_during_a_hold_and_a_wait(
        cluster: LocalCluster, connect: Callable[..., coordination.Coordinator]) -> None:
    """The app user's token expires after AUTH_TOKEN_TTL idle seconds; the lease
    keepalive goes on regardless. A holder idle past that still releases, and a waiter
    idle past it still gets the lock."""
    if cluster.backend != "etcd":
        pytest.skip("etcd tokens; ZooKeeper authenticates its session once")
    holder, waiter = connect(), connect()
    lock = holder.lock("long")
    assert lock.acquire(timeout=5)
    got = threading.Event()
    waiting = threading.Thread(
        target=lambda: waiter.lock("long").acquire(timeout=30) and got.set(), daemon=True)
    waiting.start()
    time.sleep(AUTH_TOKEN_TTL * 2 + 1)  # the condition under test: both tokens idle past their TTL
    assert lock.held and not got.is_set()
    lock.release()  # with a fresh token
    assert got.wait(10), "the waiter did not get the lock after the tokens expired"
    assert holder.counter("after").add(1) == 1  # and a new request after the renewal


def test_no_secret_in_reprs_logs_errors_or_files(cluster: LocalCluster, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = cluster.client_settings("app")
    password = str(settings["password"])
    seen: list[str] = [repr(cluster)]
    with _quick(cluster, **settings) as coord:
        seen += [repr(coord), repr(coord.config), str(coord.config), coord.config.url,
                 repr(coord.driver.describe())]
        lock = coord.lock("l")
        with lock:
            seen.append(repr(lock))
    tries = [{**settings, "password": password + "x"}, {**settings, "ca": str(cluster.wrong_ca)}]
    if cluster.backend == "zookeeper":  # SASL, right and wrong
        sasl = cluster.client_settings("app", "sasl")
        tries += [sasl, {**sasl, "password": password + "x"}]
    for attempt in tries:
        try:
            with _quick(cluster, **attempt) as coord:
                seen += [repr(coord), repr(coord.config), repr(coord.driver.describe())]
        except errors.CoordinationError as exc:
            seen.append(f"{exc!r} {exc}")
    config = cluster.write_config(tmp_path / "coordination.toml")
    seen.append(config.read_text())
    with coordination.connect(config=config, namespace=_namespace()) as coord:
        seen.append(repr(coord))
    seen += [record.getMessage() for record in caplog.records]
    # Everything but the password files themselves and the servers' own data (etcd 3.4
    # keeps the requests that created the users in its write-ahead log: see the README).
    files = [p for p in Path(cluster.workdir).rglob("*") if p.is_file()
             and not {"tls", "data"} & set(p.relative_to(cluster.workdir).parts)]
    seen += [p.read_text(errors="replace") for p in files]
    leaks = [text[:200] for text in seen if password in text]
    assert not leaks, f"the password appears in {len(leaks)} places: {leaks[:3]}"


def test_zookeeper_sasl(cluster: LocalCluster) -> None:
    """``sasl = true``: SASL DIGEST-MD5 with the ensemble's JAAS users. Our entries are
    the SASL identity's; another SASL user is kept out; a wrong password and an unknown
    user fail at connect at once."""
    if cluster.backend != "zookeeper":
        pytest.skip("SASL is ZooKeeper's")
    settings = cluster.client_settings("app", "sasl")
    namespace = _namespace()
    with _quick(cluster, namespace=namespace, **settings) as ours, \
            _quick(cluster, namespace=namespace, **settings) as theirs:
        lock = ours.lock("sku-1")
        assert lock.acquire(timeout=5) and not theirs.lock("sku-1").acquire(timeout=0.5)
        ours.queue("orders").put(b"order 1", id="o1")
        task = theirs.queue("orders").get(timeout=5)
        assert task is not None and task.data == b"order 1"
        task.ack()
        assert ours.counter("stock").add(5) == 5 and theirs.counter("stock").add(-1) == 4
        acls, _stat = ours.driver.client.get_acls(f"/{namespace}")
        assert ("sasl", "app") in {(acl.id.scheme, acl.id.id) for acl in acls}
        with pytest.raises(errors.PermissionDenied):
            _quick(cluster, namespace=namespace, **cluster.client_settings("other", "sasl"))
        assert lock.held
    for wrong in ({"password": "not-the-password"},
                  {"username": "nobody", "password": "not-the-password"}):
        started = time.monotonic()
        with pytest.raises(errors.AuthenticationFailed, match="refused SASL user"):
            _quick(cluster, namespace=namespace, **{**settings, **wrong})
        assert time.monotonic() - started < 3


@pytest.fixture(scope="module")
def sasl_only(backend: str) -> Iterator[LocalCluster]:
    """A secured one-node ZooKeeper that accepts only sessions authenticated by SASL."""
    if backend != "zookeeper":
        pytest.skip("SASL is ZooKeeper's")
    cluster = LocalCluster("zookeeper", nodes=1, secure=True, require_sasl=True)
    cluster.start(timeout=120)
    yield cluster
    cluster.stop()


def test_zookeeper_that_requires_sasl(sasl_only: LocalCluster) -> None:
    """Where the ensemble requires SASL, a SASL client works and a client with digest
    auth or a certificate only is told at connect, at once, that SASL is required."""
    settings = sasl_only.client_settings("app", "sasl")
    namespace = _namespace()
    with _quick(sasl_only, namespace=namespace, **settings) as coord:
        with coord.lock("sku-1"):
            assert coord.counter("stock").add(3) == 3
        coord.queue("orders").put(b"order 1")
        assert coord.election("e").campaign(b"me", timeout=5)
    for method in ("password", "cert"):
        started = time.monotonic()
        with pytest.raises(errors.AuthenticationFailed, match="require SASL"):
            _quick(sasl_only, namespace=namespace, **sasl_only.client_settings("app", method))
        assert time.monotonic() - started < 3
