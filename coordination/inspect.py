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
for it. Queue ``NAME`` lives under ``kv_root("queues", NAME)`` on both. Locks taken with
``raw_prefix=True`` live outside the namespace and are not listed.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .recipes.queue.layout import MARKERS as _QUEUE_MARKERS
from .recipes.queue.layout import PARTS as _QUEUE_PARTS

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

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class QueueInfo:
    name: str
    #: ``pending``, ``delayed``, ``blocked``, ``in_flight``, ``dead`` (Queue.stats()).
    stats: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.stats}


def list_locks(coord: Coordinator, prefix: str = "") -> list[LockInfo]:
    """The locks of ``coord``'s namespace whose name starts with ``prefix``, by name."""
    found = _zookeeper_locks(coord) if coord.backend == "zookeeper" else _etcd_locks(coord)
    return sorted((lock for lock in found if lock.name.startswith(prefix)),
                  key=lambda lock: lock.name)


def list_queues(coord: Coordinator, prefix: str = "") -> list[QueueInfo]:
    """The queues of ``coord``'s namespace whose name starts with ``prefix``, by name,
    with their counts."""
    zookeeper = coord.backend == "zookeeper"
    names = _zookeeper_queue_names(coord) if zookeeper else _etcd_queue_names(coord)
    return [
        QueueInfo(name, coord.queue(name).stats())
        for name in sorted(names)
        if name.startswith(prefix)
    ]


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


# --- ZooKeeper ------------------------------------------------------------------------------


def _zk_children(backend: Any, path: str) -> list[str] | None:
    from kazoo.exceptions import NoNodeError

    try:
        return sorted(backend._call(None, "get_children", path))
    except NoNodeError:
        return None


def _zookeeper_locks(coord: Coordinator) -> list[LockInfo]:
    from .backends.zookeeper import CONTENDER_RE

    backend: Any = coord._backend
    found: list[LockInfo] = []

    def walk(path: str, name: str) -> None:
        children = _zk_children(backend, path)
        if children is None:
            return
        others = [child for child in children if not CONTENDER_RE.search(child)]
        if name and (len(others) < len(children) or not children):
            contenders = backend.contenders(path)
            if contenders:
                first = contenders[0]
                found.append(LockInfo(name, _holder(first.value, first.owner), first.token,
                                      len(contenders) - 1, path))
            else:
                found.append(LockInfo(name, None, None, 0, path))
        for child in others:
            walk(f"{path}/{child}", f"{name}/{child}" if name else child)

    walk(f"/{coord.namespace}/locks", "")
    return found


def _zookeeper_queue_names(coord: Coordinator) -> list[str]:
    backend: Any = coord._backend
    names: list[str] = []

    def walk(path: str, name: str) -> None:
        children = _zk_children(backend, path)
        if children is None:
            return
        if name and not _QUEUE_MARKERS.isdisjoint(children):
            names.append(name)
            children = [child for child in children if child not in _QUEUE_PARTS]
        for child in children:
            walk(f"{path}/{child}", f"{name}/{child}" if name else child)

    walk(f"/{coord.namespace}/queues", "")
    return names


# --- etcd -----------------------------------------------------------------------------------


def _etcd_locks(coord: Coordinator) -> list[LockInfo]:
    from pyetcd import etcdrpc
    from pyetcd.utils import prefix_range_end

    backend: Any = coord._backend
    root = f"/{coord.namespace}/locks/"
    reply = backend.range(None, etcdrpc.RangeRequest(
        key=root.encode(), range_end=prefix_range_end(root.encode()),
        sort_target=etcdrpc.RangeRequest.CREATE, sort_order=etcdrpc.RangeRequest.ASCEND,
    ))
    by_name: dict[str, list[Any]] = {}
    for kv in reply.kvs:  # oldest first: the first entry of a name holds it
        encoded, sep, _lease = kv.key.decode()[len(root):].rpartition("/")
        if sep:
            by_name.setdefault(encoded, []).append(kv)
    return [
        LockInfo(unquote(encoded), _holder(kvs[0].value, kvs[0].lease), int(kvs[0].create_revision),
                 len(kvs) - 1, f"{root}{encoded}/")
        for encoded, kvs in by_name.items()
    ]


def _etcd_queue_names(coord: Coordinator) -> list[str]:
    """One ranged read per queue: read the first key, then skip past its queue."""
    from pyetcd import etcdrpc
    from pyetcd.utils import prefix_range_end

    backend: Any = coord._backend
    root = f"/{coord.namespace}/queues/".encode()
    end = prefix_range_end(root)
    start = root
    names: list[str] = []
    while True:
        reply = backend.range(None, etcdrpc.RangeRequest(
            key=start, range_end=end, limit=1, keys_only=True))
        if not reply.kvs:
            return names
        encoded = reply.kvs[0].key[len(root):].split(b"/", 1)[0]
        names.append(unquote(encoded.decode()))
        start = prefix_range_end(root + encoded + b"/")
