"""The transactional key-value primitive the queue is written over.

Keys are ``/``-separated paths under a recipe root. A commit applies all its ops
atomically if all its checks hold (etcd: one transaction; ZooKeeper: one ``multi``).
``Entry.version`` is what a ``Version`` check compares (etcd mod revision, ZooKeeper
node version); the ``stamp`` a commit returns grows with every commit (etcd revision,
ZooKeeper zxid) and serves as a fencing token.
"""

from __future__ import annotations

import dataclasses


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
    ``depth`` > 1: the key is a leaf that ``kv_leaves(root, depth)`` lists, ``root``
    being the key without its last ``depth`` parts (etcd indexes its directories)."""

    key: str
    value: bytes = b""
    ephemeral: bool = False
    depth: int = 1


@dataclasses.dataclass(frozen=True)
class Update:
    """Op: replace the value of the existing ``key``."""

    key: str
    value: bytes


@dataclasses.dataclass(frozen=True)
class Delete:
    """Op: delete the existing ``key``."""

    key: str


Check = Version | Absent | Present
Op = Create | Update | Delete


class OutcomeUnknown(Exception):
    """Internal: the connection broke after a commit was sent; it may have applied."""
