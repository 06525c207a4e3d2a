"""The transactional key-value primitive the queue is written over.

Keys are ``/``-separated paths under a recipe root. A commit applies all its ops
atomically if all its checks hold (etcd: one transaction; ZooKeeper: one ``multi``).
``Entry.version`` is what a ``Version`` check compares (etcd mod revision, ZooKeeper
node version); the ``stamp`` a commit returns grows with every commit (etcd revision,
ZooKeeper zxid) and serves as a fencing token. ZooKeeper tells the zxid of a ``multi``
only through the nodes it updated: a commit of creates and deletes alone returns 0 there,
and the ``Entry.stamp`` of a key it created, read back, is its stamp.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import BackendUnavailable
from ..session import Waker
from .watching import Watching, wait_armed

if TYPE_CHECKING:
    from ..session import Session


@dataclasses.dataclass(frozen=True)
class Entry:
    key: str
    value: bytes
    version: int
    #: etcd mod revision / ZooKeeper mzxid of the last write of this key.
    stamp: int
    #: etcd lease id / ZooKeeper ephemeral owner (0 for a persistent key).
    owner: int = 0


@dataclasses.dataclass(frozen=True)
class Version:
    """Check: ``key`` exists with this version."""

    key: str
    version: int


@dataclasses.dataclass(frozen=True)
class Absent:
    """Check: ``key`` does not exist."""

    key: str


@dataclasses.dataclass(frozen=True)
class Present:
    """Check: ``key`` exists (any version)."""

    key: str


@dataclasses.dataclass(frozen=True)
class Create:
    """Op: create ``key`` (which must not exist); ``ephemeral`` ties it to the session.
    ``depth`` > 1: the key is a leaf that ``KeyValue.leaves(root, depth)`` lists, ``root``
    being the key without its last ``depth`` parts (etcd indexes its directories)."""

    key: str
    value: bytes = b""
    ephemeral: bool = False
    depth: int = 1


@dataclasses.dataclass(frozen=True)
class Update:
    """Op: replace the value of the existing ``key``; ``ephemeral``: a key of the
    commit's session, which it stays (etcd would otherwise detach it from the lease)."""

    key: str
    value: bytes
    ephemeral: bool = False


@dataclasses.dataclass(frozen=True)
class Delete:
    """Op: delete the existing ``key``. ``depth`` > 1: a leaf that ``KeyValue.leaves``
    lists, as ``Create``'s (etcd drops the directory's marker when it empties)."""

    key: str
    depth: int = 1


Check = Version | Absent | Present
Op = Create | Update | Delete


def replace(key: str, read: Entry | None, value: bytes) -> tuple[Check, Op]:
    """The check and op of a compare-and-set of ``key`` to ``value``, from ``read`` (its
    entry as read, None if it did not exist): the write fails if anything wrote the key
    since."""
    if read is None:
        return Absent(key), Create(key, value)
    return Version(key, read.version), Update(key, value)


class OutcomeUnknown(Exception):
    """Internal: the connection broke after a commit was sent; it may have applied."""


class KeyValue(abc.ABC):
    """A backend's transactional key-value store (``backend.kv``), within its session and
    error handling: recipes see only :mod:`coordination.errors` (and ``OutcomeUnknown``)."""

    @abc.abstractmethod
    def root(self, kind: str, name: str) -> str:
        """Root path (no trailing ``/``) of recipe ``kind`` named ``name``."""

    @abc.abstractmethod
    def get(self, key: str) -> Entry | None:
        """The entry at ``key`` or None, by a linearizable read (ZooKeeper: after sync)."""

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """The entries at ``keys`` (None where missing), in as few round trips as the
        backend allows (etcd: one transaction of reads; ZooKeeper: pipelined reads)."""
        return [self.get(key) for key in keys]

    @abc.abstractmethod
    def commit(self, checks: Sequence[Check], ops: Sequence[Op],
               session: Session | None = None) -> int | None:
        """Apply ``ops`` atomically if every check holds: the commit's stamp, or None if
        a check failed. Ephemeral creates belong to ``session``. Raises
        ``OutcomeUnknown`` if the reply was lost (the commit may have applied)."""

    def commit_and_get(self, checks: Sequence[Check], ops: Sequence[Op], keys: Sequence[str],
                       session: Session | None = None) -> tuple[int, list[Entry | None]] | None:
        """``commit``, then the entries at ``keys`` as they are right after it (etcd:
        read in the same transaction; ZooKeeper: read after it, which is the same for
        keys that the commit's checks keep others from writing). None if a check failed.
        Raises ``OutcomeUnknown`` if the reply was lost, or the commit applied and the
        read failed: either way, the caller reads back what it needs."""
        return self._read_after([self.commit(checks, ops, session)], [keys])[0]

    def commit_first(self, commits: Sequence[tuple[Sequence[Check], Sequence[Op]]],
                     keys: Sequence[Sequence[str]], session: Session | None = None,
                     ) -> tuple[int, int, list[Entry | None]] | None:
        """Apply the first of ``commits`` whose checks all hold, and no other, as
        ``commit_and_get`` would with ``keys[i]`` for ``commits[i]``: ``(i, stamp,
        entries)``, or None if a check of each failed. In as few round trips as the
        backend allows (etcd: one transaction, the next commit nested in the previous
        one's failure branch; ZooKeeper: one at a time, until one applies). Raises
        ``OutcomeUnknown`` if a reply was lost: any one of them may have applied."""
        for i, (checks, ops) in enumerate(commits):
            applied = self.commit_and_get(checks, ops, keys[i], session)
            if applied is not None:
                return i, applied[0], applied[1]
        return None

    def commit_each(self, commits: Sequence[tuple[Sequence[Check], Sequence[Op]]],
                    keys: Sequence[Sequence[str]], session: Session | None = None,
                    ) -> list[tuple[int, list[Entry | None]] | None]:
        """Apply each ``(checks, ops)`` on its own, as ``commit_and_get`` would one after
        the other with ``keys[i]`` for ``commits[i]``, in as few round trips as the
        backend allows (etcd: one transaction of nested transactions, each reading its
        keys; ZooKeeper: pipelined ``multi``s, then one pipelined read): for each,
        ``(stamp, entries)`` or None if one of its checks failed. The commits must not
        touch the same keys. Raises ``OutcomeUnknown`` if a reply was lost (any of them
        may have applied), or they applied and the read failed."""
        return [self.commit_and_get(checks, ops, keys[i], session)
                for i, (checks, ops) in enumerate(commits)]

    def _read_after(self, stamps: Sequence[int | None], keys: Sequence[Sequence[str]]
                    ) -> list[tuple[int, list[Entry | None]] | None]:
        """For commits applied with ``stamps`` (None: not applied), their ``keys`` read
        now, in one call (for backends that cannot read inside a commit)."""
        wanted = [key for stamp, read in zip(stamps, keys) if stamp is not None for key in read]
        try:
            entries = iter(self.get_many(wanted))
        except BackendUnavailable as exc:
            raise OutcomeUnknown(str(exc)) from None
        return [None if stamp is None else (stamp, [next(entries) for _key in read])
                for stamp, read in zip(stamps, keys)]

    @abc.abstractmethod
    def written_version(self, stamp: int, before: Entry | None) -> int:
        """The version a ``Version`` check would now compare for a key that the commit
        with ``stamp`` created (``before`` None) or updated (from ``before``; it must be
        the commit's first update, whose stamp ``commit`` returns)."""

    @abc.abstractmethod
    def leaves(self, root: str, depth: int, limit: int) -> list[str]:
        """Up to ``limit`` first keys ``depth`` levels below ``root``, in key order: at
        least one if any exists (fewer than ``limit`` may be returned where more exist:
        those of the first bucket). Leaves deeper than 1 must be created with that
        ``depth`` (see ``Create``). Read from the connected server's copy, as ZooKeeper
        serves reads: it may miss the last moments of other clients' commits, never what
        this client has read or committed; check whatever you do with what it lists."""

    @abc.abstractmethod
    def counts(self, roots: Sequence[tuple[str, int]]) -> list[int]:
        """For each ``(root, depth)``, how many keys lie ``depth`` levels below ``root``,
        all as of one instant (a key moved between two roots meanwhile is counted once).
        ZooKeeper has no snapshot reads: under writes that go on through every pass it
        confirms, it returns its last pass, whose counts may be from different instants."""

    def wait(self, key: str, seen: Entry | None, timeout: float) -> None:
        """Return when ``key`` changed since ``seen`` was read, or after ``timeout``."""
        wait_armed(lambda woken: self.watch(key, seen, woken), timeout)

    @abc.abstractmethod
    def watch(self, key: str, seen: Entry | None, woken: Waker) -> Watching:
        """Arm a watch that calls ``woken.set()`` when ``key`` changes (from any
        thread); ``gone`` if it changed since ``seen`` was read already. Does not wait
        (see ``wait``). A watch that cannot be armed now asks for a look again soon."""

    def next_write(self, key: str, version: int) -> bytes | None:
        """The value written by the first write of ``key`` after ``version``, from the
        server's history; None if unknown (ZooKeeper keeps no history; etcd: compacted
        away, or that write was a delete)."""
        return None

    def sync(self, key: str) -> bool:
        """Make the next ``get`` of ``key`` see every write acknowledged before this
        call (ZooKeeper: ``sync``). False where reads are linearizable already (etcd):
        nothing was done."""
        return False
