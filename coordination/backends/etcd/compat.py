"""Every use of etcd-sdk-python's (pyetcd's) private API and internal attributes, in
one place, pinned to what was tested.

pyetcd builds no requests for transactions with ranges, cannot take a token obtained
outside its constructor, and marks an endpoint failed (for failover) only inside its
own calls. ``missing()`` names what another pyetcd lacks; ``tests/test_compat.py``
fails loudly on such a release.
"""

from __future__ import annotations

from typing import Any

#: The pyetcd releases this was tested with (``etcd-sdk-python`` on PyPI).
TESTED = ("0.0.7",)
_ATTRIBUTES = ("_manage_grpc_errors", "_clear_old_stubs", "metadata", "call_credentials",
               "kvstub", "authstub", "timeout", "endpoint_in_use")


def missing(client: Any) -> list[str]:
    """The attributes used here that ``client`` (a ``MultiEndpointEtcd3Client``) lacks."""
    return [name for name in _ATTRIBUTES if not hasattr(client, name)]


def mark_failed(client: Any, exc: Exception) -> None:
    """Tell ``client`` that its current endpoint failed with the gRPC error ``exc`` (the
    next call fails over); raises pyetcd's translation of ``exc``."""
    client._manage_grpc_errors(exc)


def endpoint(client: Any) -> str:
    """The ``host:port`` that ``client`` sends its requests to now."""
    return str(client.endpoint_in_use.netloc)


def use_token(client: Any, token: str) -> None:
    """Send ``token`` with every later call of ``client``, the watch stream included
    (it is opened again: a stream keeps the token it was opened with)."""
    client.metadata = (("token", token),)
    client.call_credentials = None  # the token goes as metadata, with or without TLS
    client._clear_old_stubs()


def credentials_sent(client: Any) -> Any:
    """What identifies the token ``client`` sends now (compared by identity)."""
    return client.metadata


def authenticate(client: Any, request: Any) -> Any:
    """etcd's ``Authenticate`` RPC on ``client``'s current endpoint."""
    return client.authstub.Authenticate(request, client.timeout)


def unary(client: Any, stub: str, method: str, request: Any, timeout: float | None) -> Any:
    """One raw gRPC call (``stub`` e.g. ``kvstub``) on ``client``'s current endpoint,
    with its credentials."""
    call = getattr(getattr(client, stub), method)
    return call(request, timeout or client.timeout, credentials=client.call_credentials,
                metadata=client.metadata)
