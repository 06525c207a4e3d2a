"""A record that moves through declared states: ``coord.record("orders/42", transitions)``.

The record is one key (``records/NAME``) holding JSON: the state, the caller's data and
the last ``history`` transitions, newest first, each with the id of the write that made
it. A transition is a compare-and-set: read the record, check that the move is declared
(``transitions[current]`` lists it) and, with ``expect``, that the record is in that
state; commit with a check on the version that was read. Two concurrent transitions out
of one state cannot both apply: the second's check fails, it reads again and is judged
against the new state (``InvalidTransition`` if the move is no longer allowed,
``Conflict`` if ``expect`` no longer holds). The commit's stamp is the transition's
fencing token: it grows with every write of the record.

Lost replies are resolved as the counter resolves them: the write id is found in the
history read back (or the version is unchanged: not applied, tried again), so a
``transition`` that returned applied exactly once; ``UncertainOutcome`` if more than
``history`` transitions followed before the read-back, or when ours applied but another
followed it before the read-back (its token is then unknown; the record moved on).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..backends.base import Backend
from ..backends.kv import Entry, OutcomeUnknown, replace
from ..errors import (
    BackendUnavailable,
    Conflict,
    CoordinationError,
    InvalidArgument,
    InvalidTransition,
    UncertainOutcome,
)
from ..names import validate_name
from .lock import check_timeout
from .steps import Steps, WaitChanged, call, run

KIND = "records"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A record as read or written: its ``state``, ``data``, fencing ``token`` (the
    stamp of its last write) and ``history`` (newest first: ``(state, unix time)``)."""

    state: str
    data: Any
    token: int
    history: tuple[tuple[str, float], ...]


def _parse(entry: Entry, name: str) -> dict[str, Any]:
    try:
        value = json.loads(entry.value)
        if not isinstance(value, dict) or not isinstance(value.get("state"), str):
            raise ValueError("no state")
        return value
    except ValueError:
        raise CoordinationError(f"record {name!r} holds no state record "
                                f"({entry.value[:40]!r})") from None


def _snapshot(value: dict[str, Any], token: int) -> Snapshot:
    history = tuple((step[0], step[1]) for step in value.get("history", []))
    return Snapshot(value["state"], value.get("data"), token, history)


class StateRecord:
    """A named record whose state changes only along ``transitions`` (state -> the
    states it may move to); the same name is the same record in every process. Every
    client must declare the same transitions."""

    def __init__(self, backend: Backend, name: str, transitions: Mapping[str, Iterable[str]],
                 history: int = 10) -> None:
        self.name = validate_name(name, "record name")
        if not isinstance(transitions, Mapping) or not transitions:
            raise InvalidArgument("transitions must be a non-empty mapping of state -> states")
        moves: dict[str, frozenset[str]] = {}
        for state, targets in transitions.items():
            targets = [targets] if isinstance(targets, str) else list(targets)
            if not isinstance(state, str) or not all(isinstance(t, str) for t in targets):
                raise InvalidArgument(f"states must be strings, got {state!r}: {targets!r}")
            moves[state] = frozenset(targets)
        self.transitions = moves
        self.states = frozenset(moves) | frozenset().union(*moves.values())
        if isinstance(history, bool) or not isinstance(history, int) or not 1 <= history <= 100:
            raise InvalidArgument(f"history must be an int in [1, 100], got {history!r}")
        self._history = history
        self._backend = backend
        self._key = backend.kv.root(KIND, name)

    def __repr__(self) -> str:
        return f"<StateRecord {self.name!r}>"

    def get(self) -> Snapshot | None:
        """The record now (a linearizable read); None if not created."""
        self._backend.kv.sync(self._key)
        entry = self._backend.kv.get(self._key)
        return None if entry is None else _snapshot(_parse(entry, self.name), entry.stamp)

    @property
    def state(self) -> str | None:
        snapshot = self.get()
        return None if snapshot is None else snapshot.state

    def create(self, state: str, data: Any = None) -> Snapshot:
        """Create the record in ``state``. ``Conflict`` if it exists already (a create
        that returned applied exactly once, even after a lost reply)."""
        self._check_state(state)
        return self._write(lambda current: self._created(current, state), state, data)

    def transition(self, to: str, expect: str | None = None, data: Any = None) -> Snapshot:
        """Move to state ``to`` if the record's state allows it (and is ``expect``, if
        given); ``data`` replaces the record's data (None: kept). The new snapshot,
        whose token fences what the transition triggers. ``InvalidTransition`` if the
        move is not declared from the current state, ``Conflict`` if the record is not
        in state ``expect`` (or not created); nothing changed then."""
        self._check_state(to)
        if expect is not None:
            self._check_state(expect)
        return self._write(lambda current: self._allowed(current, to, expect), to, data)

    def wait_for(self, state: str, timeout: float | None = None) -> Snapshot | None:
        """Wait until the record is in ``state``; its snapshot, or None after
        ``timeout`` seconds. Watches the record's key (no polling)."""
        return run(self.wait_for_steps(state, timeout))

    def wait_for_steps(self, state: str, timeout: float | None = None) -> Steps[Snapshot | None]:
        """``wait_for`` as steps for a driver (``recipes.steps``)."""
        self._check_state(state)
        deadline = None if (timeout := check_timeout(timeout)) is None else time.monotonic() + timeout
        kv = self._backend.kv
        while True:
            entry = yield call(kv.get, self._key)
            if entry is not None and (value := _parse(entry, self.name))["state"] == state:
                return _snapshot(value, entry.stamp)
            left = 30.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return None
            yield WaitChanged(kv, self._key, entry, min(left, 30.0))

    # --- compare-and-set -----------------------------------------------------------------

    def _check_state(self, state: str) -> None:
        if state not in self.states:
            raise InvalidArgument(f"record {self.name!r}: {state!r} is not a declared state "
                                  f"(states: {sorted(self.states)})")

    def _created(self, current: dict[str, Any] | None, state: str) -> None:
        if current is not None:
            raise Conflict(f"record {self.name!r} exists already (state {current['state']!r})")

    def _allowed(self, current: dict[str, Any] | None, to: str, expect: str | None) -> None:
        if current is None:
            raise Conflict(f"record {self.name!r} does not exist")
        state = current["state"]
        if expect is not None and state != expect:
            raise Conflict(f"record {self.name!r} is {state!r}, not {expect!r}")
        if to not in self.transitions.get(state, ()):
            raise InvalidTransition(f"record {self.name!r}: {state!r} -> {to!r} is not a "
                                    f"declared transition")

    def _write(self, judge: Any, to: str, data: Any) -> Snapshot:
        kv = self._backend.kv
        synced = False
        while True:
            entry = kv.get(self._key)
            current = None if entry is None else _parse(entry, self.name)
            try:
                judge(current)  # raises if the move is not allowed from what we read
            except (Conflict, InvalidTransition):
                # Never refuse on a stale read (ZooKeeper): confirm on the latest first.
                if not synced and kv.sync(self._key):
                    synced = True
                    continue
                raise
            write_id = secrets.token_hex(6)
            history = [[to, round(time.time(), 3), write_id],
                       *(current or {}).get("history", [])][:self._history]
            value = {"state": to, "data": data if data is not None or current is None
                     else current.get("data"), "history": history}
            try:
                raw = json.dumps(value).encode()
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(f"record data must be JSON: {exc}") from None
            check, op = replace(self._key, entry, raw)
            try:
                stamp = kv.commit([check], [op])
            except OutcomeUnknown:
                stamp = self._applied(entry, write_id)
            if stamp is not None:
                return _snapshot(value, stamp)
            synced = False  # another client wrote first: judge the move again on its write

    def _applied(self, base: Entry | None, write_id: str) -> int | None:
        """After a lost reply: the stamp of our write if it applied, None if not."""
        try:
            entry = self._backend.kv.get(self._key)
        except BackendUnavailable as exc:
            raise UncertainOutcome(f"record {self.name!r}: the transition may have applied "
                                   f"({exc})") from None
        if entry is None or (base is not None and entry.version == base.version):
            return None  # nothing was written since our read
        history = _parse(entry, self.name).get("history", [])
        if any(len(step) > 2 and step[2] == write_id for step in history):
            return entry.stamp if history[0][2] == write_id else self._stamp_unknown()
        if len(history) < self._history:
            return None  # the whole history is there, and ours is not in it
        raise UncertainOutcome(f"record {self.name!r}: the transition may have applied; more "
                               f"than {self._history} transitions followed it")

    def _stamp_unknown(self) -> int:
        raise UncertainOutcome(f"record {self.name!r}: the transition applied, and others "
                               "followed it before its token could be read")
