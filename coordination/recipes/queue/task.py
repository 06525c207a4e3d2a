"""A claimed task (``Task``), what its claim is (``Claim``: the session, the versions it
wrote, its time limit), and the claim key's value.

A claim is the in-flight key ``f/ID`` plus the claim key ``c/ID`` tied to the worker's
session (its value ``SESSION:NONCE[:UNTIL]``), plus the version of ``t/ID`` that the
claim wrote. ``settle.Settler`` acks and nacks it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ...errors import InvalidArgument
from .record import TaskRecord

if TYPE_CHECKING:
    from ...session import Session
    from .settle import Settler


@dataclasses.dataclass(frozen=True)
class Claim:
    """What settling a claimed task checks."""

    #: The session the claim key is tied to: the claim is lost with it.
    session: Session
    #: The version of the task's record as the claim wrote it.
    version: int
    #: The version of the claim key; None if unknown (a claim found again after a lost
    #: reply): settling then reads the record and the claim key back first.
    claim_version: int | None
    #: When the claim's time limit ends (wall clock, ns); 0: no limit.
    until: int = 0


def claim_value(session: Session, nonce: str, until: int) -> bytes:
    """The claim key's value: ``SESSION:NONCE``, then ``:UNTIL`` if time-limited."""
    return f"{session.id}:{nonce}{f':{until}' if until else ''}".encode()


def claim_until(value: bytes) -> int:
    """The end of the time limit in a claim key's value (ns); 0 if it has none."""
    parts = value.split(b":")
    return int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0


def limit_end(seconds: float | None) -> int:
    """``until`` of a claim limited to ``seconds`` from now (0: no limit)."""
    return time.time_ns() + int(seconds * 1e9) if seconds else 0


def check_time_limit(seconds: float | None) -> float | None:
    """``InvalidArgument`` unless ``seconds`` is None or a finite number > 0."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
            or not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgument(f"time_limit must be a number of seconds > 0, got {seconds!r}")
    return float(seconds)


class Task:
    """A claimed task. ``token`` is a fencing token for side effects: it grows across
    successive claims of the task. Use as a context manager to ack on success and nack
    on an exception.

    A task listed by ``Queue.dead_letters`` has no claim: it cannot be settled."""

    def __init__(self, settler: Settler, record: TaskRecord, data: bytes, token: int,
                 claim: Claim | None) -> None:
        self._settler = settler
        self._record = record
        self._data = data
        self._token = token
        self._claim = claim
        self._settled = claim is None

    def __repr__(self) -> str:
        return f"<Task {self.id} priority={self.priority} key={self.key} attempts={self.attempts}>"

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def data(self) -> Any:
        """The payload, decoded by the queue's codec (bytes by default); a payload the
        codec cannot decode raises ``InvalidPayload``."""
        return self._settler.codec.decode(self._data)

    @property
    def raw(self) -> bytes:
        """The payload as stored."""
        return self._data

    @property
    def priority(self) -> int:
        return self._record.priority

    @property
    def key(self) -> str | None:
        return self._record.key

    @property
    def attempts(self) -> int:
        """Failed deliveries so far: nacks and lost claims."""
        return self._record.attempts

    @property
    def error(self) -> str | None:
        """The error text of the last failed delivery."""
        return self._record.error

    @property
    def token(self) -> int:
        return self._token

    @property
    def queue_name(self) -> str:
        return self._settler.name

    @property
    def expires_at(self) -> float | None:
        """When this claim's time limit ends (``time.time()`` seconds), after which any
        consumer may take the task back; None without a limit."""
        claim = self._claim
        return claim.until / 1e9 if claim is not None and claim.until else None

    def extend(self, seconds: float) -> None:
        """Push this claim's time limit to ``seconds`` from now (setting one if it had
        none), for a task that takes longer. ``ClaimLost`` if the claim is gone (a task
        already taken back stays taken back)."""
        self._settler.extend(self, seconds)

    def ack(self) -> None:
        """Done: remove the task for good. ``ClaimLost`` if the claim is gone."""
        self._settler.ack(self)

    def nack(self, delay: float = 0.0, error: str | None = None, dead: bool = False) -> None:
        """Failed: back in the queue after ``delay`` (attempts + 1), or to the dead
        letters after ``max_attempts`` (at once with ``dead=True``: a failure that no
        retry will mend). ``ClaimLost`` if the claim is gone."""
        self._settler.nack(self, delay=delay, error=error, dead=dead)

    def __enter__(self) -> Task:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.ack()
        elif not self._settled:
            self.nack(error=f"{exc_type.__name__}: {exc}")
