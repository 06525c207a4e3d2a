"""etcd backend (etcd-sdk-python): a session is a lease kept alive by a thread;
contenders are keys attached to it, ordered by create revision.

Layout: recipe ``kind``/``name`` lives under the prefix ``/NAMESPACE/KIND/NAME/``
(the name percent-encoded, so the prefix of ``a`` never contains the keys of ``ab`` or
``a/b``); a lock contender is ``PREFIX/LEASE_ID_HEX``, the layout of etcd's
``concurrency.Mutex`` (and ``etcdctl lock``) so that both exclude each other. The
create revision of our key is the fencing token. Contenders of a kind (read-write
locks, semaphores) are ``PREFIX/KIND/UUID``: many per lease, and a reader finds the
last writer before it with one ranged read of ``PREFIX/lock/``.

Session handling lives here only: a keepalive answered with TTL 0 or "lease not found"
means the lease is gone; while keepalives fail, the lease is presumed lost once its TTL
has passed since the last keepalive that the server confirmed (counted from when that
keepalive was *sent*, so we never outlive the server's view).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import grpc
import pyetcd
from pyetcd import etcdrpc
from pyetcd import events as etcd_events
from pyetcd import exceptions as etcd_errors
from pyetcd.utils import prefix_range_end
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from ..config import Config
from ..errors import (
    AuthenticationFailed,
    BackendUnavailable,
    ClientClosed,
    CoordinationError,
    InvalidArgument,
    PermissionDenied,
    SessionLost,
)
from ..session import Session, SessionState
from . import etcd_auth, fork, tls
from .base import MUTEX, Backend, Blocker, Contender, Head, Listed, Rule
from .etcd_auth import TokenExpired
from .etcd_dirs import Directories, marker_ops
from .kv import Absent, Check, Create, Delete, Entry, Op, OutcomeUnknown, Present

log = logging.getLogger(__name__)
T = TypeVar("T")

#: One RPC may take this long before we fail over to another endpoint.
RPC_TIMEOUT = 2.0
_TRANSIENT = (
    TokenExpired,
    etcd_errors.ConnectionFailedError,
    etcd_errors.ConnectionTimeoutError,
    etcd_errors.NoServerAvailableError,
    etcd_errors.InternalServerError,
    etcd_errors.WatchTimedOut,
)


class LeaseGone(Exception):
    """Internal: the server says our lease does not exist any more."""


class Compacted(CoordinationError):
    """Internal: a read at a revision that a compaction has removed since."""


#: Reads at one revision retried after a compaction removed it, before giving up.
_COMPACTED_RETRIES = 5


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _TRANSIENT)


class _EtcdKV:
    """The transactional key-value primitive (kv.py) on etcd: one Txn per commit."""

    def kv_root(self: EtcdBackend, kind: str, name: str) -> str:  # type: ignore[misc]
        return self.recipe_path(kind, name).rstrip("/")

    def kv_get(self: EtcdBackend, key: str) -> Entry | None:  # type: ignore[misc]
        reply = self.range(None, etcdrpc.RangeRequest(key=key.encode()))
        if not reply.kvs:
            return None
        kv = reply.kvs[0]
        return Entry(key, kv.value, kv.mod_revision, kv.mod_revision, kv.lease)

    def kv_commit(  # type: ignore[misc]
        self: EtcdBackend, checks: Sequence[Check], ops: Sequence[Op],
        session: Session | None = None
    ) -> int | None:
        compare = []
        for check in checks:
            if isinstance(check, Absent):
                compare.append(_created(check.key.encode(), 0))
            elif isinstance(check, Present):
                compare.append(etcdrpc.Compare(
                    key=check.key.encode(), target=etcdrpc.Compare.CREATE,
                    result=etcdrpc.Compare.GREATER, create_revision=0,
                ))
            else:
                compare.append(etcdrpc.Compare(
                    key=check.key.encode(), target=etcdrpc.Compare.MOD,
                    result=etcdrpc.Compare.EQUAL, mod_revision=check.version,
                ))
        success = []
        for op in ops:
            if isinstance(op, Delete):
                success.append(etcdrpc.RequestOp(
                    request_delete_range=etcdrpc.DeleteRangeRequest(key=op.key.encode())))
            else:
                lease = 0
                if isinstance(op, Create) and op.ephemeral:
                    if session is None:
                        raise InvalidArgument("an ephemeral create needs a session")
                    lease = int(session.id)
                success.append(etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
                    key=op.key.encode(), value=op.value, lease=lease)))
        success += marker_ops(ops)
        request = etcdrpc.TxnRequest(compare=compare, success=success)
        try:
            reply = self._call(session, self._rpc, "kvstub", "Txn", request, timeout=0)
        except BackendUnavailable as exc:
            # The Txn may have been applied before the connection broke.
            raise OutcomeUnknown(str(exc)) from None
        return reply.header.revision if reply.succeeded else None

    def kv_next_write(self: EtcdBackend, key: str, version: int) -> bytes | None:  # type: ignore[misc]
        # The watch replays the key's history from the revision after ``version``; a
        # write that came is there at once, so RPC_TIMEOUT without one means none came.
        watch = functools.partial(self._client.watch_once_response, key.encode(),
                                  timeout=RPC_TIMEOUT, start_revision=version + 1)
        try:
            response = self._call(None, watch, timeout=RPC_TIMEOUT)
        except (CoordinationError, etcd_errors.WatchTimedOut):
            return None
        # pyetcd hands a compaction or a broken stream over in place of a response.
        events = getattr(response, "events", None)
        if events and isinstance(events[0], etcd_events.PutEvent):
            return bytes(events[0].value)
        return None

    def kv_written_version(self: EtcdBackend, stamp: int, before: Entry | None) -> int:  # type: ignore[misc]
        return stamp  # a key's mod revision is the revision of the transaction that wrote it

    def kv_leaves(self: EtcdBackend, root: str, depth: int, limit: int) -> list[str]:  # type: ignore[misc]
        if depth > 1:
            return self._dirs.leaves(root, depth, limit)
        prefix = (root + "/").encode()
        return [key.decode() for key in self._range_keys(prefix, prefix_range_end(prefix), limit)]

    def _range_keys(self: EtcdBackend, start: bytes, end: bytes, limit: int) -> list[bytes]:  # type: ignore[misc]
        reply = self.range(None, etcdrpc.RangeRequest(
            key=start, range_end=end, limit=limit, keys_only=True))
        return [kv.key for kv in reply.kvs]

    def _index_txn(self: EtcdBackend, request: etcdrpc.TxnRequest) -> bool:  # type: ignore[misc]
        """One attempt at an index upkeep transaction; a failure is left for later."""
        try:
            return bool(self._call(None, self._rpc, "kvstub", "Txn", request, timeout=0).succeeded)
        except CoordinationError:
            return False

    def kv_counts(self: EtcdBackend, roots: Sequence[tuple[str, int]]) -> list[int]:  # type: ignore[misc]
        for _attempt in range(_COMPACTED_RETRIES):
            counts: list[int] = []
            revision = 0  # the first read's revision pins the others to the same instant
            try:
                for root, _depth in roots:
                    prefix = (root + "/").encode()
                    reply = self.range(None, etcdrpc.RangeRequest(
                        key=prefix, range_end=prefix_range_end(prefix), count_only=True,
                        revision=revision))
                    revision = revision or reply.header.revision
                    counts.append(int(reply.count))
                return counts
            except Compacted:  # compacted past the first read's revision meanwhile
                continue
        raise BackendUnavailable("etcd compacted every snapshot of the counts before it was read")

    def kv_wait(self: EtcdBackend, key: str, seen: Entry | None, timeout: float) -> None:  # type: ignore[misc]
        woken = threading.Event()
        try:
            watch_id = self._watch_from_now(None, key.encode(), lambda _r: woken.set())
        except CoordinationError:
            time.sleep(min(timeout, 0.1))
            return
        try:
            current = self.kv_get(key)  # what changed before the watch began
            if (current is None) == (seen is None) and (
                    current is None or seen is None or current.version == seen.version):
                woken.wait(timeout)
        except CoordinationError:
            return  # the caller reads again
        finally:
            self._cancel_watch(watch_id)


class EtcdBackend(_EtcdKV, Backend):
    name = "etcd"
    one_entry_per_session = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._guard = threading.RLock()
        self._auth_guard = threading.Lock()
        self._idle = threading.Condition()  # notified when a call ends
        self._in_flight = 0
        self._ttl = max(1, math.ceil(config.session_ttl))
        self._dirs = Directories(self._range_keys, self._index_txn)
        self._connect()

    def _connect(self) -> None:
        """A client (authenticated, if we have a user), a lease, and the thread that keeps
        the lease alive."""
        self._wake_keepalive = threading.Event()
        self._session = tls.connect(self.config, self._open, self.config.connect_timeout)
        self._keepalive = threading.Thread(
            target=self._keepalive_loop, name="coordination-etcd-keepalive", daemon=True
        )
        self._keepalive.start()

    def _open(self, timeout: float) -> Session:
        """A client, authenticated if we have a user, and a lease within ``timeout``;
        on failure the client is closed again."""
        self._client = pyetcd.MultiEndpointEtcd3Client(
            endpoints=etcd_auth.endpoints(self.config),
            timeout=min(RPC_TIMEOUT, self.config.request_timeout), failover=True,
        )
        try:
            if self.config.username is not None:
                self._call(None, etcd_auth.authenticate, self._client, self.config,
                           timeout=timeout)
            return self._grant(timeout)
        except CoordinationError:
            self._client.close()
            raise

    def _disown_parent(self) -> None:
        self._guard = threading.RLock()
        self._auth_guard = threading.Lock()
        self._idle, self._in_flight = threading.Condition(), 0
        self._session.disown()

    def _reconnect_in_child(self) -> None:
        fork.abandon(self._client)
        self._connect()

    # --- the one place for retries and error translation -------------------------------

    def _call(
        self, session: Session | None, fn: Callable[..., T], *args: Any,
        timeout: float | None = None, **kw: Any,
    ) -> T:
        """Run ``fn`` with failover retries until the request timeout.

        If ``session`` is given and its lease is gone, ``SessionLost`` is raised.
        """
        self.check_open()
        if session is not None:
            session.check()
        retrying = Retrying(
            stop=stop_after_delay(self.config.request_timeout if timeout is None else timeout),
            wait=wait_exponential(multiplier=0.02, max=0.5),
            retry=retry_if_exception(_is_transient),
            reraise=False,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self.check_open()
                    sent = self._client.metadata
                    try:
                        return self._translate(fn, *args, **kw)
                    except TokenExpired:
                        self._renew_token(sent)
                        raise  # retried with the new token
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise BackendUnavailable(
                f"etcd did not answer within the request timeout ({type(last).__name__}: {last})"
            ) from None
        except LeaseGone:
            if session is not None:
                self._notify(session, SessionState.LOST)
            raise SessionLost("etcd lease not found") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _renew_token(self, refused: Any) -> None:
        """etcd refused the token sent as ``refused``: get a new one, once for all the
        threads that were refused it."""
        if self.config.username is None:
            raise AuthenticationFailed("etcd wants a user and password: set username")
        with self._auth_guard:
            if self._client.metadata is refused:
                self._translate(etcd_auth.authenticate, self._client, self.config)

    def _translate(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        self._enter_call()
        try:
            return fn(*args, **kw)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.NOT_FOUND and "lease" in details:
                raise LeaseGone() from None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                        grpc.StatusCode.CANCELLED):
                try:
                    self._client._manage_grpc_errors(exc)  # marks the endpoint failed
                except Exception as translated:
                    raise etcd_errors.ConnectionFailedError() from translated
            if code == grpc.StatusCode.OUT_OF_RANGE:
                raise Compacted(f"etcd: {details}") from None
            if code == grpc.StatusCode.UNAUTHENTICATED or "auth store is old" in details:
                raise TokenExpired() from None
            if code == grpc.StatusCode.PERMISSION_DENIED:
                who = self.config.username or "the CN of our client certificate"
                raise PermissionDenied(f"etcd denied {etcd_auth.describe(args)} to user "
                                       f"{who!r}: outside the key prefixes its roles grant") from None
            if code == grpc.StatusCode.INVALID_ARGUMENT or "too large" in details:
                raise InvalidArgument(f"etcd rejected the request: {details}") from None
            raise CoordinationError(f"etcd error {code.name}: {details}") from None
        except (ValueError, TypeError) as exc:  # protobuf field errors
            raise InvalidArgument(f"bad etcd request: {exc}") from None
        finally:
            self._exit_call()

    def _enter_call(self) -> None:
        """Count a call that uses the client; none starts once ``close()`` began: a gRPC
        channel closed under a call, or a stub made on a closed one, crashed the process
        (SIGSEGV, found by the election chaos scenario: an observer's watch cancelled
        while another thread closed the coordinator)."""
        with self._idle:
            if self.closed:
                raise ClientClosed("the coordinator is closed")
            self._in_flight += 1

    def _exit_call(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _rpc(self, stub: str, method: str, request: Any, timeout: float | None = None) -> Any:
        """One raw gRPC call on the current endpoint (for requests pyetcd cannot build)."""
        call = getattr(getattr(self._client, stub), method)
        return call(
            request, timeout or self._client.timeout,
            credentials=self._client.call_credentials, metadata=self._client.metadata,
        )

    def _watch_from_now(self, session: Session | None, key: bytes,
                        callback: Callable[[Any], None], range_end: bytes | None = None) -> int:
        """Watch ``key`` (up to ``range_end``) from the server's current revision on; the
        caller reads the key afterwards, for changes made before. Not from a past revision: etcd hands such a
        watch to a catch-up loop that runs every 100 ms, so its first event comes up to
        100 ms late (measured here: 92 ms median, against 2 ms from now)."""
        return self._call(session, self._client.add_watch_callback, key, callback,
                          range_end=range_end)

    def _cancel_watch(self, watch_id: int) -> None:
        try:
            self._enter_call()
        except ClientClosed:
            return  # closing the client ends its watches
        try:
            self._client.cancel_watch(watch_id)
        except Exception:  # the watch stream may already be gone
            pass
        finally:
            self._exit_call()

    def txn(self, session: Session | None, request: etcdrpc.TxnRequest) -> Any:
        return self._call(session, self._rpc, "kvstub", "Txn", request)

    def range(self, session: Session | None, request: etcdrpc.RangeRequest) -> Any:
        return self._call(session, self._rpc, "kvstub", "Range", request)

    # --- sessions (leases) -------------------------------------------------------------

    def _grant(self, timeout: float) -> Session:
        lease = self._call(None, self._client.lease, self._ttl, timeout=timeout)
        session = Session(lease.id, float(lease.ttl))
        session.deadline = time.monotonic() + lease.ttl - 0.1
        return session

    @property
    def session_ttl(self) -> float:
        return self._session.ttl

    def session(self) -> Session:
        self.check_open()
        with self._guard:
            if not self._session.alive:
                self._notify(self._session, SessionState.LOST)
                self._session = self._grant(self.config.request_timeout)
                self._wake_keepalive.set()
            return self._session

    def _keepalive_loop(self) -> None:
        while not self.closed:
            with self._guard:
                session = self._session
            if session.alive:
                self._keep_alive_once(session)
            self.sweep_orphans_if_due()
            self._wake_keepalive.wait(max(0.05, session.ttl / 3.0 if session.alive else 0.5))
            self._wake_keepalive.clear()

    def _keep_alive_once(self, session: Session) -> None:
        sent = time.monotonic()
        try:
            # pyetcd's refresh_lease is a generator: the call runs while it is iterated
            responses = self._translate(lambda: list(self._client.refresh_lease(session.id)))
            ttl = responses[0].TTL if responses else 0
        except LeaseGone:
            ttl = 0
        except Exception as exc:  # transient: the deadline decides
            log.debug("etcd keepalive failed: %s", exc)
            if session.alive:
                self._notify(session, SessionState.SUSPENDED)
            elif not session.lost.is_set():
                self._notify(session, SessionState.LOST)
            return
        if ttl <= 0:  # TTL 0 is how etcd says the lease is gone; it raises no error
            self._notify(session, SessionState.LOST)
            return
        session.deadline = sent + ttl - 0.1
        if session.state == SessionState.SUSPENDED:
            self._notify(session, SessionState.CONNECTED)
            threading.Thread(target=self.sweep_orphans, daemon=True,
                             name="coordination-orphan-sweep").start()

    def close(self) -> None:
        if not self.closed:
            self._stop_companions()
        with self._guard:
            if self.closed:
                return
            if self._inherited:  # a forked child's copy: the client is the parent's
                self.closed = True
                return
            session = self._session
            if session.alive:
                try:  # deletes our keys at once instead of after the TTL
                    self._call(None, self._client.revoke_lease, session.id, timeout=2.0)
                except CoordinationError:
                    pass
            self.closed = True
        self._wake_keepalive.set()
        session.set_state(SessionState.CLOSED)
        with self._idle:  # calls of other threads (see _enter_call) end first
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=RPC_TIMEOUT + 1.0)
        if self._keepalive is not threading.current_thread():
            self._keepalive.join(timeout=RPC_TIMEOUT + 1.0)
        self._client.close()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "endpoints": self.config.endpoints,
                "session": self._session}

    # --- paths -------------------------------------------------------------------------

    def recipe_path(self, kind: str, name: str) -> str:
        return f"/{self.config.namespace}/{kind}/{quote(name, safe='')}/"

    def raw_path(self, path: str) -> str:
        return path + "/"  # etcd's Mutex uses NAME + "/" as its prefix

    # --- the ordered contender queue ---------------------------------------------------

    def enqueue(self, path: str, data: bytes, kind: str | None = None, rule: Rule = MUTEX
                ) -> tuple[Contender, list[Blocker] | None]:
        """One transaction, like etcd's Mutex.tryAcquire: create our key if missing (a
        retry after a lost reply finds it instead) and read the first contender (first:
        nothing blocks us under any rule; else unknown)."""
        session = self.session()
        if kind is None:
            key = f"{path}{session.id:x}".encode()
        else:  # fixed before the first try, so a retried create finds it
            key = f"{path}{kind}/{uuid.uuid4().hex}".encode()
        first = _range_first(path)
        reply = self.txn(session, etcdrpc.TxnRequest(
            compare=[_created(key, 0)],
            success=[
                etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
                    key=key, value=data, lease=session.id)),
                etcdrpc.RequestOp(request_range=first),
            ],
            failure=[
                etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key)),
                etcdrpc.RequestOp(request_range=first),
            ],
        ))
        if reply.succeeded:
            token = reply.header.revision
        else:  # our key is there already: a lost reply, or a removal still pending
            token = reply.responses[0].response_range.kvs[0].create_revision
            self.adopt(key.decode())
        owner = reply.responses[1].response_range.kvs
        is_first = bool(owner) and owner[0].create_revision == token
        return Contender(path, key.decode(), token, session), [] if is_first else None

    def predecessor(self, me: Contender) -> Blocker | None:
        """The last key created before ours (a ranged read with a limit of one), read
        in a transaction that also proves our own key is still there."""
        key = me.key.encode()
        reply = self.txn(me.session, etcdrpc.TxnRequest(
            compare=[_created(key, me.token)],
            success=[etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(
                key=me.path.encode(), range_end=prefix_range_end(me.path.encode()),
                sort_target=etcdrpc.RangeRequest.CREATE,
                sort_order=etcdrpc.RangeRequest.DESCEND,
                max_create_revision=me.token - 1, limit=1, keys_only=True,
            ))],
        ))
        if not reply.succeeded:
            raise SessionLost(f"our contender key {me.key} is gone")
        kvs = reply.responses[0].response_range.kvs
        if not kvs:
            return None
        return Blocker(kvs[0].key.decode(), kvs[0].create_revision)

    def _preceding(self, me: Contender, rule: Rule) -> list[Blocker]:
        """Like ``predecessor`` with a limit of ``rule.permits``; with ``rule.kinds``,
        one such ranged read per kind's sub-prefix, merged by create revision."""
        key = me.key.encode()
        prefixes = [me.path] if rule.kinds is None else [
            f"{me.path}{kind}/" for kind in sorted(rule.kinds)]
        reply = self.txn(me.session, etcdrpc.TxnRequest(
            compare=[_created(key, me.token)],
            success=[etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(
                key=prefix.encode(), range_end=prefix_range_end(prefix.encode()),
                sort_target=etcdrpc.RangeRequest.CREATE,
                sort_order=etcdrpc.RangeRequest.DESCEND,
                max_create_revision=me.token - 1, limit=rule.permits, keys_only=True,
            )) for prefix in prefixes],
        ))
        if not reply.succeeded:
            raise SessionLost(f"our contender key {me.key} is gone")
        kvs = [kv for response in reply.responses for kv in response.response_range.kvs]
        kvs.sort(key=lambda kv: kv.create_revision, reverse=True)
        return [Blocker(kv.key.decode(), kv.create_revision) for kv in kvs[: rule.permits]]

    def wait_deleted(self, blocker: Blocker, me: Contender, timeout: float | None) -> bool:
        return self._wait_any_deleted([blocker], me, timeout)

    def _wait_any_deleted(self, blockers: Sequence[Blocker], me: Contender,
                          timeout: float | None) -> bool:
        woken = threading.Event()
        me.session.add_waker(woken)
        watch_ids = []
        try:
            for blocker in blockers:
                watch_ids.append(self._watch_from_now(
                    me.session, blocker.key.encode(), lambda _response: woken.set()))
            if self._any_gone(me.session, blockers):  # deleted before the watches began
                return True
            # A watch stream to a paused server stays silent: re-check once a TTL.
            limit = me.session.ttl if timeout is None else min(timeout, me.session.ttl)
            if woken.wait(limit):
                return True
            return timeout is None or timeout > me.session.ttl
        finally:
            me.session.remove_waker(woken)
            for watch_id in watch_ids:
                self._cancel_watch(watch_id)

    def _any_gone(self, session: Session, blockers: Sequence[Blocker]) -> bool:
        """Whether a blocker's entry is gone: its key deleted, or made again since (the
        same session re-enters under the same key)."""
        reply = self.txn(session, etcdrpc.TxnRequest(compare=[
            _created(blocker.key.encode(), blocker.created) for blocker in blockers]))
        return not reply.succeeded

    def head(self, path: str) -> Head:
        first = _range_first(path)
        first.keys_only = False
        reply = self.range(None, first)
        if not reply.kvs:
            return Head(None, revision=reply.header.revision)
        kv = reply.kvs[0]
        return Head(kv.key.decode(), kv.value, kv.create_revision, reply.header.revision)

    def next_head(self, path: str, seen: Head, timeout: float,
                  woken: threading.Event | None = None) -> Head | None:
        """Watch the head key (or the prefix while empty) from now on, then read the
        head: a change made before the watch began is seen by that read, a later one
        wakes us. Not from ``seen``'s revision: etcd serves a watch that starts in the
        past from a catch-up loop run every 100 ms, so an observer replaying a churn
        fell further behind with every change, and a compaction removes that history."""
        woken = woken or threading.Event()
        key = (seen.key or path).encode()
        range_end = None if seen.key else prefix_range_end(path.encode())
        try:
            watch_id = self._watch_from_now(None, key, lambda _r: woken.set(), range_end)
        except CoordinationError:
            woken.wait(min(timeout, 0.1))
            return None
        try:
            head = self.head(path)
            if not head.same_entry(seen):
                return head
            woken.wait(timeout)  # a watch error wakes us too: the read below tells
        finally:
            self._cancel_watch(watch_id)
        head = self.head(path)
        return None if head.same_entry(seen) else head

    def _delete_entry(self, me: Contender) -> bool:
        # Compare the create revision: a retried release never deletes a newer key.
        key = me.key.encode()
        reply = self.txn(me.session, etcdrpc.TxnRequest(
            compare=[_created(key, me.token)],
            success=[etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key))],
        ))
        return bool(reply.succeeded)

    def contenders(self, path: str) -> list[Listed]:
        reply = self.range(None, etcdrpc.RangeRequest(
            key=path.encode(), range_end=prefix_range_end(path.encode()),
            sort_target=etcdrpc.RangeRequest.CREATE, sort_order=etcdrpc.RangeRequest.ASCEND,
        ))
        return [Listed(kv.key.decode(), kv.value, kv.lease, kv.create_revision) for kv in reply.kvs]


def _created(key: bytes, revision: int) -> etcdrpc.Compare:
    return etcdrpc.Compare(
        key=key, target=etcdrpc.Compare.CREATE, result=etcdrpc.Compare.EQUAL,
        create_revision=revision,
    )


def _range_first(path: str) -> etcdrpc.RangeRequest:
    return etcdrpc.RangeRequest(
        key=path.encode(), range_end=prefix_range_end(path.encode()),
        sort_target=etcdrpc.RangeRequest.CREATE, sort_order=etcdrpc.RangeRequest.ASCEND,
        limit=1, keys_only=True,
    )
