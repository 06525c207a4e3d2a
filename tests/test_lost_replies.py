"""Traps the peers fell into: lost create replies, adopting an old session's node,
stale releases, and sequence numbers compared as strings."""

from __future__ import annotations

import time

import pytest

import coordination
from coordination.backends.contenders import Contender
from coordination.backends.zookeeper.layout import CONTENDER_RE, sequence
from coordination.errors import BackendUnavailable

from .helpers import contenders

pytestmark = pytest.mark.integration


def test_a_create_whose_reply_was_lost_is_found_not_repeated(
        coord: coordination.Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write reaches the server but its reply is lost: the retry must find it."""
    backend = coord.driver
    lost_once = {"done": False}
    if coord.backend == "zookeeper":
        from kazoo.exceptions import ConnectionLoss

        client = backend.client  # type: ignore[attr-defined]
        real = client.create_async

        class LostReply:
            def __init__(self, applied) -> None:
                self.applied = applied

            def get(self, *args, **kwargs):
                self.applied.get(*args, **kwargs)  # the node is created ...
                raise ConnectionLoss("reply lost (injected)")  # ... but we never hear it

        def create_then_lose_reply(*args, **kwargs):
            result = real(*args, **kwargs)
            if not lost_once["done"]:
                lost_once["done"] = True
                return LostReply(result)
            return result

        client.create_async = create_then_lose_reply
    else:
        from pyetcd.exceptions import ConnectionFailedError

        from coordination.backends.etcd import compat

        real = compat.unary

        def txn_then_lose_reply(client, stub, method, request, timeout=None):
            result = real(client, stub, method, request, timeout)
            if method == "Txn" and not lost_once["done"]:
                lost_once["done"] = True
                raise ConnectionFailedError()
            return result

        monkeypatch.setattr(compat, "unary", txn_then_lose_reply)
    lock = coord.lock("sku")
    assert lock.acquire(timeout=5)
    assert lost_once["done"]
    assert len(contenders(coord, lock)) == 1  # one entry, and it is ours
    lock.release()
    assert contenders(coord, lock) == []


def test_a_failed_acquire_whose_create_applied_leaves_no_entry(connect, backend: str) -> None:
    """Every create reply and every lookup is lost until the request timeout: acquire
    fails, and the node it did create, which would block everyone while our session
    lives, is removed once the servers answer again (the reconnect sweep)."""
    if backend != "zookeeper":
        pytest.skip("ZooKeeper-specific: etcd's contender key is known before the create")
    from kazoo.exceptions import ConnectionLoss

    coord = connect(request_timeout=1)
    backend_ = coord.driver
    client = backend_.client  # type: ignore[attr-defined]
    real_create, real_find = client.create_async, backend_._find_own  # type: ignore[attr-defined]

    class LostReply:
        def __init__(self, applied) -> None:
            self.applied = applied

        def get(self, *args, **kwargs):
            self.applied.get(*args, **kwargs)
            raise ConnectionLoss("reply lost (injected)")

    def lost(*args, **kwargs):
        raise ConnectionLoss("reply lost (injected)")

    def create(*args, **kwargs):  # contender creates only (not kazoo's makepath)
        result = real_create(*args, **kwargs)
        return LostReply(result) if kwargs.get("sequence") else result

    client.create_async = create
    backend_._find_own = lost  # type: ignore[attr-defined]
    lock = coord.lock("sku")
    with pytest.raises(BackendUnavailable):
        lock.acquire(timeout=5)
    client.create_async, backend_._find_own = real_create, real_find  # type: ignore[attr-defined]
    assert len(contenders(coord, lock)) >= 1  # created, and still there ...
    deadline = time.monotonic() + 5  # ... until the background sweep (every second)
    while contenders(coord, lock) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert contenders(coord, lock) == []
    other = connect().lock("sku")
    assert other.acquire(timeout=2)
    other.release()


def test_zookeeper_never_adopts_a_node_of_another_session(connect, backend: str) -> None:
    if backend != "zookeeper":
        pytest.skip("ZooKeeper-specific")
    ours, theirs = connect(), connect()
    path = ours.lock("sku").path
    prefix = "0123456789abcdef0123456789abcdef__lock__"
    theirs.driver.client.create(  # type: ignore[attr-defined]
        f"{path}/{prefix}", b"", ephemeral=True, sequence=True, makepath=True
    )
    session = ours.driver.session()
    assert ours.driver._find_own(path, prefix, session) is None  # type: ignore[attr-defined]


def test_a_stale_retried_release_never_deletes_a_newer_entry(coord: coordination.Coordinator) -> None:
    lock = coord.lock("sku")
    assert lock.acquire()
    old: Contender = lock._entry  # type: ignore[assignment]
    lock.release()
    assert lock.acquire()  # etcd: same lease, same key, newer create revision
    coord.driver._delete_entry(old)  # the old release, retried late
    assert lock.held and len(contenders(coord, lock)) == 1
    lock.release()


def test_sequence_numbers_compare_as_integers() -> None:
    names = ["a__lock__0000000010", "b__lock__0000000009", "c-lock-0000000100", "d__lock__-2147483648"]
    assert sorted(names, key=sequence) == [names[3], names[1], names[0], names[2]]
    assert CONTENDER_RE.search("not-a-contender") is None
