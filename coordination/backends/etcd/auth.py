"""etcd security: TLS channels and the user's token, renewed when etcd lets it expire.

etcd's simple tokens expire after ``--auth-token-ttl`` of idleness (JWT tokens at a fixed
time); every call then fails with ``invalid auth token`` while the lease keepalive goes
on, so a client would hold locks it can no longer release. The connection's ``call``
turns that error into :class:`TokenExpired`, calls :func:`authenticate` again and
retries. With client-certificate auth (``--client-cert-auth``) and no username, the
certificate's CN is the user and there is no token.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pyetcd
from pyetcd import etcdrpc

from ...config import Config
from ...errors import AuthenticationFailed
from .. import tls
from . import compat

log = logging.getLogger(__name__)


class TokenExpired(Exception):
    """Internal: etcd refused our token (expired, or the auth store changed)."""


def endpoints(config: Config) -> list[pyetcd.Endpoint]:
    """One pyetcd endpoint per server: TLS channels when ``config.tls``, checking the
    server's name (or ``server_name``) against its certificate."""
    creds = None
    # As etcd's own client: a transaction reading many records (a batch claim reads
    # each task's) answers far more than gRPC's default of 4 MiB.
    options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 2**31 - 1)]
    if config.tls:
        root = None
        if config.ca is not None:
            with open(config.ca, "rb") as file:
                root = file.read()
        chain = None
        if config.cert is not None:
            with open(config.cert, "rb") as file:
                chain = file.read()
        creds = grpc.ssl_channel_credentials(root_certificates=root,
                                             private_key=tls.private_key_pem(config),
                                             certificate_chain=chain)
        if config.server_name is not None:
            options.append(("grpc.ssl_target_name_override", config.server_name))
    result = []
    for endpoint in config.endpoints:
        host, port = endpoint.rsplit(":", 1)
        result.append(pyetcd.Endpoint(host, int(port), secure=config.tls, creds=creds,
                                      time_retry=0.5, opts=options))
    return result


def authenticate(client: Any, config: Config) -> None:
    """Get a token for ``config.username`` and send it with every later call of
    ``client``, the watch stream included (it is opened again: a stream keeps the
    token it was opened with). ``AuthenticationFailed`` for a wrong user or password;
    other gRPC errors are raised for the caller to retry or translate."""
    request = etcdrpc.AuthenticateRequest(name=config.username, password=config.password)
    try:
        reply = compat.authenticate(client, request)
    except grpc.RpcError as exc:
        details = exc.details() or ""
        if "authentication failed" in details or "invalid user" in details:
            raise AuthenticationFailed(
                f"etcd refused user {config.username!r}: unknown user or wrong password") from None
        if "authentication is not enabled" in details:
            log.warning("etcd has authentication disabled: connecting without a token")
            return
        raise
    compat.use_token(client, reply.token)


def describe(args: tuple[Any, ...]) -> str:
    """The operation and first key of a request, for a permission error."""
    for arg in args:
        if isinstance(arg, etcdrpc.TxnRequest):
            ops = [getattr(op, op.WhichOneof("request")) for op in arg.success
                   if op.WhichOneof("request")]
            key = next((k.key for k in [*arg.compare, *ops] if k.key), b"")
            return f"a transaction on {key.decode(errors='replace')!r}"
        key = getattr(arg, "key", None)
        if isinstance(key, bytes) and key:
            what = type(arg).__name__.replace("Request", "").lower()
            return f"{what} on {key.decode(errors='replace')!r}"
    return "this request"
