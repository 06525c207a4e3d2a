"""A fair, fenced read-write lock: the lock's contender loop with two rules.

Readers and writers enqueue in one contender queue, in arrival order. A writer waits
for the entry just before it (so for everyone before it); a reader waits only for the
last writer before it, so readers share, and a reader that arrives after a waiting
writer waits behind it: a stream of readers cannot starve a writer.

ZooKeeper: readers are ``UUID__rlock__SEQ``, writers ``UUID__lock__SEQ`` nodes, the
naming of kazoo's ``ReadLock``/``WriteLock`` (both interoperate on one path with
``raw_prefix=True``). etcd: ``PREFIX/rlock/UUID`` and ``PREFIX/lock/UUID`` keys.
Every hold has a fencing token (sequence number / create revision) that grows along the
queue; a writer's token is larger than that of every earlier holder.
"""

from __future__ import annotations

from ..backends.base import Backend
from ..backends.contenders import Rule
from ..names import validate_name, validate_raw_path
from .lock import Lock, check_timeout

#: A reader is blocked only by the last writer before it.
READER = Rule(kinds=frozenset({"lock"}))


class WriteLock(Lock):
    """The exclusive side: no other writer and no reader while held."""

    _recipe = "rwlocks"
    _what = "rwlock"
    _kind = "lock"


class ReadLock(Lock):
    """The shared side: held with other readers, never with a writer."""

    _recipe = "rwlocks"
    _what = "rwlock"
    _kind = "rlock"

    def _rule(self) -> Rule:
        return READER


class RWLock:
    """A named read-write lock. ``read()``/``write()`` return a new lock object for one
    holder (``with rw.read(timeout=5): ...`` raises ``LockTimeout``)."""

    def __init__(self, backend: Backend, name: str, *, raw_prefix: bool = False) -> None:
        if raw_prefix:
            validate_raw_path(name)
        else:
            validate_name(name, "rwlock name")
        self.name = name
        self._backend = backend
        self._raw = raw_prefix

    def __repr__(self) -> str:
        return f"<RWLock {self.name!r}>"

    @property
    def path(self) -> str:
        """The server path (ZooKeeper) or key prefix (etcd) of readers and writers."""
        return self.read().path

    def read(self, timeout: float | None = None) -> ReadLock:
        """A reader lock object; ``timeout`` is the default for ``with``."""
        return ReadLock(self._backend, self.name, check_timeout(timeout), raw_prefix=self._raw)

    def write(self, timeout: float | None = None) -> WriteLock:
        """A writer lock object; ``timeout`` is the default for ``with``."""
        return WriteLock(self._backend, self.name, check_timeout(timeout), raw_prefix=self._raw)
