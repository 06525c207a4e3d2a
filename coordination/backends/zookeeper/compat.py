"""Every use of kazoo's private API, in one place, pinned to what was tested.

kazoo offers no hook for two things we need: the session timeout the servers
negotiated (it only logs it), and a way to end the connection attempts when the
servers refuse our SASL exchange. We wrap two private methods of its connection.
``missing()`` names what a kazoo without them lacks; ``tests/test_compat.py`` fails
loudly on such a kazoo, and the wrappers leave it as it is (the timeout asked for is
used then, and a refused SASL exchange shows as a lost connection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The kazoo releases these wrappers were tested with.
TESTED = ("2.11.0",)
_PRIVATE = {"_connection": ("_connect", "_authenticate_with_sasl"), "": ("_session_id",)}


def missing(client: Any) -> list[str]:
    """The private attributes used here that ``client`` (a ``KazooClient``) lacks."""
    connection: Any = getattr(client, "_connection", None)
    lacking = [] if connection is not None else ["_connection"]
    lacking += [f"_connection.{name}" for name in _PRIVATE["_connection"]
                if connection is not None and not hasattr(connection, name)]
    lacking += [name for name in _PRIVATE[""] if not hasattr(client, name)]
    return lacking


def on_connect(client: Any, record: Callable[[int, float], None]) -> None:
    """Call ``record(session id, negotiated session timeout in seconds)`` after each
    connect of ``client``. kazoo's connect step returns the read timeout, 2/3 of it."""
    connection: Any = getattr(client, "_connection", None)
    connect = getattr(connection, "_connect", None)
    if connect is None:  # pragma: no cover - another kazoo (see missing())
        return

    def connect_and_record(*args: Any, **kw: Any) -> Any:
        read_timeout, connect_timeout = connect(*args, **kw)
        record(client._session_id, read_timeout * 1.5 / 1000.0)
        return read_timeout, connect_timeout

    connection._connect = connect_and_record


def on_sasl_exchange(client: Any, translate: Callable[[Exception], Exception | None]) -> None:
    """Run ``client``'s SASL exchange through ``translate``: an error it maps to
    another is raised as that one (kazoo's connection thread then stops, as for a
    refused password, instead of dying of the original)."""
    connection: Any = getattr(client, "_connection", None)
    authenticate = getattr(connection, "_authenticate_with_sasl", None)
    if authenticate is None:  # pragma: no cover - another kazoo (see missing())
        return

    def authenticate_translated(*args: Any, **kwargs: Any) -> Any:
        try:
            return authenticate(*args, **kwargs)
        except Exception as exc:
            other = translate(exc)
            if other is None:
                raise
            raise other from exc

    connection._authenticate_with_sasl = authenticate_translated
