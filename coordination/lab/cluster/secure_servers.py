"""The servers of ``LocalCluster(backend, secure=True)``: TLS-only variants of
``servers.ZooKeeper`` and ``servers.Etcd``, probed over TLS with the root client
certificate. What they enforce, and the identities and secrets they use, are described
in ``coordination/lab/secure.py``.

Importing this module imports ``certs.py`` and so ``cryptography`` (an optional
dependency): only secure clusters import it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING
from urllib import request

from ..secure import IDENTITIES, ZOOKEEPER_SUPER, Secrets, write_private, zookeeper_jaas
from .ports import HOST
from .probes import http_text
from .process import Node
from .servers import INSTALL_HINT, Backend, Etcd, ZooKeeper

if TYPE_CHECKING:
    from .core import ClusterCore

#: Seconds for one probe of one node. Longer than the plaintext probes' 0.5 s: a TLS
#: handshake with a JVM that has just started (cold JIT, 2 cores shared with the other
#: nodes) takes more than a second, and a probe that gives up mid-handshake leaves the
#: node no warmer; with 0.5 s a ZooKeeper cluster took 20 s to be found healthy.
#: Paused nodes are never probed, so only a node hung otherwise costs this long.
PROBE_TIMEOUT = 3.0
#: Netty jars that Debian's zookeeper.jar manifest does not list but the Netty server
#: (``NettyServerCnxnFactory``, needed for a TLS client port) loads.
NETTY_JARS = tuple(
    f"/usr/share/java/netty-{name}.jar"
    for name in ("codec", "resolver", "transport-native-unix-common")
)


def backend_class(backend: str) -> type[Backend]:
    """The secure server class of ``backend`` (``"zookeeper"`` or ``"etcd"``)."""
    return {"zookeeper": SecureZooKeeper, "etcd": SecureEtcd}[backend]


# --- ZooKeeper ----------------------------------------------------------------------------


def tls_four_letter(
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


class SecureZooKeeper(ZooKeeper):
    """Only a TLS client port (Netty, client certificate required), quorum TLS, a digest
    and x509 super user, SASL DIGEST-MD5 users from a JAAS file."""

    FACTORY = "org.apache.zookeeper.server.NettyServerCnxnFactory"
    X509 = "org.apache.zookeeper.server.auth.X509AuthenticationProvider"
    SASL = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"

    def __init__(self, cluster: ClusterCore, nodes: list[Node]) -> None:
        super().__init__(cluster, nodes)
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

    def write_config(self, node: Node) -> None:
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

    def command(self, node: Node) -> list[str]:
        cmd = super().command(node)
        cp = cmd.index("-cp") + 1
        cmd[cp] = os.pathsep.join([cmd[cp], *NETTY_JARS])
        cmd.insert(cp - 1, f"-Djava.security.auth.login.config={self._jaas}")
        return cmd

    def word(self, node: Node, word: str) -> str | None:
        if self._ctx is None:
            self._ctx = self.secrets.probe_context()
        return tls_four_letter(node.client_port, word, self._ctx)


# --- etcd ---------------------------------------------------------------------------------


class SecureEtcd(Etcd):
    """https client and peer URLs with client-cert-auth on both, simple auth tokens,
    users and roles made by ``bootstrap()`` with etcdctl."""

    def __init__(self, cluster: ClusterCore, nodes: list[Node]) -> None:
        super().__init__(cluster, nodes)
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

    def url(self, port: int) -> str:
        return f"https://{HOST}:{port}"

    def write_config(self, node: Node) -> None:
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

    def get_text(self, url: str) -> str | None:
        if self._opener is None:
            self._opener = request.build_opener(
                request.ProxyHandler({}),
                request.HTTPSHandler(context=self.secrets.probe_context()),
            )
        return http_text(url, PROBE_TIMEOUT, self._opener)

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
            f"--endpoints={','.join(self.url(n.client_port) for n in self.nodes)}",
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
