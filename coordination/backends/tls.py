"""TLS settings for both backends, and the check that names what is wrong.

A TLS problem seen through a client library is a connect that times out (kazoo retries
a failed handshake forever; gRPC reports an unavailable channel). So ``check`` makes one
handshake of its own with the first server that answers, with the same settings, and
raises :class:`~coordination.errors.TLSError` saying which: the server's certificate is
not signed by our CA, or not issued to the name we connect by, the server refused our
client certificate, or it does not speak TLS. ``speaks_tls`` tells a client without TLS
that the server wants it; ``connect`` runs a backend's first connect with both, so that
each is told within ``connect_timeout``.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from typing import TypeVar

from ..config import Config
from ..errors import BackendUnavailable, ConfigError, TLSError

T = TypeVar("T")
#: A client without TLS whose servers did not answer within this many seconds (at most
#: a third of connect_timeout) asks them whether they speak TLS before it goes on.
PLAINTEXT_GRACE = 1.0

#: OpenSSL's verify codes for a certificate issued to another name or address.
_NAME_MISMATCH = {62, 64}
#: Reasons that mean the peer closed or answered something that is not TLS.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNEXPECTED_EOF", "HTTP_REQUEST",
            "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL")
#: Alerts a server sends when it refuses our client certificate (or wants one).
_CLIENT_CERT_REFUSED = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_REQUIRED",
                        "HANDSHAKE_FAILURE", "CERTIFICATE_UNKNOWN", "ACCESS_DENIED")


def context(config: Config) -> ssl.SSLContext:
    """The client context: verify the server against ``ca`` (else the system's CAs) and
    its name; present our certificate if we have one."""
    try:
        ctx = ssl.create_default_context(cafile=config.ca)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"ca file {config.ca!r} holds no usable certificate ({_reason(exc)})") from None
    if config.cert is not None:
        try:
            ctx.load_cert_chain(config.cert, config.key, password=config.key_password)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"cannot load the client certificate {config.cert!r} with key {config.key!r}: "
                f"not a matching pair, or the key needs another key_password ({_reason(exc)})"
            ) from None
    return ctx


def private_key_pem(config: Config) -> bytes | None:
    """Our client key, unencrypted in memory (gRPC takes no key password)."""
    if config.key is None:
        return None
    with open(config.key, "rb") as file:
        data = file.read()
    if config.key_password is None:
        return data
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise ConfigError("an encrypted key (key_password) on etcd needs the 'cryptography' "
                          "package: pip install 'coordination[tls]'") from None
    try:
        key = serialization.load_pem_private_key(data, config.key_password.encode())
    except (ValueError, TypeError):
        raise ConfigError(f"key_password does not open key {config.key!r}") from None
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def connect(config: Config, attempt: Callable[[float], T], timeout: float) -> T:
    """``attempt(seconds)``, a backend's connect, told apart from TLS problems within
    ``timeout`` in all: with TLS, a handshake of our own first (``check``); without,
    if no server answered within ``PLAINTEXT_GRACE``, ``TLSError`` when they speak
    TLS, else a second attempt for the rest of the time. ``attempt`` raises
    ``BackendUnavailable`` when no server answered, and leaves nothing open then."""
    deadline = time.monotonic() + timeout
    if config.tls:
        check(config, timeout)
        return attempt(max(deadline - time.monotonic(), 0.1))
    try:
        return attempt(min(PLAINTEXT_GRACE, timeout / 3))
    except BackendUnavailable:
        wants = speaks_tls(config, timeout=min(1.0, (deadline - time.monotonic()) / 2))
        if wants is not None:
            raise TLSError(f"{wants} speaks TLS: set tls = true (and ca)") from None
    left = deadline - time.monotonic()
    if left <= 0:
        raise BackendUnavailable(f"no server of {config.endpoints} answered within {timeout:g}s")
    return attempt(left)


def check(config: Config, timeout: float) -> None:
    """Raise ``TLSError`` (the cause in words) if a handshake with the first server that
    answers fails. Nothing if no server answers: the backend reports that."""
    ctx = context(config)
    deadline = time.monotonic() + timeout
    for endpoint in config.endpoints:
        host, port = endpoint.rsplit(":", 1)
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            raw = socket.create_connection((host, int(port)), timeout=min(left, 2.0))
        except OSError:
            continue
        name = config.server_name or host
        try:
            with ctx.wrap_socket(raw, server_hostname=name) as conn:
                _await_refusal(conn)
            return
        except ssl.SSLCertVerificationError as exc:
            if exc.verify_code in _NAME_MISMATCH:
                raise TLSError(
                    f"the certificate of {endpoint} is not issued to {name!r}: connect by a "
                    "name it lists, or set server_name to one") from None
            raise TLSError(f"the certificate of {endpoint} is not trusted ({exc.verify_message}): "
                           "is `ca` the CA that signed the servers' certificates?") from None
        except ssl.SSLError as exc:
            raise _from_ssl_error(endpoint, exc, config) from None
        except (TimeoutError, ConnectionError):
            raise TLSError(f"{endpoint} closed the connection during the TLS handshake: a "
                           "plaintext port, or it refused our client certificate") from None
        finally:
            raw.close()


def speaks_tls(config: Config, timeout: float = 2.0) -> str | None:
    """The first endpoint that completes a TLS handshake (certificate unchecked) within
    ``timeout`` in all, else None: for a client without TLS whose connect failed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    for endpoint in config.endpoints:
        host, port = endpoint.rsplit(":", 1)
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            with socket.create_connection((host, int(port)), timeout=left) as raw, \
                    ctx.wrap_socket(raw, server_hostname=host):
                return endpoint
        except ssl.SSLError as exc:  # an alert (no client certificate...) is TLS speaking
            if not any(marker in _reason(exc) for marker in _NOT_TLS):
                return endpoint
        except OSError:
            continue
    return None


def _await_refusal(conn: ssl.SSLSocket) -> None:
    """Under TLS 1.3 a server refuses our certificate after the handshake completed on our
    side: wait briefly for that alert (a server that talks first, or says nothing, passes)."""
    conn.settimeout(0.15)
    try:
        conn.recv(1)
    except (TimeoutError, ssl.SSLWantReadError):
        pass


def _from_ssl_error(endpoint: str, exc: ssl.SSLError, config: Config) -> TLSError:
    reason = _reason(exc)
    if any(marker in reason for marker in _CLIENT_CERT_REFUSED):
        mine = "our client certificate" if config.cert else "a client certificate (set cert and key)"
        return TLSError(f"{endpoint} refused the TLS connection: it wants {mine} signed by a CA "
                        f"it trusts ({reason})")
    if any(marker in reason for marker in _NOT_TLS):
        return TLSError(f"{endpoint} does not speak TLS ({reason}): a plaintext port? "
                        "(unset tls, or use the servers' TLS port)")
    return TLSError(f"TLS handshake with {endpoint} failed ({reason})")


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or type(exc).__name__)
