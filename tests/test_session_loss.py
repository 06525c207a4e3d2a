"""Session loss: ``held`` turns False, ``ensure_held`` raises ``LockLost``, callbacks
run, and others get the lock. The loss is real: the ZooKeeper session is expired on the
server (a second handle with the same id and password closes it); the etcd lease is
revoked on the server."""

from __future__ import annotations

import threading
import uuid

import grpc
import pytest
from kazoo.client import KazooClient

import coordination
from coordination import errors
from coordination.backends.zookeeper.security import client_options
from coordination.lab.proxy import ProxiedCluster
from coordination.session import Session, SessionState

from .conftest import TTL
from .helpers import contenders, wait_for

pytestmark = pytest.mark.integration


def expire_session(coord: coordination.Coordinator, session: Session | None = None) -> None:
    """End ``coord``'s current session (or ``session``) on the server side."""
    backend = coord.driver
    session = session or backend.session()
    if coord.backend == "zookeeper":
        session_id, password = backend.client.client_id  # type: ignore[attr-defined]
        twin = KazooClient(hosts=",".join(coord.config.endpoints), client_id=(session_id, password),
                           **client_options(coord.config))
        twin.start(timeout=10)
        twin.stop()  # closing the twin closes the shared session on the server
        twin.close()
    else:
        try:
            backend.connection.client.revoke_lease(session.id)  # type: ignore[attr-defined]
        except grpc.RpcError as exc:
            # Revoked already: the backend ends on the server a session it found past
            # its local deadline (tests that set that deadline race it here).
            if exc.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                raise


def test_lost_session_is_noticed_and_lock_passes_on(connect, caplog) -> None:
    owner, other = connect(), connect()
    lock = owner.lock("sku")
    lost = threading.Event()

    def failing(_lock: object) -> None:
        raise RuntimeError("a callback that fails")

    lock.on_lost(failing)  # logged, and the next callback still runs
    lock.on_lost(lambda _lock: lost.set())
    states: list[SessionState] = []
    owner.add_listener(states.append)
    assert lock.acquire()
    token = lock.token
    expire_session(owner)
    assert lost.wait(TTL * 2), "lost callback did not run"
    assert any("on_lost callback" in r.getMessage() and r.exc_info for r in caplog.records)
    assert not lock.held
    with pytest.raises(errors.LockLost):
        lock.ensure_held()
    assert SessionState.LOST in states
    theirs = other.lock("sku")
    assert theirs.acquire(timeout=TTL)
    assert theirs.token > token
    with pytest.raises(errors.LockLost):
        lock.release()  # the lost hold is reported, never silently "released"
    # The coordinator recovers with a new session and works again.
    theirs.release()
    assert lock.acquire(timeout=10) and lock.held
    lock.release()


def test_waiter_whose_session_is_lost_does_not_hold_a_dead_entry(connect) -> None:
    holder, waiter = connect(), connect()
    lock = holder.lock("sku")
    assert lock.acquire()
    mine = waiter.lock("sku")
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(mine.acquire(timeout=20)))
    thread.start()
    wait_for(lambda: len(contenders(holder, lock)) == 2, 10, message="waiter enqueued")
    old = waiter.driver.session()
    expire_session(waiter)
    wait_for(lambda: not old.alive, TTL * 2, message="waiter noticed its loss")
    lock.release()
    thread.join(20)
    assert result == [True]
    # It holds through a live session, with an entry that is really on the server.
    assert mine.held and mine._entry.session is not old  # type: ignore[union-attr]
    assert mine._entry.key.rsplit("/", 1)[-1] in [  # type: ignore[union-attr]
        c.rsplit("/", 1)[-1] for c in contenders(holder, lock)
    ]
    mine.release()
    assert contenders(holder, lock) == []


def test_the_session_ttl_is_the_one_the_server_granted(connect, backend: str) -> None:
    """A TTL below the server's minimum is raised by the server; loss timers must use
    the raised one (ZooKeeper here: 2 ticks of 500 ms)."""
    coord = connect(session_ttl=0.5)
    ttl = coord.driver.session().ttl
    if backend == "zookeeper":
        assert ttl == 1.0
    else:
        assert ttl >= 1.0
    # What observers and queue waits size themselves by, read without opening a session
    # (they used the TTL asked for, or waited for a session just to size a wait).
    assert coord.driver.session_ttl == ttl


def test_a_release_right_after_a_server_side_expiry_reports_the_loss(connect) -> None:
    """The server ended the session a moment ago and the client has not heard yet: the
    release finds its entry gone and raises ``LockLost``, never a silent success (the
    next holder may already be in)."""
    owner = connect()
    lock = owner.lock("sku")
    assert lock.acquire()
    expire_session(owner)
    with pytest.raises(errors.LockLost):
        lock.release()


def test_a_reconnect_after_the_local_deadline_still_ends_the_session(cluster, backend) -> None:
    # ZooKeeper: the link comes back after our local deadline but before the server
    # expires the session, and the loss timer has not run (a busy machine runs timers
    # late; here it never runs). The session must still end: recipes may already have
    # seen it dead, and its nodes must not outlive that, blocking everyone.
    if backend != "zookeeper":
        pytest.skip("ZooKeeper's local loss deadline")
    proxied = ProxiedCluster(backend, cluster.url.split("://", 1)[1].split(","))
    namespace = f"r{uuid.uuid4().hex[:10]}"
    holder = coordination.connect(f"{proxied.url}/{namespace}?session_ttl={TTL}")
    other = coordination.connect(f"{cluster.url}/{namespace}?session_ttl={TTL}")
    try:
        holder.driver.connection._start_loss_timer = lambda *_args: None  # type: ignore[attr-defined]
        lock = holder.lock("sku")
        assert lock.acquire()
        session = holder.driver.session()
        proxied.set_mode("reset")  # SUSPENDED at once; the server keeps the session
        wait_for(lambda: not lock.held, TTL, message="the holder's local deadline")
        proxied.heal()  # kazoo reconnects within the server's timeout, same session
        wait_for(lambda: session.state == SessionState.LOST, TTL * 2,
                 message="the late reconnect ended the session")
        theirs = other.lock("sku")
        assert theirs.acquire(timeout=TTL * 3), "the dead hold's node blocks the lock"
        theirs.release()
        assert lock.acquire(timeout=TTL * 3)  # the holder goes on in a new session
        lock.release()
    finally:
        holder.close()
        other.close()
        proxied.close()


def test_a_keepalive_confirmed_after_the_local_deadline_ends_the_lease(cluster, backend) -> None:
    # etcd: a keepalive held up on the way (here by the proxy) reaches the server after
    # our local deadline, and its reply would extend a lease that recipes were already
    # told is lost (a lock given up, a task's ack abandoned). The lease must end, or its
    # keys would live on, unheld, blocking everyone (found by the queue's leader-kill
    # chaos scenario: a task claimed just before stayed in flight for good).
    if backend != "etcd":
        pytest.skip("etcd's lease keepalive")
    proxied = ProxiedCluster(backend, cluster.url.split("://", 1)[1].split(","))
    namespace = f"r{uuid.uuid4().hex[:10]}"
    holder = coordination.connect(f"{proxied.url}/{namespace}?session_ttl={TTL}")
    other = coordination.connect(f"{cluster.url}/{namespace}?session_ttl={TTL}")
    try:
        lock = holder.lock("sku")
        assert lock.acquire()
        session = holder.driver.session()
        proxied.set_mode("blackhole")  # keepalives wait in the proxy
        wait_for(lambda: not session.alive, TTL * 2, interval=0.005,
                 message="the holder's local deadline")
        proxied.heal()  # the held keepalive goes through: the server may extend the lease
        wait_for(lambda: session.state == SessionState.LOST, TTL * 2,
                 message="the session ended")
        theirs = other.lock("sku")
        assert theirs.acquire(timeout=TTL * 3), "the dead hold's key blocks the lock"
        theirs.release()
        assert not session.alive
    finally:
        holder.close()
        other.close()
        proxied.close()
