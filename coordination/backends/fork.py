"""Coordinators across ``fork()``: a child process never uses its parent's connection.

A forked child gets a copy of every backend, but the sockets of that copy are the
parent's, and the threads that served them (kazoo's connection thread, the etcd
keepalive and gRPC's own threads, the pause watch) do not exist in the child: using
them hung. So right after a fork, in the child, every backend is marked *inherited*:
its sessions are the parent's, and read as lost in the child (a lock the parent holds
is not held by the child; a task it claimed cannot be acked by the child), and its
first use in the child opens a new connection with a session of its own. The parent's
connection objects are never closed or collected in the child: a ZooKeeper close would
end the parent's session, and gRPC objects must not be touched after a fork.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class Inheritable(Protocol):
    def inherit(self) -> None:
        """Called in the child right after a fork, with one thread: must not block."""


_tracked: weakref.WeakSet[Inheritable] = weakref.WeakSet()
#: The parent's clients, kept referenced so that nothing in the child closes them.
_abandoned: list[object] = []


def track(obj: Inheritable) -> None:
    """Call ``obj.inherit()`` in every child forked from now on."""
    _tracked.add(obj)


def abandon(client: object) -> None:
    """Drop the parent's ``client`` in the child without closing or collecting it."""
    _abandoned.append(client)


def _after_fork_in_child() -> None:
    for obj in list(_tracked):
        try:
            obj.inherit()
        except Exception:  # e.g. a backend whose connect failed: never used again
            pass


os.register_at_fork(after_in_child=_after_fork_in_child)
