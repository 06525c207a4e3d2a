"""The kazoo client of a ZooKeeper backend: its session generations, and the one place
where requests are retried and kazoo's errors become ours (:meth:`Connection.call`).

kazoo stays SUSPENDED for a whole partition and hears of expiry on reconnect only, so
we declare the session lost by a local monotonic deadline: kazoo notices a dead link at
most 2/3 of the session timeout after the last reply, so a session SUSPENDED for 1/3 of
the timeout may already be expiring on the server. The lost session's client is then
closed and a new one opened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kazoo.client import KazooClient
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState
from kazoo.retry import KazooRetry

from ...errors import BackendUnavailable, ClientClosed, CoordinationError, SessionLost
from ...session import Session, SessionState
from .. import fork, tls
from ..calls import retrying, session_gone
from ..pause_watch import PAUSE_WATCH
from . import compat, security

if TYPE_CHECKING:
    from .backend import ZooKeeperBackend

log = logging.getLogger(__name__)

#: Longest wait for a state change of the client before ``session()`` looks again.
STATE_RECHECK = 0.25


class NodeMissing(CoordinationError):
    """The node a request named does not exist (kazoo's ``NoNodeError``)."""


class NodeNotEmpty(CoordinationError):
    """A delete of a node that has children (kazoo's ``NotEmptyError``)."""


class Connection:
    """One kazoo client at a time, replaced after a session presumed lost."""

    def __init__(self, backend: ZooKeeperBackend) -> None:
        self._backend = backend
        self.config = backend.config
        self._new_guards()
        self._negotiated: dict[int, float] = {}  # session id -> negotiated timeout (s)
        self._loss_timer: threading.Timer | None = None
        self._discarded = False  # the current client was closed after a presumed loss
        self.client: KazooClient = None  # the listener of the first client reads it
        self.client = tls.connect(self.config, self._open_client, self.config.connect_timeout)
        self._session = self._new_session(self.client)
        PAUSE_WATCH.subscribe(self)

    def _new_guards(self) -> None:
        self._guard = threading.RLock()
        self._changed = threading.Condition(self._guard)  # client or session state changed
        self._replace_guard = threading.Lock()

    # --- fork ----------------------------------------------------------------------------

    def disown(self) -> None:
        self._new_guards()
        self._loss_timer = None  # its thread is the parent's
        self._session.disown()

    def reconnect_in_child(self) -> None:
        fork.abandon(self.client)
        client = tls.connect(self.config, self._open_client, self.config.connect_timeout)
        with self._guard:
            self.client, self._discarded = client, False
            self._session = self._new_session(client)
        PAUSE_WATCH.subscribe(self)

    # --- clients and their sessions ------------------------------------------------------

    def _open_client(self, timeout: float) -> KazooClient:
        client = KazooClient(
            hosts=",".join(self.config.endpoints),
            timeout=self.config.session_ttl,
            connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.5),
            **security.client_options(self.config),
        )
        security.prepare(client)
        compat.on_connect(client, self._negotiated.__setitem__)
        client.add_listener(lambda state: self._on_state(client, state))
        try:
            client.start(timeout=timeout)
            security.check_identity(client, self.config)
        except (KazooTimeoutError, KazooException) as exc:
            _discard(client)
            raise BackendUnavailable(
                f"no ZooKeeper server of {self.config.endpoints} answered within {timeout:g}s"
            ) from exc
        except CoordinationError:
            _discard(client)
            raise
        return client

    def _new_session(self, client: KazooClient) -> Session:
        session_id = client.client_id[0] if client.client_id else 0
        session = Session(session_id, self._negotiated.get(session_id, self.config.session_ttl))
        # Fed by the pause watch from its next tick on; until then, a freeze right after
        # this (found by the election chaos test: a holder frozen 2 ms after its first
        # acquire) must end it as well.
        session.watchdog = time.monotonic() + session.ttl / 2
        return session

    def _notify(self, session: Session, state: SessionState) -> None:
        self._backend.listeners.notify(session, state)

    def _on_state(self, client: KazooClient, state: str) -> None:
        """kazoo's listener: runs in its connection thread, so it must not block."""
        with self._guard:
            if client is not self.client:
                return
            session = self._session
            if state == KazooState.SUSPENDED:
                session.deadline = time.monotonic() + max(0.0, session.ttl / 3.0 - 0.05)
                self._notify(session, SessionState.SUSPENDED)
                self._start_loss_timer(client, session)
            elif state == KazooState.LOST:
                self._cancel_loss_timer()
                self._notify(session, SessionState.LOST)
            elif state == KazooState.CONNECTED:
                self._cancel_loss_timer()
                if session.alive and client.client_id and client.client_id[0] == session.id:
                    session.deadline = None
                    self._notify(session, SessionState.CONNECTED)
                    self._backend.removals.retry_soon()
                elif session.state == SessionState.SUSPENDED:
                    # Back after the local deadline but before the loss timer ran (a busy
                    # machine runs timers late): recipes may have seen the session dead,
                    # so it stays dead; else our nodes would live on, unheld, blocking all.
                    self._declare_lost(client, session)
            self._changed.notify_all()

    def _start_loss_timer(self, client: KazooClient, session: Session) -> None:
        self._cancel_loss_timer()
        delay = max(0.0, (session.deadline or 0.0) - time.monotonic())
        timer = threading.Timer(delay, self._declare_lost, args=(client, session))
        timer.daemon = True
        self._loss_timer = timer
        timer.start()

    def _cancel_loss_timer(self) -> None:
        if self._loss_timer is not None:
            self._loss_timer.cancel()
            self._loss_timer = None

    def _declare_lost(self, client: KazooClient, session: Session) -> None:
        with self._guard:
            if client is not self.client or session.state != SessionState.SUSPENDED:
                return
            log.warning("ZooKeeper session %#x presumed lost (suspended too long)", session.id)
            self._notify(session, SessionState.LOST)
            self._discarded = True
            self._changed.notify_all()
        # Close the old session for good: if it came back, its ephemeral nodes would
        # outlive what we told the recipes.
        _discard_soon(client)

    def on_tick(self, now: float, gap: float) -> None:
        """From the process's pause watch. A process frozen (GC, SIGSTOP, swap) for half
        a session timeout may have let the server expire its session without kazoo
        noticing yet: presume it lost. The session's ``watchdog`` makes readers of
        ``alive`` see that at once on waking."""
        if self._backend.closed:
            return
        self._backend.removals.retry_if_due()
        with self._guard:
            session, client = self._session, self.client
        if gap < session.ttl / 2:
            session.watchdog = now + session.ttl / 2
        elif not session.lost.is_set():
            log.warning("process was frozen for %.2fs: ZooKeeper session %#x presumed lost",
                        gap, session.id)
            session.deadline = now  # not alive from now on, before the timer runs
            with self._guard:
                if client is self.client and session is self._session:
                    self._notify(session, SessionState.LOST)
                    self._discarded = True
                    _discard_soon(client)

    @property
    def session_ttl(self) -> float:
        return self._session.ttl

    def session(self) -> Session:
        """The current session, or a new one (see ``Backend.session``)."""
        deadline = time.monotonic() + self.config.request_timeout
        while True:
            self._backend.check_open()
            with self._guard:
                client = self.client
                if self._session.alive:
                    return self._session
                if self._session.state == SessionState.SUSPENDED:
                    self._declare_lost(client, self._session)  # past its deadline: lost
                client_id = client.client_id if client.connected else None
                if client_id and client_id[0] != self._session.id and not self._discarded:
                    # kazoo reconnected with a new session after an expiry
                    self._session = self._new_session(client)
                    return self._session
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BackendUnavailable("no new ZooKeeper session within the request timeout")
                if not self._discarded:
                    # kazoo reconnects by itself: wait for its next state change (the
                    # cap: a suspended session also dies by its deadline, not an event)
                    self._changed.wait(min(remaining, STATE_RECHECK))
                    continue
            with self._replace_guard:
                if self._discarded:
                    self._replace_client(remaining)

    def _replace_client(self, timeout: float) -> None:
        """After a locally declared loss the old client is discarded: open a new one."""
        new = self._open_client(min(timeout, self.config.connect_timeout))
        with self._guard:
            if self._backend.closed:
                _discard(new)
                self._backend.check_open()
            self.client = new
            self._session = self._new_session(new)
            self._discarded = False

    def close(self) -> None:
        """Mark the backend closed, end the session and stop the client."""
        with self._guard:
            if self._backend.closed:
                return
            self._backend.closed = True
            self._changed.notify_all()  # session() waiters: closed
            if self._backend.inherited:  # a forked child's copy: the client is the parent's
                return
            self._cancel_loss_timer()
            session, client = self._session, self.client
        # Outside the guard: it waits for the watch's thread, which may be waiting for
        # the guard in on_tick.
        PAUSE_WATCH.unsubscribe(self)
        _discard(client)
        session.set_state(SessionState.CLOSED)

    def describe(self) -> dict[str, Any]:
        return {"backend": "zookeeper", "hosts": self.config.endpoints, "session": self._session}

    # --- the one place for retries and error translation -------------------------------

    def call(self, session: Session | None, fn: str | Callable[..., Any], *args: Any,
             retry: bool = True, **kw: Any) -> Any:
        """Run ``fn`` (a kazoo client method name, or a callable) with retries on
        connection loss until the request timeout (``retry=False``: once; a connection
        loss is then ``BackendUnavailable`` at once).

        If ``session`` is given, the call must run in that session generation: once
        it is lost, ``SessionLost`` is raised instead of acting in a newer session.
        Without one, the call runs in the current generation, opening a new one if the
        last was lost. kazoo's errors become ours; ``NodeMissing`` and ``NodeNotEmpty``
        are for the driver to handle.
        """
        self._backend.check_open()

        def attempt() -> Any:
            if session is not None:
                session.check()
                client_id = self.client.client_id
                if client_id is not None and client_id[0] != session.id:
                    raise SessionLost(f"session {session.id:#x} is gone")
            elif self._discarded:
                self.session()  # replaces the client closed after a presumed loss
            if isinstance(fn, str):
                return getattr(self.client, fn)(*args, **kw)
            return fn(*args, **kw)

        def transient(exc: BaseException) -> bool:
            # Without a session to honour, an expiry is transient: kazoo opens a new one.
            return isinstance(exc, ConnectionLoss | OperationTimeoutError) or (
                session is None and isinstance(exc, SessionExpiredError))

        try:
            timeout = self.config.request_timeout if retry else 0.0
            return retrying(attempt, transient, timeout, "ZooKeeper",
                            lambda: self._backend.events.emit("request.retry"))
        except NoNodeError:
            raise NodeMissing(_path_of(args)) from None
        except NotEmptyError:
            raise NodeNotEmpty(_path_of(args)) from None
        except NoAuthError:
            what = fn if isinstance(fn, str) else getattr(fn, "__name__", "a request")
            raise security.denied(what, _path_of(args), self.config) from None
        except SessionExpiredError:
            raise session_gone(session, "ZooKeeper session expired", self._notify) from None
        except ConnectionClosedError:
            if self._backend.closed:
                raise ClientClosed("the coordinator is closed") from None
            raise SessionLost("ZooKeeper connection closed") from None
        except KazooException as exc:
            raise CoordinationError(f"ZooKeeper error: {type(exc).__name__}: {exc}") from None


def _path_of(args: tuple[Any, ...]) -> str:
    return next((a for a in args if isinstance(a, str) and a.startswith("/")), "?")


def _discard(client: KazooClient) -> None:
    """Stop a kazoo client and end its session, ignoring errors."""
    try:
        client.stop()
        client.close()
    except Exception:  # pragma: no cover - best effort
        log.debug("error while discarding a kazoo client", exc_info=True)


def _discard_soon(client: KazooClient) -> None:
    threading.Thread(target=_discard, args=(client,), daemon=True,
                     name="coordination-zk-discard").start()
