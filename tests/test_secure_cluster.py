"""``LocalCluster(backend, secure=True)`` checked with the real clients: etcdctl with the
cluster's CA and client certificates, kazoo over TLS with digest auth.

One secure 3-node cluster per backend for this module's tests (session fixture
``secure_cluster``; ``backend`` is parametrized by conftest.py). The tests only read and
write keys; the last one looks for the passwords in every file the lab wrote outside
``tls/`` and the data dirs (logs, configs, cluster.json), in ``repr(cluster)`` and in
the config file of ``write_config``. No test prints a password: etcdctl gets it in its
environment, and failing assertions quote return codes, error text and file names only.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordination.lab import cluster as cluster_mod
from coordination.lab.cluster import LocalCluster

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = pytest.mark.integration

IDENTITIES = ("root", "app", "other")


@pytest.fixture(scope="session")
def secure_cluster(backend: str) -> Iterator[LocalCluster]:
    """A secure 3-node cluster of ``backend`` (temp workdir, removed by stop())."""
    cluster = LocalCluster(backend, nodes=3, secure=True)
    cluster.start(timeout=120)
    try:
        cluster.save_state()  # cluster.json, searched for passwords below
        yield cluster
    finally:
        cluster.stop()


def unique(prefix: str) -> str:
    return f"/{prefix}-{uuid.uuid4().hex[:8]}"


# --- etcd: etcdctl --------------------------------------------------------------------------


def etcdctl(
    cluster: LocalCluster, settings: dict[str, Any], *args: str, scheme: str = "https",
    timeout: str = "5s",
) -> tuple[int, str]:
    """Run etcdctl with ``settings`` (ca/cert/key, username/password through the
    environment); (exit code, stdout + stderr). Never returns the command line.
    ``timeout``: etcdctl's --command-timeout (what a refused connection costs)."""
    exe = shutil.which("etcdctl")
    if exe is None:
        pytest.skip("etcdctl not installed (bash backends/install.sh)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    if "username" in settings:
        env["ETCDCTL_USER"] = settings["username"]
        env["ETCDCTL_PASSWORD"] = settings["password"]
    cmd = [exe, "--endpoints=" + ",".join(f"{scheme}://{e}" for e in cluster.endpoints),
           "--dial-timeout=2s", f"--command-timeout={timeout}"]
    for flag, key in (("--cacert", "ca"), ("--cert", "cert"), ("--key", "key")):
        if key in settings:
            cmd.append(f"{flag}={settings[key]}")
    done = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    return done.returncode, done.stdout + done.stderr


def needs(backend: str, cluster: LocalCluster) -> None:
    if cluster.backend != backend:
        pytest.skip(f"{backend} only")


def test_etcd_identities_work_in_their_own_prefix(secure_cluster: LocalCluster) -> None:
    needs("etcd", secure_cluster)
    key = unique("app-x") + "/k"
    by_password = secure_cluster.client_settings("app", method="password")
    rc, out = etcdctl(secure_cluster, by_password, "put", key, "v1")
    assert rc == 0, out
    rc, out = etcdctl(secure_cluster, by_password, "get", key, "--print-value-only")
    assert (rc, out.strip()) == (0, "v1")
    # Client-certificate auth alone: CN=app is the user app.
    by_cert = secure_cluster.client_settings("app", method="cert")
    assert "username" not in by_cert and "password" not in by_cert
    rc, out = etcdctl(secure_cluster, by_cert, "get", key, "--print-value-only")
    assert (rc, out.strip()) == (0, "v1")


def test_etcd_other_prefix_and_wrong_password_are_refused(secure_cluster: LocalCluster) -> None:
    needs("etcd", secure_cluster)
    for method in ("password", "cert"):
        app = secure_cluster.client_settings("app", method=method)
        rc, out = etcdctl(secure_cluster, app, "put", unique("other") + "/k", "x")
        assert rc != 0 and "permission denied" in out, (method, rc, out)
    # `other` by password, presenting the app certificate: the token's user counts.
    other = secure_cluster.client_settings("other", method="password")
    assert other["cert"] == secure_cluster.client_settings("app", method="cert")["cert"]
    rc, out = etcdctl(secure_cluster, other, "put", "/other/k", "x")
    assert rc == 0, out
    rc, out = etcdctl(secure_cluster, other, "get", "/app-x/k")
    assert rc != 0 and "permission denied" in out, (rc, out)

    wrong = {**secure_cluster.client_settings("app"), "password": "not-the-password"}
    rc, out = etcdctl(secure_cluster, wrong, "get", "/app-x/k")
    assert rc != 0 and "authentication failed" in out, (rc, out)


def test_etcd_plaintext_unknown_ca_and_no_client_cert_fail(secure_cluster: LocalCluster) -> None:
    needs("etcd", secure_cluster)
    app = secure_cluster.client_settings("app", method="cert")
    rc, out = etcdctl(secure_cluster, app, "get", "/app-x/k", timeout="2s")
    assert rc == 0, out  # the control: these settings and timeout do work
    for settings, scheme in (({}, "http"), ({**app, "ca": str(secure_cluster.wrong_ca)}, "https"),
                             ({"ca": app["ca"]}, "https")):
        rc, out = etcdctl(secure_cluster, settings, "get", "/app-x/k", scheme=scheme, timeout="2s")
        assert rc != 0, out
    assert cluster_mod.http_text(f"http://{secure_cluster.endpoints[0]}/health") is None


# --- ZooKeeper: kazoo -------------------------------------------------------------------------


def kazoo(cluster: LocalCluster, settings: dict[str, Any] | None, timeout: float = 15.0) -> Any:
    """A started KazooClient with ``settings`` (None: plaintext, no auth)."""
    kazoo_client = pytest.importorskip("kazoo.client")
    hosts = ",".join(cluster.endpoints)
    if settings is None:
        client = kazoo_client.KazooClient(hosts=hosts, timeout=2)
    else:
        auth = ([("digest", f"{settings['username']}:{settings['password']}")]
                if "username" in settings else [])
        client = kazoo_client.KazooClient(
            hosts=hosts, timeout=5, use_ssl=True, ca=settings["ca"],
            certfile=settings.get("cert"), keyfile=settings.get("key"), auth_data=auth)
    try:
        client.start(timeout=timeout)
    except BaseException:
        client.stop()
        client.close()
        raise
    return client


def test_zookeeper_digest_identities(secure_cluster: LocalCluster) -> None:
    needs("zookeeper", secure_cluster)
    from kazoo.exceptions import NoAuthError
    from kazoo.security import make_digest_acl

    app_settings = secure_cluster.client_settings("app")
    assert app_settings["username"] == "app"
    app = kazoo(secure_cluster, app_settings)
    opened = [app]
    try:
        path = unique("app-x")
        acl = [make_digest_acl("app", app_settings["password"], all=True)]
        app.create(path, b"v1", acl=acl)
        assert app.get(path)[0] == b"v1"
        # Digest auth never fails at login; a wrong password is simply another identity.
        for settings in (secure_cluster.client_settings("other"),
                         {**app_settings, "password": "not-the-password"}):
            client = kazoo(secure_cluster, settings)
            opened.append(client)
            with pytest.raises(NoAuthError):
                client.get(path)
        root = kazoo(secure_cluster, secure_cluster.root_settings())  # super
        opened.append(root)
        assert root.get(path)[0] == b"v1"
        app.delete(path)
    finally:
        for client in opened:
            client.stop()
            client.close()


def test_zookeeper_plaintext_unknown_ca_and_no_client_cert_fail(
    secure_cluster: LocalCluster,
) -> None:
    needs("zookeeper", secure_cluster)
    from kazoo.handlers.threading import KazooTimeoutError

    app = secure_cluster.client_settings("app", method="cert")
    control = kazoo(secure_cluster, app, timeout=5)  # these settings do connect
    control.stop()
    control.close()
    for settings in (None, {**app, "ca": str(secure_cluster.wrong_ca)}, {"ca": app["ca"]}):
        with pytest.raises(KazooTimeoutError):
            kazoo(secure_cluster, settings, timeout=2)
    # The lab's plaintext four-letter words get nothing from a TLS port either.
    assert cluster_mod.four_letter(int(secure_cluster.endpoints[0].rsplit(":", 1)[1]), "ruok") != "imok"


# --- both -------------------------------------------------------------------------------------


def test_attach_settings_and_config_file(secure_cluster: LocalCluster, tmp_path: Path) -> None:
    assert secure_cluster.url == f"{secure_cluster.backend}://{','.join(secure_cluster.endpoints)}"
    assert secure_cluster.workdir is not None
    attached = LocalCluster.attach(secure_cluster.workdir)
    assert attached.secure and attached.url == secure_cluster.url
    assert attached.leader() is not None
    assert all(row["serving"] for row in attached.status())

    tls_dir = secure_cluster.workdir / "tls"
    for path in tls_dir.iterdir():
        if path.name.endswith(("-key.pem", "-bundle.pem", ".password")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert secure_cluster.wrong_ca == tls_dir / "wrong-ca.pem" and secure_cluster.wrong_ca.is_file()

    written = secure_cluster.write_config(tmp_path / "coordination.toml", identity="app",
                                          namespace="app-1")
    config = tomllib.loads(written.read_text())
    assert "password" not in config
    settings = secure_cluster.client_settings("app")
    section = "hosts" if secure_cluster.backend == "zookeeper" else "endpoints"
    assert config == {
        "backend": secure_cluster.backend, "namespace": "app-1", "tls": True,
        "ca": settings["ca"], "cert": settings["cert"], "key": settings["key"],
        "username": "app", "password_file": str(tls_dir / "app.password"),
        secure_cluster.backend: {section: secure_cluster.endpoints},
    }
    assert Path(config["password_file"]).read_text().strip() == settings["password"]


def test_no_password_in_state_logs_or_repr(secure_cluster: LocalCluster, tmp_path: Path) -> None:
    """Runs last: the other tests logged in, failed to log in and were refused."""
    workdir = secure_cluster.workdir
    assert workdir is not None
    texts: dict[str, bytes] = {
        "repr": repr(secure_cluster).encode(),
        "repr(attached)": repr(LocalCluster.attach(workdir)).encode(),
        "config file": secure_cluster.write_config(tmp_path / "c.toml").read_bytes(),
    }
    assert (workdir / cluster_mod.STATE_FILE).is_file()
    for path in workdir.rglob("*"):
        relative = path.relative_to(workdir)
        if path.is_file() and relative.parts[0] != "tls" and "data" not in relative.parts:
            texts[str(relative)] = path.read_bytes()
    assert any(name.endswith("server.log") for name in texts)
    for identity in IDENTITIES:
        password = secure_cluster.client_settings(identity)["password"].encode()
        leaks = [name for name, text in texts.items() if password in text]
        assert not leaks, f"the password of {identity} is in {leaks}"
