"""A linearizable integer counter over the transactional key-value primitive (``kv.py``).

The counter is one key (``counters/NAME``). Its value starts with the count as a
decimal string; after a ``:`` come the markers of the last few writes, newest first,
each ``BASE.MARKER``: the version the write was based on (``c`` for the write that
created the key) and a random per-attempt marker. A missing key counts as 0.

Every update is a compare-and-set: read the key, compute, commit with a check on the
version that was read, retry on conflict. Checking bounds against that same version
makes ``add(delta, min=, max=)`` atomic.

Lost replies. When a commit's reply is lost (``OutcomeUnknown``) the commit may have
applied. At most one write can succeed on a given version, so the write based on the
version we read is either ours or another client's, and its marker says which. It is
found in the value's history unless more than ``HISTORY`` writes followed it before the
read-back; etcd then still finds it in its own history (a watch from that version).
Hence the guarantee:

* ``add``/``set`` returned: applied exactly once;
* ``BoundExceeded``, ``InvalidArgument``, or ``BackendUnavailable``/``ClientClosed``
  before anything was sent: not applied;
* ``UncertainOutcome``: applied at most once, and we could not tell: the servers stayed
  unreachable for the request timeout, or (ZooKeeper, or an etcd history compacted
  away) more than ``HISTORY`` writes followed ours before we could read it back.

A retry never applies an update twice.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable

from ..backends.base import Backend
from ..backends.kv import Entry, OutcomeUnknown, replace
from ..errors import (
    BackendUnavailable,
    BoundExceeded,
    CoordinationError,
    InvalidArgument,
    UncertainOutcome,
)
from ..names import validate_name

#: How many write markers the value keeps (each 15-30 bytes).
HISTORY = 16
_CREATED = "c"


def _check_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int, got {value!r}")
    return value


def _parse(entry: Entry | None, name: str) -> tuple[int, list[str]]:
    """The count and the write markers stored in ``entry`` (0 and none if absent)."""
    if entry is None:
        return 0, []
    text = entry.value.decode("ascii", "replace")
    count, _, history = text.partition(":")
    try:
        return int(count), [mark for mark in history.split(",") if mark]
    except ValueError:
        raise CoordinationError(f"counter {name!r} holds a non-integer value {count[:40]!r}") from None


class Counter:
    """A named integer, 0 until first written; the same name is the same counter in
    every process. Reads are linearizable; updates are atomic compare-and-set."""

    def __init__(self, backend: Backend, name: str) -> None:
        self.name = validate_name(name, "counter name")
        self._backend = backend
        self._key = backend.kv.root("counters", name)

    def __repr__(self) -> str:
        return f"<Counter {self.name!r}>"

    @property
    def value(self) -> int:
        """The current value (a linearizable read)."""
        self._backend.kv.sync(self._key)
        return _parse(self._backend.kv.get(self._key), self.name)[0]

    def add(self, delta: int, min: int | None = None, max: int | None = None) -> int:
        """Add ``delta`` atomically; the new value. Raises ``BoundExceeded`` (nothing
        changed) if the result would leave ``[min, max]`` (each optional), and
        ``InvalidArgument`` for a non-int ``delta`` or bound, or ``min > max``."""
        _check_int(delta, "delta")
        low = None if min is None else _check_int(min, "min")
        high = None if max is None else _check_int(max, "max")
        if low is not None and high is not None and low > high:
            raise InvalidArgument(f"min ({low}) must not be greater than max ({high})")
        return self._update(lambda current: current + delta, low, high)

    def set(self, value: int) -> None:
        """Replace the value atomically (the same lost-reply guarantee as ``add``)."""
        _check_int(value, "value")
        self._update(lambda _current: value, None, None)

    # --- compare-and-set -----------------------------------------------------------------

    def _update(self, compute: Callable[[int], int], low: int | None, high: int | None) -> int:
        conflicts = 0
        synced = False
        while True:
            entry = self._backend.kv.get(self._key)
            current, history = _parse(entry, self.name)
            new = compute(current)
            if (low is not None and new < low) or (high is not None and new > high):
                # Never refuse on a stale read: confirm against the latest state first.
                if not synced and self._backend.kv.sync(self._key):
                    synced = True
                    continue
                raise BoundExceeded(
                    f"counter {self.name!r}: {current} -> {new} leaves [{low}, {high}]")
            base = _CREATED if entry is None else str(entry.version)
            marker = secrets.token_hex(6)
            value = f"{new}:{','.join([f'{base}.{marker}', *history][:HISTORY])}".encode()
            check, op = replace(self._key, entry, value)
            try:
                if self._backend.kv.commit([check], [op]) is not None:
                    return new
            except OutcomeUnknown:
                if self._applied(base, marker):
                    return new
            conflicts += 1
            synced = False
            self._backend.events.emit("counter.conflict", self.name)
            # Someone else's write won this version: back off a little, then retry.
            time.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** min(conflicts, 6))))

    def _applied(self, base: str, marker: str) -> bool:
        """After a lost reply: did our write (based on ``base``) apply?"""
        try:
            entry = self._backend.kv.get(self._key)
        except BackendUnavailable as exc:
            raise UncertainOutcome(
                f"counter {self.name!r}: the update may have applied ({exc})") from None
        if entry is None:
            if base == _CREATED:
                return False
        else:
            if base != _CREATED and entry.version == int(base):
                return False  # nothing was written since our read
            for mark in _parse(entry, self.name)[1]:
                mark_base, _, mark_id = mark.partition(".")
                if mark_base == base:  # the one write that succeeded on our base
                    return mark_id == marker
            if base != _CREATED:  # etcd: the write that followed our base, from history
                following = self._backend.kv.next_write(self._key, int(base))
                if following is not None:
                    history = _parse(Entry(self._key, following, 0, 0), self.name)[1]
                    return bool(history) and history[0] == f"{base}.{marker}"
        raise UncertainOutcome(
            f"counter {self.name!r}: the update may have applied; more than {HISTORY} "
            "writes followed it before it could be checked")
