"""What is measured: our recipes and the peers', behind one small interface each.

A *lock subject* makes contenders: ``subject(name)`` opens a client of its own and
returns an object with ``acquire()``, ``release()`` and ``close()``. A *queue subject*
makes producers and consumers the same way: ``put(data)``, ``put_many(items)``,
``take()`` (one task taken and acknowledged, or None) and ``close()``.

Peers: kazoo's ``Lock``, ``Queue`` and ``LockingQueue``; etcd-sdk-python's ``Lock``;
tooz with its ``zookeeper`` and ``etcd3+http`` drivers; and a plain Redis lock
(``SET NX PX`` via redis-py) and list queue (``LPUSH``/``BRPOP``), the common unsafe
choice, for reference. All are used the way their documentation shows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import coordination


class Contender(Protocol):
    def acquire(self) -> None: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


class Worker(Protocol):
    def put(self, data: bytes) -> None: ...
    def put_many(self, items: list[bytes]) -> None: ...
    def take(self) -> bool: ...
    def close(self) -> None: ...


@dataclass
class Subject:
    """A named factory; ``ours`` marks our own recipe, ``reference`` a non-consensus peer."""

    label: str
    make: Callable[[str], Any]
    ours: bool = False
    reference: bool = False
    #: Why it cannot run here (then it is listed with this reason, not measured).
    unavailable: str | None = None


@dataclass
class Servers:
    """Where the subjects connect: a cluster URL and endpoints, and Redis's port."""

    backend: str
    url: str
    endpoints: list[str]
    redis_port: int | None = None

    def pinned(self, index: int) -> Servers:
        """The same, every client on server ``index`` only: the subjects of a figure
        then talk to one server (a leader serves ~1.5x faster than a follower)."""
        endpoint = self.endpoints[index]
        scheme, rest = self.url.split("://", 1)
        path = rest.split("/", 1)[1] if "/" in rest else ""
        return Servers(self.backend, f"{scheme}://{endpoint}/{path}", [endpoint], self.redis_port)


class AdaptedLock:
    """Any peer's lock as a :class:`Contender`: ``acquire`` calls ``take`` (which waits
    up to 120 s and returns whether it got the lock), ``close`` calls ``close``."""

    def __init__(self, lock: Any, take: Callable[[], bool], close: Callable[[], Any]) -> None:
        self.lock = lock
        self._take = take
        self._close = close

    def acquire(self) -> None:
        if not self._take():
            raise TimeoutError("lock not acquired")

    def release(self) -> None:
        self.lock.release()

    def close(self) -> None:
        self._close()


# --- ours ---------------------------------------------------------------------------------


Instrument = Callable[[coordination.Coordinator], None]


def our_lock(url: str, name: str, instrument: Instrument = lambda _coord: None) -> AdaptedLock:
    coord = coordination.connect(url)
    instrument(coord)
    lock = coord.lock(name)
    return AdaptedLock(lock, lambda: lock.acquire(timeout=120), coord.close)


class OurQueue:
    def __init__(self, url: str, name: str, instrument: Instrument = lambda _coord: None) -> None:
        self.coord = coordination.connect(url)
        instrument(self.coord)
        self.queue = self.coord.queue(name)

    def put(self, data: bytes) -> None:
        self.queue.put(data)

    def put_many(self, items: list[bytes]) -> None:
        self.queue.put_many(items)

    def take(self) -> bool:
        task = self.queue.get(timeout=0.2)
        if task is None:
            return False
        task.ack()
        return True

    def take_many(self, n: int) -> int:
        """What a batching worker loop does (``consume(batch=n)``): claim up to ``n``,
        ack the lot; how many were acked."""
        tasks = self.queue.get_many(n, timeout=0.2)
        return len(tasks) - len(self.queue.ack_many(tasks)) if tasks else 0

    def close(self) -> None:
        self.coord.close()


# --- kazoo --------------------------------------------------------------------------------


def _kazoo(endpoints: list[str]) -> Any:
    from kazoo.client import KazooClient

    client = KazooClient(hosts=",".join(endpoints), timeout=10)
    client.start(timeout=30)
    return client


def kazoo_lock(endpoints: list[str], name: str) -> AdaptedLock:
    client = _kazoo(endpoints)
    lock = client.Lock(f"/bench-kazoo/locks/{name}", uuid.uuid4().hex)
    return AdaptedLock(lock, lambda: lock.acquire(timeout=120), lambda: _stop_kazoo(client))


def _stop_kazoo(client: Any) -> None:
    client.stop()
    client.close()


class KazooQueue:
    """``Queue`` (get removes the item: at most once) or ``LockingQueue`` (get, then
    ``consume()``: at least once, the recipe comparable to ours)."""

    def __init__(self, endpoints: list[str], name: str, locking: bool) -> None:
        self.client = _kazoo(endpoints)
        self.locking = locking
        if locking:
            self.queue = self.client.LockingQueue(f"/bench-kazoo/lq/{name}")
        else:
            self.queue = self.client.Queue(f"/bench-kazoo/q/{name}")

    def put(self, data: bytes) -> None:
        self.queue.put(data)

    def put_many(self, items: list[bytes]) -> None:
        if self.locking:
            self.queue.put_all(items)  # one multi
        else:
            for item in items:  # kazoo's Queue has no batch put
                self.queue.put(item)

    def take(self) -> bool:
        if not self.locking:
            return self.queue.get() is not None
        if self.queue.get(timeout=0.2) is None:
            return False
        self.queue.consume()
        return True

    def close(self) -> None:
        _stop_kazoo(self.client)


# --- etcd-sdk-python ----------------------------------------------------------------------


def _etcd(endpoints: list[str]) -> Any:
    import pyetcd

    host, port = endpoints[0].rsplit(":", 1)
    return pyetcd.client(host=host, port=int(port))


def etcd_client_lock(endpoints: list[str], name: str) -> AdaptedLock:
    client = _etcd(endpoints)
    lock = client.lock(f"bench-etcd-sdk/{name}", ttl=10)
    return AdaptedLock(lock, lambda: lock.acquire(timeout=120), client.close)


# --- tooz ---------------------------------------------------------------------------------


def tooz_lock(tooz_url: str, name: str) -> AdaptedLock:
    from tooz import coordination as tooz_coordination

    coordinator = tooz_coordination.get_coordinator(tooz_url, uuid.uuid4().hex.encode())
    coordinator.start()
    lock = coordinator.get_lock(f"bench-tooz-{name}".encode())
    return AdaptedLock(lock, lambda: lock.acquire(blocking=120), coordinator.stop)


def etcd_gateway_missing(endpoint: str) -> str | None:
    """tooz's etcd driver speaks etcd's gRPC JSON gateway (``/v3/...`` over HTTP)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://{endpoint}/v3/kv/range", data=b'{"key": "eA=="}')
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return "this etcd build has no gRPC JSON gateway (/v3/... answers 404)"
    except OSError as exc:
        return f"gateway unreachable: {exc}"
    return None


def tooz_url(servers: Servers) -> str:
    if servers.backend == "zookeeper":
        return f"zookeeper://{servers.endpoints[0]}?timeout=10"
    return f"etcd3+http://{servers.endpoints[0]}?api_version=v3&timeout=10"


# --- Redis (reference: one server, no consensus, no fencing) ------------------------------


def _redis(port: int) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=port)


def redis_lock(port: int, name: str) -> AdaptedLock:
    client = _redis(port)
    lock = client.lock(f"bench-lock-{name}", timeout=10, sleep=0.002, blocking_timeout=120)
    return AdaptedLock(lock, lock.acquire, client.close)


class RedisQueue:
    def __init__(self, port: int, name: str) -> None:
        self.client = _redis(port)
        self.key = f"bench-queue-{name}"

    def put(self, data: bytes) -> None:
        self.client.lpush(self.key, data)

    def put_many(self, items: list[bytes]) -> None:
        self.client.lpush(self.key, *items)

    def take(self) -> bool:
        return self.client.brpop([self.key], timeout=0.2) is not None

    def take_many(self, n: int) -> int:
        """``BLMPOP``: up to ``n`` at once, waiting up to 0.2 s for the first (Redis 7)."""
        popped = self.client.blmpop(0.2, 1, self.key, direction="RIGHT", count=n)
        return len(popped[1]) if popped else 0

    def close(self) -> None:
        self.client.close()


# --- the line-ups -------------------------------------------------------------------------


def lock_subjects(servers: Servers) -> list[Subject]:
    url, endpoints = servers.url, servers.endpoints
    subjects = [Subject("coordination", lambda name: our_lock(url, name), ours=True)]
    if servers.backend == "zookeeper":
        subjects.append(Subject("kazoo Lock", lambda name: kazoo_lock(endpoints, name)))
        subjects.append(Subject("tooz (zookeeper)", lambda name: tooz_lock(tooz_url(servers), name)))
    else:
        subjects.append(Subject("etcd-sdk-python Lock", lambda name: etcd_client_lock(endpoints, name)))
        subjects.append(Subject("tooz (etcd3+http)", lambda name: tooz_lock(tooz_url(servers), name),
                                unavailable=etcd_gateway_missing(endpoints[0])))
    if servers.redis_port:
        port = servers.redis_port
        subjects.append(Subject("Redis SET NX (1 node)", lambda name: redis_lock(port, name),
                                reference=True))
    return subjects


def queue_subjects(servers: Servers) -> list[Subject]:
    url, endpoints = servers.url, servers.endpoints
    subjects = [Subject("coordination", lambda name: OurQueue(url, name), ours=True)]
    if servers.backend == "zookeeper":
        subjects.append(Subject("kazoo LockingQueue",
                                lambda name: KazooQueue(endpoints, name, locking=True)))
        subjects.append(Subject("kazoo Queue (no ack)",
                                lambda name: KazooQueue(endpoints, name, locking=False)))
    if servers.redis_port:
        port = servers.redis_port
        subjects.append(Subject("Redis LPUSH/BRPOP (1 node)", lambda name: RedisQueue(port, name),
                                reference=True))
    return subjects


def close_all(items: Iterable[Any]) -> None:
    for item in items:
        try:
            item.close()
        except Exception:  # noqa: BLE001 - a peer's close must not end the run
            pass
