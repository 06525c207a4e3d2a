"""``LocalCluster(backend, secure=True)``: the same local clusters, really secured.

Only TLS ports are served to clients; every client must present a certificate of the
cluster's throwaway CA (``coordination/lab/certs.py`` makes it, in ``WORKDIR/tls``), and
the nodes talk to each other over TLS with their node certificates.

- etcd: https client and peer URLs, ``client-cert-auth`` on both, ``auth-token simple``
  with ``auth_token_ttl`` seconds, bcrypt cost 4; after the first start, users ``root``
  (role root), ``app`` (role ``app``: readwrite on the key prefix ``/app``) and
  ``other`` (``/other``), then ``auth enable``. With client-cert auth a client whose
  request carries no token is the user named by its certificate's CN.
- ZooKeeper: only a ``secureClientPort`` (Netty, ``ssl.clientAuth=need``), quorum TLS,
  digest auth with a super user ``super`` (identity ``root``; the client certificate
  ``CN=root`` is a super user as well) and digest users ``app`` / ``other`` (digest
  auth needs no server-side list); SASL DIGEST-MD5 with the same users and passwords
  (a JAAS file per node), required of every session when ``LocalCluster(...,
  require_sasl=True)``. The lab's own 4-letter-word probes go over TLS too, with the
  root client certificate: there is no plaintext port at all.

Passwords are random, one 0600 file per identity in ``WORKDIR/tls``
(``<identity>.password``); they are never passed on a command line, logged or written
to ``cluster.json``. The lab's probes use the ``root`` client certificate.

This module holds the identities and secrets and what clients get from them
(``Secrets``); the servers' TLS configs and probes are in
``coordination/lab/cluster/secure_servers.py``.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from . import certs

if TYPE_CHECKING:
    from .cluster.core import ClusterCore

#: The identities of a secure cluster: a client certificate (CN = the name) and a
#: password each. ``root`` is etcd's root user and ZooKeeper's super user.
IDENTITIES = ("root", "app", "other")
METHODS = ("password", "cert", "sasl")
TLS_DIR = "tls"
#: ZooKeeper's digest name of the ``root`` identity (superDigest).
ZOOKEEPER_SUPER = "super"


class Secrets:
    """The TLS files and passwords of one secure cluster, under ``WORKDIR/tls``."""

    def __init__(self, cluster: ClusterCore) -> None:
        self.cluster = cluster

    @property
    def dir(self) -> Path:
        if self.cluster.workdir is None:
            raise RuntimeError(f"{self.cluster!r} has no workdir yet (start it first)")
        return self.cluster.workdir / TLS_DIR

    @property
    def files(self) -> certs.TlsFiles:
        return certs.TlsFiles(self.dir)

    def ensure(self) -> None:
        """Certificates and passwords, made once; kept across restarts of the workdir."""
        certs.ensure(self.dir, self.cluster.size, IDENTITIES)
        for identity in IDENTITIES:
            ensure_password(self.password_file(identity))

    def password_file(self, identity: str) -> Path:
        return self.dir / f"{_identity(identity)}.password"

    def password(self, identity: str) -> str:
        return self.password_file(identity).read_text().strip()

    def probe_context(self) -> ssl.SSLContext:
        """TLS client context of the lab's probes: the cluster CA, the root client cert."""
        files = self.files
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
        ctx.load_cert_chain(files.client_cert("root"), files.client_key("root"))
        return ctx

    # --- what clients get ------------------------------------------------------------

    def username(self, identity: str) -> str:
        if self.cluster.backend == "zookeeper" and identity == "root":
            return ZOOKEEPER_SUPER
        return identity

    def client_settings(self, identity: str = "app", method: str = "password") -> dict[str, Any]:
        """Connection settings (``coordination.Config`` field names) for ``identity``.

        ``method="cert"``: TLS with the identity's client certificate, no username or
        password. ``method="password"``: username and password, plus a client
        certificate because the servers require one: on etcd always the ``app``
        certificate (etcd takes the identity from the password's token, not from the
        certificate, when a request carries a token); on ZooKeeper the identity's own
        (its x509 identity ``CN=<identity>`` joins the digest identity in the
        session's auth info, so an ``auth`` ACL stays the identity's own).
        ``method="sasl"`` (ZooKeeper): the password method by SASL DIGEST-MD5.
        """
        identity = _identity(identity)
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
        if method == "sasl" and self.cluster.backend != "zookeeper":
            raise ValueError("method 'sasl' is for ZooKeeper")
        files = self.files
        owner = identity
        if method == "password" and self.cluster.backend == "etcd":
            owner = "app"
        settings: dict[str, Any] = {
            "tls": True,
            "ca": str(files.ca),
            "cert": str(files.client_cert(owner)),
            "key": str(files.client_key(owner)),
        }
        if method != "cert":
            settings["username"] = self.username(identity)
            settings["password"] = self.password(identity)
        if method == "sasl":
            settings["sasl"] = True
        return settings

    def client_url(self, identity: str = "app", namespace: str = "app") -> str:
        """A URL with every setting of ``identity`` (password method): the user before
        the hosts, TLS files and ``password_file`` as parameters; never the password."""
        settings = self.client_settings(identity, method="password")
        query = urlencode({"tls": "true", "ca": settings["ca"], "cert": settings["cert"],
                           "key": settings["key"],
                           "password_file": str(self.password_file(identity))})
        scheme, hosts = self.cluster.url.split("://", 1)
        return f"{scheme}://{quote(settings['username'], safe='')}@{hosts}/{namespace}?{query}"

    def root_settings(self) -> dict[str, Any]:
        """The lab's admin access: etcd's root user by its certificate (CN=root);
        ZooKeeper's super user (certificate CN=root and the ``super`` digest)."""
        if self.cluster.backend == "etcd":
            return self.client_settings("root", method="cert")
        return self.client_settings("root", method="password")

    def write_config(
        self, path: str | os.PathLike[str], identity: str = "app", namespace: str = "app"
    ) -> Path:
        """A ``coordination.toml`` for ``identity`` (password method): TLS settings and
        ``password_file`` (the identity's 0600 file in ``WORKDIR/tls``), never the
        password itself. Its path."""
        settings = self.client_settings(identity, method="password")
        cluster = self.cluster
        hosts = "hosts" if cluster.backend == "zookeeper" else "endpoints"
        lines = [
            f"# Written by LocalCluster.write_config for the secure local cluster in "
            f"{cluster.workdir}",
            f"backend = {_toml(cluster.backend)}",
            f"namespace = {_toml(namespace)}",
            "tls = true",
            f"ca = {_toml(settings['ca'])}",
            f"cert = {_toml(settings['cert'])}",
            f"key = {_toml(settings['key'])}",
            f"username = {_toml(settings['username'])}",
            f"password_file = {_toml(str(self.password_file(identity)))}",
            f"[{cluster.backend}]",
            f"{hosts} = [{', '.join(_toml(e) for e in cluster.endpoints)}]",
        ]
        target = Path(path)
        target.write_text("\n".join(lines) + "\n")
        return target


def ensure_password(path: Path) -> None:
    """A random password in ``path`` (mode 0600) unless there is one."""
    if path.is_file():
        return
    tmp = path.with_name(f".{path.name}.tmp")
    write_private(tmp, secrets.token_urlsafe(18) + "\n")
    os.replace(tmp, path)


def zookeeper_jaas(passwords: dict[str, str]) -> str:
    """A ZooKeeper server JAAS file: SASL DIGEST-MD5 users and their passwords."""
    users = " ".join(f'user_{name}="{password}"' for name, password in passwords.items())
    return (f"Server {{\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n"
            f"    {users};\n}};\n")


def _identity(identity: str) -> str:
    if identity not in IDENTITIES:
        raise ValueError(f"unknown identity {identity!r}; expected one of {IDENTITIES}")
    return identity


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (it holds secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
