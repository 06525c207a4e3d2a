"""Read-only views of what a namespace holds on the servers: its locks (holder, fencing
token, waiters) and its queues (pending, delayed, blocked, in flight, dead).

Used by ``coordination inspect``. Nothing here writes to the servers.

    with coordination.connect(url) as coord:
        for lock in list_locks(coord): print(lock.name, lock.holder, lock.token, lock.waiters)
        for queue in list_queues(coord): print(queue.name, queue.stats)

Where the names come from: on ZooKeeper, lock ``NAME`` is the znode
``/NAMESPACE/locks/NAME`` (kept after release, as its sequence counter is the token
source, so idle locks are listed too, with no holder); on etcd, it is the key prefix
``/NAMESPACE/locks/<NAME percent-encoded>/`` and exists only while someone holds or waits
for it. Queue ``NAME`` lives under ``backend.kv.root("queues", NAME)`` on both. Locks taken with
``raw_prefix=True`` live outside the namespace and are not listed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from .recipes.queue import layout as queue_layout

if TYPE_CHECKING:
    from .client import Coordinator


@dataclasses.dataclass(frozen=True)
class LockInfo:
    name: str
    #: The holder's identifier if it gave one, else its session (``session 0x..``);
    #: None if nobody holds the lock.
    holder: str | None
    #: The fencing token of the current hold (None if not held).
    token: int | None
    #: Contenders waiting behind the holder.
    waiters: int
    #: Server path (ZooKeeper) or key prefix (etcd).
    path: str
    #: The waiters' entries, by their tokens, in queue order.
    waiting: tuple[int, ...] = ()
    #: The sessions (ZooKeeper session ids, etcd lease ids) holding or waiting.
    sessions: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "waiting": list(self.waiting),
                "sessions": list(self.sessions)}


#: Seconds over which a queue's acks are counted (its rate out).
ACKED_OVER = 5


@dataclasses.dataclass(frozen=True)
class QueueInfo:
    name: str
    #: ``pending``, ``delayed``, ``blocked``, ``in_flight``, ``dead`` (Queue.stats()).
    stats: dict[str, int]
    #: Seconds since the task ``get`` hands out next was put (None: nothing pending).
    oldest_age: float | None = None
    #: Tasks acked in the last ``ACKED_OVER`` whole seconds.
    acked: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.stats, "oldest_age": self.oldest_age,
                "acked_last_5s": self.acked}


def list_locks(coord: Coordinator, prefix: str = "") -> list[LockInfo]:
    """The locks of ``coord``'s namespace whose name starts with ``prefix``, by name."""
    driver = coord.driver
    found = []
    for name in sorted(driver.names("locks")):
        if not name.startswith(prefix):
            continue
        path = driver.recipe_path("locks", name)
        contenders = driver.contenders(path)
        if contenders:  # the first holds
            first = contenders[0]
            found.append(LockInfo(name, _holder(first.value, first.owner), first.token,
                                  len(contenders) - 1, path,
                                  tuple(c.token for c in contenders[1:]),
                                  tuple(sorted({c.owner for c in contenders}))))
        else:
            found.append(LockInfo(name, None, None, 0, path))
    return found


def list_queues(coord: Coordinator, prefix: str = "") -> list[QueueInfo]:
    """The queues of ``coord``'s namespace whose name starts with ``prefix``, by name,
    with their counts and the age of the next task to hand out."""
    found = []
    for name in sorted(coord.driver.names(queue_layout.KIND, queue_layout.PARTS)):
        if not name.startswith(prefix):
            continue
        queue = coord.queue(name)
        stats = queue.stats()
        head = queue.peek(1) if stats["pending"] else []
        found.append(QueueInfo(name, stats, max(0.0, time.time() - head[0].enqueued_at)
                               if head else None, queue.acked(ACKED_OVER)))
    return found


def snapshot(coord: Coordinator, prefix: str = "") -> dict[str, Any]:
    """Everything above as one JSON-ready dict."""
    return {
        "backend": coord.backend,
        "namespace": coord.namespace,
        "prefix": prefix,
        "locks": [lock.as_dict() for lock in list_locks(coord, prefix)],
        "queues": [queue.as_dict() for queue in list_queues(coord, prefix)],
    }


def _holder(data: bytes, session: int) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text if text else f"session 0x{session:x}"
