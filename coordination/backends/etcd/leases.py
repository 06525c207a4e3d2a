"""An etcd backend's session generations: a lease each, kept alive by a thread.

A keepalive answered with TTL 0 or "lease not found" means the lease is gone; while
keepalives fail, the lease is presumed lost once its TTL has passed since the last
keepalive that the server confirmed (counted from when that keepalive was *sent*, so we
never outlive the server's view). A lease presumed lost stays lost: one confirmed after
that is revoked.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING

from ...errors import CoordinationError, SessionLost
from ...session import Session, SessionState
from .. import tls
from .connection import RPC_TIMEOUT, Connection

if TYPE_CHECKING:
    from .backend import EtcdBackend

log = logging.getLogger(__name__)


class Leases:
    """The current lease of a backend, the next one once it is lost, and the keepalive
    thread."""

    def __init__(self, backend: EtcdBackend, connection: Connection) -> None:
        self._backend = backend
        self._conn = connection
        self._ttl = max(1, math.ceil(backend.config.session_ttl))
        self._guard = threading.RLock()

    def start(self) -> None:
        """A client (see ``Connection.open``), a lease, and the thread that keeps the
        lease alive."""
        config = self._backend.config
        self._wake = threading.Event()
        self._session = tls.connect(config, self._open, config.connect_timeout)
        self._keepalive = threading.Thread(
            target=self._keepalive_loop, name="coordination-etcd-keepalive", daemon=True)
        self._keepalive.start()

    def _open(self, timeout: float) -> Session:
        self._conn.open(timeout)
        try:
            return self._grant(timeout)
        except CoordinationError:
            self._conn.client.close()
            raise

    def disown(self) -> None:
        """In a forked child: fresh guards; the parent's lease reads as lost here."""
        self._guard = threading.RLock()
        self._session.disown()

    def _grant(self, timeout: float) -> Session:
        granted = self._conn.grant(self._ttl, timeout)
        session = Session(granted.ID, float(granted.TTL))
        session.deadline = time.monotonic() + granted.TTL - 0.1
        return session

    @property
    def ttl(self) -> float:
        return self._session.ttl

    @property
    def current(self) -> Session:
        return self._session

    def session(self) -> Session:
        """The current lease, or a new one if it was lost."""
        self._backend.check_open()
        with self._guard:
            if not self._session.alive:
                self._backend.listeners.notify(self._session, SessionState.LOST)
                self._session = self._grant(self._backend.config.request_timeout)
                self._wake.set()
            return self._session

    def _keepalive_loop(self) -> None:
        while not self._backend.closed:
            with self._guard:
                session = self._session
            if session.alive:
                self._keep_alive_once(session)
            self._backend.removals.retry_if_due()
            self._wake.wait(max(0.05, session.ttl / 3.0 if session.alive else 0.5))
            self._wake.clear()

    def _keep_alive_once(self, session: Session) -> None:
        notify = self._backend.listeners.notify
        sent = time.monotonic()
        try:
            # pyetcd's refresh_lease is a generator: the call runs while it is iterated;
            # once: the next keepalive is the retry
            responses = self._conn.call(
                None, lambda: list(self._conn.client.refresh_lease(session.id)), timeout=0)
            ttl = responses[0].TTL if responses else 0
        except SessionLost:  # the lease is not found
            ttl = 0
        except CoordinationError as exc:  # transient: the deadline decides
            log.debug("etcd keepalive failed: %s", exc)
            if session.alive:
                notify(session, SessionState.SUSPENDED)
            elif not session.lost.is_set():
                notify(session, SessionState.LOST)
            return
        if ttl <= 0:  # TTL 0 is how etcd says the lease is gone; it raises no error
            notify(session, SessionState.LOST)
            return
        if not session.renew(sent + ttl - 0.1):
            # Confirmed too late: recipes may have been told the session is lost (a
            # claim given up, a lock released), so its keys must go now, not live on
            # with the lease that this keepalive just extended.
            notify(session, SessionState.LOST)
            try:
                self._conn.revoke(session.id, RPC_TIMEOUT)
            except CoordinationError:
                pass  # it expires after its TTL: nothing keeps it alive any more
            return
        if session.state == SessionState.SUSPENDED:
            notify(session, SessionState.CONNECTED)
            self._backend.removals.retry_soon()

    def close(self) -> Session | None:
        """Revoke the lease (its keys go at once, not after the TTL) and mark the
        backend closed; the lease, or None if it was closed already."""
        with self._guard:
            if self._backend.closed:
                return None
            session = self._session
            if session.alive and not self._backend.inherited:
                try:
                    self._conn.revoke(session.id, RPC_TIMEOUT)
                except CoordinationError:
                    pass
            self._backend.closed = True
        self._wake.set()
        return session

    def join(self) -> None:
        """Wait for the keepalive thread to end (after ``close``)."""
        if self._keepalive is not threading.current_thread():
            self._keepalive.join(timeout=RPC_TIMEOUT + 1.0)
