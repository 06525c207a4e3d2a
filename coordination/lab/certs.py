"""Throwaway TLS material for ``LocalCluster(secure=True)``: one job, making the files.

``ensure(directory, nodes, clients)`` writes, once (existing files are reused, so a
cluster restarted from its workdir keeps its certificates):

- ``ca.pem``: a self-signed CA, valid for 30 days. Its private key is never written:
  nothing after this call needs to sign anything.
- ``node<i>.pem`` / ``node<i>-key.pem``: node i's certificate, SAN IP 127.0.0.1 and DNS
  localhost, extended key usage serverAuth *and* clientAuth (so it also serves as the
  peer certificate between the nodes), and ``node<i>-bundle.pem``: key and certificate
  in one file (ZooKeeper's ``ssl.keyStore.type=PEM`` reads both from one location).
- ``client-<name>.pem`` / ``client-<name>-key.pem``: a client certificate with subject
  ``CN=<name>`` (exactly that; ZooKeeper's x509 identity is then ``CN=<name>`` and etcd's
  user is ``<name>``), extended key usage clientAuth.
- ``wrong-ca.pem``: an unrelated CA (its key is discarded): a client trusting only it
  must fail to verify the servers.

Keys are EC P-256 (fast to make, fast handshakes), PKCS#8 PEM without encryption
(what Go, Java's PemReader and Python's ssl all read), files mode 0600; the directory is
0700. Needs the ``cryptography`` package (the ``dev`` extra).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST_IP = "127.0.0.1"
HOST_NAME = "localhost"
VALID_DAYS = 30


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the files that :func:`ensure` writes into ``dir``."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def wrong_ca(self) -> Path:
        return self.dir / "wrong-ca.pem"

    def node_cert(self, i: int) -> Path:
        return self.dir / f"node{i}.pem"

    def node_key(self, i: int) -> Path:
        return self.dir / f"node{i}-key.pem"

    def node_bundle(self, i: int) -> Path:
        """Private key followed by the certificate (a PEM key store)."""
        return self.dir / f"node{i}-bundle.pem"

    def client_cert(self, name: str) -> Path:
        return self.dir / f"client-{name}.pem"

    def client_key(self, name: str) -> Path:
        return self.dir / f"client-{name}-key.pem"

    def all_files(self, nodes: int, clients: Iterable[str]) -> list[Path]:
        files = [self.ca, self.wrong_ca]
        for i in range(nodes):
            files += [self.node_cert(i), self.node_key(i), self.node_bundle(i)]
        for name in clients:
            files += [self.client_cert(name), self.client_key(name)]
        return files


def ensure(directory: str | os.PathLike[str], nodes: int, clients: Iterable[str],
           names: Iterable[str] = ()) -> TlsFiles:
    """Write the CA, node and client certificates into ``directory`` unless they are all
    there already; their paths. Makes everything anew if any file is missing. ``names``:
    more DNS names for the node certificates (hosts of a compose network)."""
    files = TlsFiles(Path(directory))
    clients = tuple(clients)
    files.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(files.dir, 0o700)
    if all(path.is_file() for path in files.all_files(nodes, clients)):
        return files
    _generate(files, nodes, clients, tuple(names))
    return files


# --- generation -------------------------------------------------------------------------


def _generate(files: TlsFiles, nodes: int, clients: tuple[str, ...],
              names: tuple[str, ...]) -> None:
    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    ca_key = key()
    ca_cert = _ca(name("coordination lab CA"), ca_key)
    # Unrelated CA: same kind of certificate, its own key, discarded.
    wrong_key = key()
    _write(files.wrong_ca, _pem_cert(_ca(name("coordination lab wrong CA"), wrong_key)))
    _write(files.ca, _pem_cert(ca_cert))

    for i in range(nodes):
        node_key = key()
        cert = _leaf(
            name(f"coordination lab node {i}"), node_key, ca_cert, ca_key,
            usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            san=[x509.IPAddress(ipaddress.ip_address(HOST_IP)),
                 *(x509.DNSName(n) for n in (HOST_NAME, *names))],
        )
        _write(files.node_cert(i), _pem_cert(cert))
        _write(files.node_key(i), _pem_key(node_key), secret=True)
        _write(files.node_bundle(i), _pem_key(node_key) + _pem_cert(cert), secret=True)

    for client in clients:
        client_key = key()
        cert = _leaf(name(client), client_key, ca_cert, ca_key,
                     usages=[ExtendedKeyUsageOID.CLIENT_AUTH], san=None)
        _write(files.client_cert(client), _pem_cert(cert))
        _write(files.client_key(client), _pem_key(client_key), secret=True)


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.timezone.utc)
    # A little in the past: a clock a few minutes behind still accepts the certificate.
    return now - datetime.timedelta(hours=1), now + datetime.timedelta(days=VALID_DAYS)


def _ca(subject: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    not_before, not_after = _validity()
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    usages: list[x509.ObjectIdentifier],
    san: list[x509.GeneralName] | None,
) -> x509.Certificate:
    not_before, not_after = _validity()
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return bytes(key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))


def _write(path: Path, data: bytes, secret: bool = False) -> None:
    """Write atomically; keys are 0600 from the moment they exist."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mode = 0o600 if secret else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # also when a leftover temp file had another mode
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
