"""A claim on a task: what settling it checks (``Claim``), the claim key's value
``SESSION:NONCE[:UNTIL]``, and claim time limits.

A claim is the in-flight key ``f/ID`` plus the claim key ``c/ID`` tied to the worker's
session. The claim leaves the record ``t/ID`` as it was; any change of hands rewrites it
(a lost claim is put back with attempts + 1), so its version at the claim tells whether
the task is still this claim's.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING

from ...errors import InvalidArgument

if TYPE_CHECKING:
    from ...session import Session


@dataclasses.dataclass(frozen=True)
class Claim:
    """What settling a claimed task checks."""

    #: The session the claim key is tied to: the claim is lost with it.
    session: Session
    #: The version of the task's record when it was claimed.
    version: int
    #: The version of the claim key; None if unknown (a claim found again after a lost
    #: reply): settling then reads the record and the claim key back first.
    claim_version: int | None
    #: When the claim's time limit ends (wall clock, ns); 0: no limit.
    until: int = 0
    #: The claim's own nonce, in the claim key's value.
    nonce: str = ""


def claim_value(session: Session, nonce: str, until: int) -> bytes:
    """The claim key's value: ``SESSION:NONCE``, then ``:UNTIL`` if time-limited."""
    return f"{session.id}:{nonce}{f':{until}' if until else ''}".encode()


def claimed_by(value: bytes, session: Session, nonce: str) -> bool:
    """Whether the claim key's ``value`` is that of the claim with ``nonce`` of ``session``."""
    return value.split(b":")[:2] == [str(session.id).encode(), nonce.encode()]


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
