"""What both drivers' error boundaries share: retrying transient failures until the
request timeout, and telling a session's end to its listeners."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from ..errors import BackendUnavailable, SessionLost
from ..session import Session, SessionState

T = TypeVar("T")


def retrying(attempt: Callable[[], T], transient: Callable[[BaseException], bool],
             timeout: float, servers: str, on_retry: Callable[[], None] = lambda: None) -> T:
    """Run ``attempt``; while it raises a ``transient`` error, again after a backoff
    (20 ms doubling to 0.5 s) until ``timeout`` seconds have passed, then
    ``BackendUnavailable``; ``on_retry()`` before each new try. Other errors pass
    through at once."""
    try:
        for round_ in Retrying(stop=stop_after_delay(timeout),
                               wait=wait_exponential(multiplier=0.02, max=0.5),
                               retry=retry_if_exception(transient), reraise=False,
                               before_sleep=lambda _state: on_retry()):
            with round_:
                return attempt()
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise BackendUnavailable(f"{servers} did not answer within {timeout:g}s "
                                 f"({type(last).__name__}: {last})") from None
    raise AssertionError("unreachable")  # pragma: no cover


def session_gone(session: Session | None, why: str,
                 notify: Callable[[Session, SessionState], None]) -> SessionLost:
    """The error for a session that the servers say has ended; its listeners hear of
    it first (``notify``)."""
    if session is not None:
        notify(session, SessionState.LOST)
    return SessionLost(why)
