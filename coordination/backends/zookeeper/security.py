"""ZooKeeper security: TLS, digest authentication and the ACL of the nodes we create.

Once credentials are given (a digest user, or a client certificate that the ensemble's
x509 provider turns into an identity), every node we create (namespace root, parents,
lock entries, queue records, counters) gets a creator-only ACL by default: another
client of the ensemble can neither read, change nor delete it. ``acl = "public-read"``
lets anyone read (monitoring); ``acl = "open"`` is ZooKeeper's world-writable default.

Digest authentication never fails by itself (the server takes any ``user:password`` as
an identity and checks it only against ACLs), so at connect we compare our identity
with the digest ACL of the namespace root, when it exists: a wrong password is then
told at once, as ``AuthenticationFailed``.

``sasl = true`` authenticates by SASL DIGEST-MD5 instead (the users are in the servers'
JAAS file; the identity in ACLs is ``sasl:<user>``). A wrong password or unknown user
fails the SASL exchange, and an ensemble that requires SASL closes every session that
did not authenticate by it: both are told at connect, as ``AuthenticationFailed``.
"""

from __future__ import annotations

import logging
from typing import Any

from kazoo.exceptions import (
    AuthFailedError,
    NoAuthError,
    NoNodeError,
    SessionClosedRequireSaslError,
)
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.protocol.serialization import Auth
from kazoo.security import (
    CREATOR_ALL_ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    make_digest_acl_credential,
)

from ...config import Config
from ...errors import AuthenticationFailed, ConfigError, PermissionDenied
from . import compat

_ACLS = {"private": CREATOR_ALL_ACL, "public-read": CREATOR_ALL_ACL + READ_ACL_UNSAFE,
         "open": OPEN_ACL_UNSAFE}


class _NamedHandler(SequentialThreadingHandler):
    """kazoo's handler, checking the servers' certificates against ``server_name``
    instead of the host we connect by (certificates issued to a name, hosts by IP)."""

    def __init__(self, server_name: str) -> None:
        super().__init__()
        self._server_name = server_name

    def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["hostname"] = self._server_name
        return super().create_connection(*args, **kwargs)


class _HideAuth(logging.Filter):
    """kazoo logs every request it sends at its lowest levels, the digest ``Auth`` packet
    (``user:password``) included: show those without the credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, Auth) for a in record.args):
            record.args = tuple("Auth(<hidden>)" if isinstance(a, Auth) else a for a in record.args)
        return True


_HIDE_AUTH = _HideAuth()


def prepare(client: Any) -> None:
    """Before ``client`` starts: keep its log lines free of our password, and make a
    refused SASL exchange stop it."""
    _hide_credentials(client)
    _end_refused_sasl(client)


def _hide_credentials(client: Any) -> None:
    """Keep ``client``'s log lines free of our password (see ``_HideAuth``)."""
    logger = getattr(client, "logger", None)
    if isinstance(logger, logging.Logger) and _HIDE_AUTH not in logger.filters:
        logger.addFilter(_HIDE_AUTH)


def client_options(config: Config) -> dict[str, Any]:
    """``KazooClient`` keyword arguments for TLS, digest auth and the default ACL."""
    options: dict[str, Any] = {"default_acl": _ACLS[config.acl or "open"]}
    if config.tls:
        options.update(use_ssl=True, ca=config.ca, certfile=config.cert, keyfile=config.key,
                       keyfile_password=config.key_password, verify_certs=True,
                       check_hostname=True)
        if config.server_name is not None:
            options["handler"] = _NamedHandler(config.server_name)
    if config.sasl:
        try:
            import puresasl  # noqa: F401  (kazoo's SASL needs it)
        except ImportError:
            raise ConfigError("sasl = true needs the pure-sasl package: "
                              "pip install 'coordination[zookeeper]'") from None
        options["sasl_options"] = {"mechanism": "DIGEST-MD5", "username": config.username,
                                   "password": config.password}
    elif config.username is not None:
        options["auth_data"] = [("digest", f"{config.username}:{config.password}")]
    return options


def _end_refused_sasl(client: Any) -> None:
    """Make a refused SASL exchange end the connection attempts as a wrong password
    does. Where SASL is required, kazoo's connection thread dies of the server's
    "session closed, SASL required" answer instead, and requests then fail as a lost
    connection."""

    def refused(exc: Exception) -> Exception | None:
        if isinstance(exc, SessionClosedRequireSaslError):
            return AuthFailedError("SASL authentication refused")
        return None

    compat.on_sasl_exchange(client, refused)


def check_identity(client: Any, config: Config) -> None:
    """``AuthenticationFailed`` if the servers refused our SASL user or require SASL
    of us, or if the namespace root's ACL names our digest user with another password;
    ``PermissionDenied`` if we may not even read it. One request, after which the
    session is known to be authenticated."""
    root = f"/{config.namespace.split('/')[0]}"
    try:
        acls, _stat = client.get_acls(root)
    except NoNodeError:
        return  # made by our first write, with our ACL
    except AuthFailedError:
        raise AuthenticationFailed(
            f"ZooKeeper refused SASL user {config.username!r}: unknown user or wrong "
            "password") from None
    except SessionClosedRequireSaslError:
        raise AuthenticationFailed(
            "the ZooKeeper servers require SASL authentication: set username, password "
            "and sasl = true") from None
    except NoAuthError:
        if config.username is None:
            return  # an anonymous client: its requests will say what they may not do
        raise PermissionDenied(
            f"ZooKeeper denies user {config.username!r} the namespace {root}: it belongs to "
            "another identity, or the password is wrong") from None
    if config.username is None or config.sasl:
        return
    ours = make_digest_acl_credential(config.username, config.password)
    named = [acl.id.id for acl in acls if acl.id.scheme == "digest"
             and acl.id.id.split(":", 1)[0] == config.username]
    if named and ours not in named:
        raise AuthenticationFailed(
            f"ZooKeeper: wrong password for user {config.username!r} (the ACL of {root} "
            "names this user with another one)")


def denied(what: str, path: str, config: Config) -> PermissionDenied:
    who = f"user {config.username!r}" if config.username else (
        "our client certificate" if config.cert else "an anonymous client")
    return PermissionDenied(f"ZooKeeper denied {what} on {path} to {who}: the node's ACL "
                            "does not grant it (made by another identity?)")
