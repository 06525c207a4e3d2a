"""Lock contract: one test body per point, run against every backend."""

from __future__ import annotations

import threading
import time

import pytest

import coordination
from coordination import errors

from .conftest import TTL
from .helpers import contenders, wait_for

pytestmark = pytest.mark.integration


def test_acquire_release_and_token(coord: coordination.Coordinator) -> None:
    lock = coord.lock("inventory/sku-42")
    assert not lock.held
    assert lock.acquire() is True
    assert lock.held and isinstance(lock.token, int) and lock.token >= 0
    lock.ensure_held()
    lock.release()
    assert not lock.held
    with pytest.raises(errors.NotHeld):
        lock.release()
    with pytest.raises(errors.NotHeld):
        lock.ensure_held()


def test_with_form_and_already_held(coord: coordination.Coordinator) -> None:
    with coord.lock("a", timeout=5) as held:
        assert held.held and held.token is not None
        with pytest.raises(errors.AlreadyHeld):
            held.acquire()
    assert not held.held


def test_mutual_exclusion_across_clients_of_different_nodes(
    cluster, connect, url: str
) -> None:
    hosts = ",".join(cluster.endpoints)
    assert hosts in url
    coords = [connect(url.replace(hosts, endpoint)) for endpoint in cluster.endpoints]
    first = coords[0].lock("sku")
    assert first.acquire(timeout=5)
    for other in coords[1:]:
        assert other.lock("sku").acquire(blocking=False) is False
    first.release()
    second = coords[2].lock("sku")
    assert second.acquire(timeout=5)
    assert second.token > first.token
    second.release()


def test_nonblocking_and_timeout_leave_nothing_behind(connect) -> None:
    holder, waiter = connect(), connect()
    lock = holder.lock("sku")
    assert lock.acquire()
    other = waiter.lock("sku")
    assert other.acquire(blocking=False) is False
    for timeout in (0.3, 1.0):
        started = time.monotonic()
        assert other.acquire(timeout=timeout) is False
        elapsed = time.monotonic() - started
        assert timeout <= elapsed <= timeout * 1.1 + 0.1, elapsed
    assert len(contenders(holder, lock)) == 1  # only the holder's entry
    lock.release()
    assert contenders(holder, lock) == []


def test_with_after_failed_acquire_raises_and_skips_body(connect) -> None:
    holder, waiter = connect(), connect()
    assert holder.lock("sku").acquire()
    ran = False
    with pytest.raises(errors.LockTimeout), waiter.lock("sku", timeout=0.2):
        ran = True
    assert not ran


def test_waiters_are_served_in_arrival_order_and_one_is_woken(connect, backend) -> None:
    holder = connect()
    lock = holder.lock("fifo")
    assert lock.acquire()
    waiters = [connect() for _ in range(4)]
    checks = []
    for waiter in waiters:  # count each waiter's reads of the queue and its waits
        counter = {"reads": 0, "waits": 0}
        impl = waiter.driver

        def reading(*args, original=impl.blockers, counter=counter):
            counter["reads"] += 1
            return original(*args)

        def waiting(*args, original=impl.watch_deleted, counter=counter):
            counter["waits"] += 1  # every wait arms its watches here (sync and async)
            return original(*args)

        impl.blockers = reading  # type: ignore[method-assign]
        impl.watch_deleted = waiting  # type: ignore[method-assign]
        checks.append(counter)
    order: list[int] = []
    threads = []
    done = [threading.Event() for _ in waiters]
    for index, waiter in enumerate(waiters):
        def run(index=index, waiter=waiter) -> None:
            mine = waiter.lock("fifo")
            assert mine.acquire(timeout=30)
            order.append(index)
            done[index].wait(30)
            mine.release()

        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)
        wait_for(lambda n=index: len(contenders(holder, lock)) == n + 2, 10, message="enqueued")
    wait_for(lambda: all(c["waits"] >= 1 for c in checks), 10, message="all waiting")
    before = [dict(c) for c in checks]
    if backend == "zookeeper":  # the listing sent behind the create named the blocker
        assert all(c["reads"] == 0 for c in before), before
    lock.release()
    wait_for(lambda: order[:1] == [0], 10, message="first waiter served")
    # The release woke the first waiter only; the others still wait on their watch.
    assert checks[1:] == before[1:]
    assert checks[0]["reads"] > before[0]["reads"]  # the woken one re-read the queue
    for event in done:
        event.set()
    for thread in threads:
        thread.join(30)
    assert order == [0, 1, 2, 3]


def test_tokens_strictly_increase_across_holders(connect) -> None:
    coords = [connect(), connect()]
    tokens = []
    for i in range(6):
        with coords[i % 2].lock("tokens", timeout=5) as held:
            tokens.append(held.token)
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


def test_same_name_is_same_lock_and_names_are_distinct(connect) -> None:
    a, b = connect(), connect()
    assert a.lock("x/y").acquire()
    assert b.lock("x/y").acquire(blocking=False) is False
    for other in ("x", "x/y/z", "x/yz", "xy"):  # prefixes never collide
        mine = b.lock(other)
        assert mine.acquire(blocking=False), other
        mine.release()


def test_two_lock_objects_in_one_client_exclude_each_other(coord) -> None:
    first, second = coord.lock("local"), coord.lock("local")
    assert first.acquire()
    assert second.acquire(timeout=0.2) is False
    released = threading.Timer(0.2, first.release)
    released.start()
    assert second.acquire(timeout=5)
    assert second.token > first.token
    second.release()


def test_close_releases_locks_at_once(connect) -> None:
    a, b = connect(), connect()
    assert a.lock("bye").acquire()
    a.close()
    started = time.monotonic()
    assert b.lock("bye").acquire(timeout=TTL)
    assert time.monotonic() - started < 1.0


def test_closed_client_fails_fast(connect) -> None:
    coord = connect()
    lock = coord.lock("c")
    coord.close()
    started = time.monotonic()
    with pytest.raises(errors.ClientClosed):
        lock.acquire(timeout=5)
    with pytest.raises(errors.ClientClosed):
        coord.lock("d")
    assert time.monotonic() - started < 1.0
    coord.close()  # idempotent


def test_reentrant_lock_is_released_by_as_many_releases(connect) -> None:
    a, b = connect(), connect()
    lock = a.lock("re", reentrant=True)
    assert lock.acquire(timeout=5)
    token = lock.token
    assert lock.acquire(timeout=0) and lock.token == token  # same hold, same token
    with lock:  # nested with-blocks too
        assert lock.held
    lock.release()
    assert lock.held and b.lock("re").acquire(blocking=False) is False
    lock.release()
    assert not lock.held
    with pytest.raises(errors.NotHeld):
        lock.release()
    theirs = b.lock("re")
    assert theirs.acquire(timeout=5)
    theirs.release()
    with pytest.raises(errors.AlreadyHeld), a.lock("plain") as plain:  # not reentrant
        plain.acquire()
    with pytest.raises(errors.InvalidArgument):
        a.lock("re", reentrant="yes")  # type: ignore[arg-type]


def test_reentrant_lock_makes_other_threads_wait_for_the_last_release(coord) -> None:
    lock = coord.lock("re-threads", reentrant=True)
    assert lock.acquire() and lock.acquire()
    outcome: list[object] = []

    def other_thread() -> None:
        try:
            lock.release()
        except errors.NotHeld:
            outcome.append("not owner")
        outcome.append(lock.acquire(timeout=0.2))
        outcome.append(lock.acquire(timeout=10))
        lock.release()

    thread = threading.Thread(target=other_thread)
    thread.start()
    wait_for(lambda: len(outcome) == 2, 10, message="other thread timed out once")
    assert outcome == ["not owner", False] and lock.held
    lock.release()
    assert len(outcome) == 2 and lock.held  # one release left: still ours
    lock.release()
    thread.join(10)
    assert outcome == ["not owner", False, True] and not lock.held


def test_a_waiter_is_not_stuck_when_its_predecessor_leaves_and_comes_back(connect, backend) -> None:
    # etcd: one session enters a lock under one key. The holder releases and queues
    # again (same key, new create revision) after the waiter read it as its predecessor
    # but before the waiter's watch began: the waiter must see that entry as gone, not
    # wait for the new one (which waits for the waiter) until its TTL re-check.
    if backend != "etcd":
        pytest.skip("etcd: a session's contender key is reused")
    holder_coord, waiter_coord = connect(), connect()
    holder, waiter = holder_coord.lock("sku"), waiter_coord.lock("sku")
    holder.acquire()
    backend_ = waiter_coord.driver
    watch = backend_.connection.watch_from_now
    requeued = threading.Thread(target=holder.acquire, kwargs={"timeout": 30})

    def leave_and_come_back(*args, **kwargs):
        if requeued.ident is None:  # the first watch only
            holder.release()
            requeued.start()
            wait_for(lambda: len(backend_.contenders(holder.path)) == 2, timeout=5,
                     message="the holder queued again")
        return watch(*args, **kwargs)

    backend_.connection.watch_from_now = leave_and_come_back
    started = time.monotonic()
    assert waiter.acquire(timeout=30)
    assert time.monotonic() - started < TTL / 2, "the waiter waited for a TTL re-check"
    waiter.release()
    requeued.join(10)
    assert holder.held
