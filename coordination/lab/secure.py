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
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib import request
from urllib.parse import quote, urlencode

from . import certs
from .cluster import HOST, INSTALL_HINT, _Backend, _Etcd, _Node, _ZooKeeper

if TYPE_CHECKING:
    from .cluster import LocalCluster

#: The identities of a secure cluster: a client certificate (CN = the name) and a
#: password each. ``root`` is etcd's root user and ZooKeeper's super user.
IDENTITIES = ("root", "app", "other")
METHODS = ("password", "cert", "sasl")
TLS_DIR = "tls"
#: ZooKeeper's digest name of the ``root`` identity (superDigest).
ZOOKEEPER_SUPER = "super"
#: Netty jars that Debian's zookeeper.jar manifest does not list but the Netty server
#: (``NettyServerCnxnFactory``, needed for a TLS client port) loads.
#: Seconds for one probe of one node. Longer than the plaintext probes' 0.5 s: a TLS
#: handshake with a JVM that has just started (cold JIT, 2 cores shared with the other
#: nodes) takes more than a second, and a probe that gives up mid-handshake leaves the
#: node no warmer; with 0.5 s a ZooKeeper cluster took 20 s to be found healthy.
#: Paused nodes are never probed, so only a node hung otherwise costs this long.
PROBE_TIMEOUT = 3.0
NETTY_JARS = tuple(
    f"/usr/share/java/netty-{name}.jar"
    for name in ("codec", "resolver", "transport-native-unix-common")
)


class Secrets:
    """The TLS files and passwords of one secure cluster, under ``WORKDIR/tls``."""

    def __init__(self, cluster: LocalCluster) -> None:
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


def backend_class(backend: str) -> type[_Backend]:
    return {"zookeeper": SecureZooKeeper, "etcd": SecureEtcd}[backend]


# --- ZooKeeper ----------------------------------------------------------------------------


def _tls_four_letter(
    port: int, word: str, ctx: ssl.SSLContext, timeout: float = PROBE_TIMEOUT
) -> str | None:
    """A four-letter word over TLS; the reply, or None if the node did not answer."""
    chunks: list[bytes] = []
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as raw:
            raw.settimeout(timeout)
            with ctx.wrap_socket(raw, server_hostname=HOST) as sock:
                sock.sendall(word.encode())
                with contextlib.suppress(ssl.SSLEOFError, ssl.SSLZeroReturnError):
                    # The server closes right after its reply, without a close_notify.
                    while chunk := sock.recv(65536):
                        chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode("utf-8", "replace") if chunks else None


class SecureZooKeeper(_ZooKeeper):
    FACTORY = "org.apache.zookeeper.server.NettyServerCnxnFactory"
    X509 = "org.apache.zookeeper.server.auth.X509AuthenticationProvider"
    SASL = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(cluster)
        self.secrets = Secrets(cluster)
        self._ctx: ssl.SSLContext | None = None

    def check_installed(self) -> None:
        super().check_installed()
        missing = [jar for jar in NETTY_JARS if not Path(jar).is_file()]
        if missing:
            raise RuntimeError(f"{', '.join(missing)} not found (Debian package "
                               f"libnetty-java); {INSTALL_HINT}")

    def prepare(self) -> None:
        self.secrets.ensure()
        self._ctx = None
        write_private(self._jaas, zookeeper_jaas(
            {self.secrets.username(i): self.secrets.password(i) for i in IDENTITIES}))

    @property
    def _jaas(self) -> Path:
        """The servers' SASL users and passwords, with the other secrets."""
        return self.secrets.dir / "zookeeper-jaas.conf"

    def write_config(self, node: _Node) -> None:
        super().write_config(node)
        path = node.dir / "zoo.cfg"
        cfg, replaced = re.subn(r"(?m)^clientPort=.*$", f"secureClientPort={node.client_port}",
                                path.read_text())
        cfg, replaced_host = re.subn(r"(?m)^clientPortAddress=.*$",
                                     f"secureClientPortAddress={HOST}", cfg)
        if replaced != 1 or replaced_host != 1:
            raise RuntimeError("zoo.cfg template: expected one clientPort and one "
                               "clientPortAddress line")
        files = self.secrets.files
        super_pw = self.secrets.password("root")
        digest = base64.b64encode(
            hashlib.sha1(f"{ZOOKEEPER_SUPER}:{super_pw}".encode()).digest()).decode()
        keystore = files.node_bundle(node.index)
        cfg += "\n".join([
            "# --- LocalCluster(secure=True), coordination/lab/secure.py: TLS only ---",
            f"serverCnxnFactory={self.FACTORY}",
            f"ssl.keyStore.location={keystore}",
            "ssl.keyStore.type=PEM",
            f"ssl.trustStore.location={files.ca}",
            "ssl.trustStore.type=PEM",
            "ssl.clientAuth=need",
            "sslQuorum=true",
            f"ssl.quorum.keyStore.location={keystore}",
            "ssl.quorum.keyStore.type=PEM",
            f"ssl.quorum.trustStore.location={files.ca}",
            "ssl.quorum.trustStore.type=PEM",
            f"authProvider.x509={self.X509}",
            "X509AuthenticationProvider.superUser=CN=root",
            # Unknown keys become zookeeper.* system properties: this is
            # -Dzookeeper.DigestAuthenticationProvider.superDigest, kept off the
            # command line (world-readable in /proc) in this 0600 file.
            f"DigestAuthenticationProvider.superDigest={ZOOKEEPER_SUPER}:{digest}",
            # SASL: the users of the JAAS file; its ``super`` is a super user too.
            f"authProvider.sasl={self.SASL}",
            f"superUser={ZOOKEEPER_SUPER}",
            *(["enforce.auth.enabled=true", "enforce.auth.schemes=sasl"]
              if self.cluster.require_sasl else []),
            "",
        ])
        write_private(path, cfg)

    def command(self, node: _Node) -> list[str]:
        cmd = super().command(node)
        cp = cmd.index("-cp") + 1
        cmd[cp] = os.pathsep.join([cmd[cp], *NETTY_JARS])
        cmd.insert(cp - 1, f"-Djava.security.auth.login.config={self._jaas}")
        return cmd

    def _word(self, node: _Node, word: str) -> str | None:
        if self._ctx is None:
            self._ctx = self.secrets.probe_context()
        return _tls_four_letter(node.client_port, word, self._ctx)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (it holds secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


# --- etcd ---------------------------------------------------------------------------------


class SecureEtcd(_Etcd):
    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(cluster)
        self.secrets = Secrets(cluster)
        self._opener: request.OpenerDirector | None = None

    def etcdctl(self) -> str:
        found = shutil.which("etcdctl")
        if found is None:
            raise RuntimeError(f"etcdctl not found on PATH; {INSTALL_HINT}")
        return found

    def check_installed(self) -> None:
        super().check_installed()
        self.etcdctl()

    def prepare(self) -> None:
        self.secrets.ensure()
        self._opener = None

    def _url(self, port: int) -> str:
        return f"https://{HOST}:{port}"

    def write_config(self, node: _Node) -> None:
        super().write_config(node)
        files = self.secrets.files
        tls = [
            f"  cert-file: {files.node_cert(node.index)}",
            f"  key-file: {files.node_key(node.index)}",
            f"  trusted-ca-file: {files.ca}",
            "  client-cert-auth: true",
        ]
        extra = [
            "# --- LocalCluster(secure=True), coordination/lab/secure.py ---",
            "client-transport-security:", *tls,
            "peer-transport-security:", *tls,
            "auth-token: simple",
            f"auth-token-ttl: {self.cluster.auth_token_ttl}",
            "bcrypt-cost: 4",
            "",
        ]
        with (node.dir / "etcd.conf.yml").open("a") as fh:
            fh.write("\n".join(extra))

    def _get_text(self, url: str) -> str | None:
        if self._opener is None:
            self._opener = request.build_opener(
                request.ProxyHandler({}),
                request.HTTPSHandler(context=self.secrets.probe_context()),
            )
        try:
            with self._opener.open(url, timeout=PROBE_TIMEOUT) as resp:
                return str(resp.read().decode("utf-8", "replace"))
        except OSError:
            return None

    # --- users, roles, auth enable --------------------------------------------------------

    def bootstrap(self) -> None:
        """Users root/app/other, roles app and other, auth enable; idempotent (a
        workdir started again keeps its users; their passwords are set anew from the
        password files)."""
        self._user("root")
        self._run("role", "add", "root", tolerate="already exists")
        self._run("user", "grant-role", "root", "root", tolerate="already")
        for name in ("app", "other"):
            self._user(name)
            self._run("role", "add", name, tolerate="already exists")
            self._run("role", "grant-permission", name, "readwrite", f"/{name}", "--prefix=true")
            self._run("user", "grant-role", name, name, tolerate="already")
        self._run("auth", "enable")

    def _user(self, name: str) -> None:
        password = self.secrets.password(name)
        # --interactive=false: etcdctl reads the password from stdin (not on its command
        # line, which every local user can read in /proc).
        if not self._run("user", "add", name, "--interactive=false", stdin=password,
                         tolerate="already exists"):
            self._run("user", "passwd", name, "--interactive=false", stdin=password)

    def _run(self, *args: str, stdin: str | None = None, tolerate: str | None = None) -> bool:
        """etcdctl ARGS as root (client certificate CN=root): True if it succeeded,
        False if it failed with ``tolerate`` in its error; RuntimeError otherwise."""
        files = self.secrets.files
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        env["ETCDCTL_API"] = "3"
        cmd = [
            self.etcdctl(),
            f"--endpoints={','.join(self._url(n.client_port) for n in self.cluster._nodes)}",
            f"--cacert={files.ca}",
            f"--cert={files.client_cert('root')}",
            f"--key={files.client_key('root')}",
            "--dial-timeout=5s",
            "--command-timeout=15s",
            *args,
        ]
        done = subprocess.run(
            cmd, input=None if stdin is None else stdin + "\n", capture_output=True,
            text=True, env=env, timeout=60, check=False,
        )
        if done.returncode == 0:
            return True
        error = (done.stderr or done.stdout).strip()
        if tolerate is not None and tolerate in error:
            return False
        # args never hold a password (those go through stdin)
        raise RuntimeError(f"etcdctl {' '.join(args)} failed: {error}")
