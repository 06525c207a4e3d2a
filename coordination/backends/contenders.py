"""The values of the ordered contender queue behind locks, semaphores, read-write locks
and elections (see :class:`~coordination.backends.base.Backend`)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from ..session import Session


class Turn:
    """This process's turn at a server entry that its local contenders share (etcd's
    ``PREFIX/LEASE`` mutex key): taken before the entry is made, given back once when
    the entry is withdrawn, however often that is asked."""

    def __init__(self, gate: threading.Lock) -> None:
        self._gate = gate
        self._guard = threading.Lock()
        self._ended = False

    def end(self) -> None:
        with self._guard:
            if self._ended:
                return
            self._ended = True
        self._gate.release()


@dataclasses.dataclass(frozen=True)
class Contender:
    """Our entry in an ordered contender queue.

    ``token`` orders the entries of one path and is the fencing token: the ZooKeeper
    sequence number or the etcd create revision; a later entry always has a larger one.
    ``turn``: the local turn the entry holds, if its driver needs one.
    """

    path: str
    key: str
    token: int
    session: Session
    turn: Turn | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Listed:
    """A contender entry as the servers hold it (anyone's, foreign clients' too): its
    full ``key``, ``value``, the session that ``owner``s it, and its ``token``."""

    key: str
    value: bytes
    owner: int
    token: int


@dataclasses.dataclass(frozen=True)
class Blocker:
    """An entry before ours, which ours waits for: ``key``, and on etcd the create
    revision it had when read (a key deleted and made again is another entry)."""

    key: str
    created: int = 0


@dataclasses.dataclass(frozen=True)
class Rule:
    """Which earlier entries block ours in a contender queue.

    Only entries whose kind is in ``kinds`` count (all entries if None). We hold while
    fewer than ``permits`` counted entries precede ours; otherwise each of the nearest
    ``permits`` of them blocks us: we hold only once one of those is gone, so waiting
    on exactly those (and re-checking when one goes) never misses a wake-up.

    The mutex and a writer: ``Rule()``; a reader: ``Rule(kinds={"lock"})`` (only the
    last writer before it); a semaphore: ``Rule(permits=n)``.
    """

    permits: int = 1
    kinds: frozenset[str] | None = None

    def blocking(self, before: Sequence[Blocker]) -> list[Blocker]:
        """``before``: the nearest counted entries before ours, nearest first, at most
        ``permits``. Returns those that block us; empty when we hold."""
        return list(before[: self.permits]) if len(before) >= self.permits else []


#: The rule of a plain mutex (and of a writer): blocked by the entry just before ours.
MUTEX = Rule()


@dataclasses.dataclass(frozen=True)
class Head:
    """The first entry of a contender queue (an election's leader), as read at
    ``revision`` (etcd; 0 on ZooKeeper). ``key`` is None when the queue is empty."""

    key: str | None
    value: bytes = b""
    token: int = -1
    revision: int = 0

    def same_entry(self, other: Head) -> bool:
        """The same leader entry with the same value (whenever each was read)."""
        return (self.key, self.token, self.value) == (other.key, other.token, other.value)

