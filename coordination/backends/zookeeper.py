"""ZooKeeper backend (kazoo): sessions, and contenders as ephemeral sequential znodes.

Layout: recipe ``kind``/``name`` lives at ``/NAMESPACE/KIND/NAME``; a lock contender is
``UUID__lock__SEQUENCE`` under it, the node naming of kazoo's ``Lock`` so that both
exclude each other. The sequence number is the fencing token. A reader of a read-write
lock is ``UUID__rlock__SEQUENCE``, like kazoo's ``ReadLock``: readers wait only for
the nodes of the other names (writers), so kazoo's read-write locks interoperate.

Session handling lives here only. kazoo stays SUSPENDED for a whole partition and
hears of expiry on reconnect only, so we declare the session lost by a local monotonic
deadline: kazoo notices a dead link at most 2/3 of the session timeout after the last
reply, so a session SUSPENDED for 1/3 of the timeout may already be expiring on the
server. The lost session's client is then closed and a new one opened.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

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
from kazoo.retry import KazooRetry, RetryFailedError

from ..config import Config
from ..errors import (
    BackendUnavailable,
    ClientClosed,
    CoordinationError,
    PermissionDenied,
    SessionLost,
)
from ..session import Session, SessionState
from . import fork, tls, zookeeper_security
from .base import MUTEX, Backend, Blocker, Contender, Head, Listed, Rule
from .kv import Absent, Check, Create, Delete, Entry, Op, OutcomeUnknown, Present, Update
from .pause_watch import PAUSE_WATCH

log = logging.getLogger(__name__)

#: Node names of foreign lock contenders we honour: kazoo Lock/ReadLock (``__lock__``,
#: ``__rlock__``), Curator InterProcessMutex (``-lock-``) and its read/write lock.
CONTENDER_RE = re.compile(r"(?:__lock__|__rlock__|-lock-|__READ__|__WRIT__)(-?\d{10})$")
NODE_STYLES = {"kazoo": "{uuid}__lock__", "curator": "_c_{uuid}-lock-"}
#: Shared (reader) contenders: kazoo ReadLock, Curator's read lock. All others exclude.
READER_RE = re.compile(r"(?:__rlock__|__READ__)-?\d{10}$")
READER_NODE = "{uuid}__rlock__"


#: Longest wait for a state change of the client before ``session()`` looks again.
STATE_RECHECK = 0.25


def _record_negotiated_timeout(client: KazooClient, timeouts: dict[int, float]) -> None:
    """Record the session timeout each connect negotiates (ZooKeeper clamps the one asked
    for to [2, 20] x tickTime) in ``timeouts`` by session id. kazoo only logs it: wrap
    its connect step, which returns the read timeout (2/3 of it). Without that private
    step (another kazoo), the timeout asked for is used."""
    connection: Any = getattr(client, "_connection", None)
    connect = getattr(connection, "_connect", None)
    if connect is None:  # pragma: no cover - a kazoo without this step
        return

    def connect_and_record(*args: Any, **kw: Any) -> Any:
        read_timeout, connect_timeout = connect(*args, **kw)
        timeouts[client._session_id] = read_timeout * 1.5 / 1000.0
        return read_timeout, connect_timeout

    connection._connect = connect_and_record


class _ZooKeeperKV:
    """The transactional key-value primitive (kv.py) on ZooKeeper: one ``multi`` per
    commit; keys are znodes, parents are created on demand and cached."""

    def kv_root(self: ZooKeeperBackend, kind: str, name: str) -> str:  # type: ignore[misc]
        return self.recipe_path(kind, name)

    def kv_get(self: ZooKeeperBackend, key: str) -> Entry | None:  # type: ignore[misc]
        try:
            data, stat = self._call(None, "get", key)
        except NoNodeError:
            return None
        return Entry(key, data, stat.version, stat.mzxid, stat.ephemeralOwner)

    def _ensure_parent(self: ZooKeeperBackend, key: str) -> None:  # type: ignore[misc]
        parent = key.rsplit("/", 1)[0]
        if parent in self._assured:
            return
        for _attempt in range(10):
            try:  # an empty bucket pruned between two levels of the path: try again
                # (exists first: a failed create costs the ensemble a write, a read does not)
                self._call(None, "ensure_path", parent)
                break
            except NoNodeError:
                continue
        else:
            raise CoordinationError(f"could not create {parent}")
        self._assured.add(parent)

    def kv_commit(  # type: ignore[misc]
        self: ZooKeeperBackend, checks: Sequence[Check], ops: Sequence[Op],
        session: Session | None = None
    ) -> int | None:
        for op in ops:
            if isinstance(op, Create):
                self._ensure_parent(op.key)
        for check in checks:
            if isinstance(check, Absent):
                self._ensure_parent(check.key)
        for _attempt in range(3):
            result = self._multi(checks, ops, session)
            if result != "parent":
                return result  # type: ignore[return-value]
            for op in ops:  # an empty bucket was removed under us: make it again
                if isinstance(op, Create):
                    self._assured.discard(op.key.rsplit("/", 1)[0])
                    self._ensure_parent(op.key)
        return None

    def _multi(self: ZooKeeperBackend, checks: Sequence[Check], ops: Sequence[Op],  # type: ignore[misc]
               session: Session | None) -> int | str | None:
        self.check_open()
        if session is not None:
            session.check()
        elif self._discarded:
            self.session()  # replaces the client closed after a presumed loss
        txn = self._client.transaction()
        # A check on a key the commit writes rides on that write: a create fails if the
        # node exists, an update or delete if it is missing or has another version.
        written = {op.key: op for op in reversed(ops)}  # the first op on each key
        versions: dict[str, int] = {}
        for check in checks:
            op = written.get(check.key)
            if isinstance(check, Absent):
                if not isinstance(op, Create):  # no "absent" check in ZooKeeper: create+delete
                    txn.create(check.key, b"")
                    txn.delete(check.key)
            elif isinstance(op, Update | Delete) and check.key not in versions:
                versions[check.key] = -1 if isinstance(check, Present) else check.version
            else:
                txn.check(check.key, -1 if isinstance(check, Present) else check.version)
        update_at = None
        for op in ops:
            if isinstance(op, Create):
                txn.create(op.key, op.value, ephemeral=op.ephemeral)
            elif isinstance(op, Update):
                if update_at is None:
                    update_at = len(txn.operations)
                txn.set_data(op.key, op.value, versions.pop(op.key, -1))
            else:
                txn.delete(op.key, versions.pop(op.key, -1))
        try:
            results = txn.commit()
        except (ConnectionLoss, OperationTimeoutError, SessionExpiredError) as exc:
            raise OutcomeUnknown(str(exc)) from None
        except ConnectionClosedError:
            self.check_open()
            raise OutcomeUnknown("connection closed") from None
        except KazooException as exc:
            raise CoordinationError(f"ZooKeeper error: {type(exc).__name__}: {exc}") from None
        failures = [(i, r) for i, r in enumerate(results) if isinstance(r, Exception)]
        if failures:
            real = [(i, r) for i, r in failures if type(r).__name__ != "RolledBackError"]
            for index, error in real:
                if isinstance(error, NoAuthError):
                    op = txn.operations[index]
                    raise zookeeper_security.denied(
                        f"a {type(op).__name__.lower()} in a transaction", op.path, self.config)
            if real and isinstance(real[0][1], NoNodeError):
                index = real[0][0]
                kind = txn.operations[index]
                if type(kind).__name__ == "Create":
                    return "parent"
            return None
        if update_at is not None:
            return int(results[update_at].mzxid)
        return 0

    def kv_written_version(self: ZooKeeperBackend, stamp: int, before: Entry | None) -> int:  # type: ignore[misc]
        return 0 if before is None else before.version + 1  # node data versions count writes

    def kv_leaves(self: ZooKeeperBackend, root: str, depth: int, limit: int) -> list[str]:  # type: ignore[misc]
        head = self._heads.get(root) if depth > 1 else None
        if head is not None:
            found = self._leaves_under(root, head, limit)
            if found is not None:
                return found
        found = []
        self._walk(root, depth, limit, found)
        if depth > 1 and found:
            self._heads[root] = found[0][len(root) + 1:].split("/")[:-1]
        elif depth > 1:
            self._heads.pop(root, None)
        return found

    def _leaves_under(self: ZooKeeperBackend, root: str, head: list[str],  # type: ignore[misc]
                      limit: int) -> list[str] | None:
        """The walk below in one round trip: every level of the last head path is listed
        at once (a session's reads are served in order, as the walk would send them).
        The answer stands if that path is still the first at each level and its bucket
        holds a leaf; else None (walk)."""
        paths = [root] + ["/".join([root, *head[:level]]) for level in range(1, len(head) + 1)]
        listings = self._call(None, self._list_all, paths)
        for children, name in zip(listings, head):
            if not children or min(children) != name:
                return None
        leaves = listings[-1]
        if not leaves:
            return None
        return [f"{paths[-1]}/{leaf}" for leaf in sorted(leaves)[:limit]]

    def _list_all(self: ZooKeeperBackend, paths: list[str]) -> list[list[str]]:  # type: ignore[misc]
        """The children of each path (none for a missing one), requests pipelined."""
        pending = [self._client.get_children_async(path) for path in paths]
        listings = []
        for result in pending:
            try:
                listings.append(result.get())
            except NoNodeError:
                listings.append([])
        return listings

    def _walk(self: ZooKeeperBackend, node: str, depth: int, limit: int,  # type: ignore[misc]
              found: list[str]) -> None:
        try:
            children = sorted(self._call(None, "get_children", node))
        except NoNodeError:
            return
        if depth == 1:
            found.extend(f"{node}/{child}" for child in children[: limit - len(found)])
            return
        for i, child in enumerate(children):
            before = len(found)
            self._walk(f"{node}/{child}", depth - 1, limit, found)
            if len(found) >= limit:
                return
            # An empty directory goes, unless it is the last: writers are filling that
            # one (buckets are named by time), and pruning it would make them recreate it.
            if len(found) == before and i < len(children) - 1:
                self._prune(f"{node}/{child}")

    def _prune(self: ZooKeeperBackend, bucket: str) -> None:  # type: ignore[misc]
        """Remove an empty bucket so that listings stay short. Harmless if a producer
        refills it meanwhile: its create fails and is retried after recreating parents."""
        try:
            self._client.delete(bucket)
            self._assured.discard(bucket)
        except (NoNodeError, NotEmptyError):
            pass
        except KazooException:
            pass

    def kv_counts(self: ZooKeeperBackend, roots: Sequence[tuple[str, int]]) -> list[int]:  # type: ignore[misc]
        # ZooKeeper has no snapshot reads. A pass is a snapshot if no directory it read
        # changed its children (pzxid) before a second look: then each count held from
        # its read to its check, so all held at the instant between the two.
        for _attempt in range(_SNAPSHOT_ATTEMPTS):
            seen: dict[str, int] = {}
            counts = [self._count(root, depth, seen) for root, depth in roots]
            if all(self._children_stat(path)[0] == pzxid for path, pzxid in seen.items()):
                break
        return counts

    def _count(self: ZooKeeperBackend, path: str, depth: int, seen: dict[str, int]) -> int:  # type: ignore[misc]
        """Keys ``depth`` levels below ``path``; ``seen`` gets each directory's pzxid."""
        if depth == 1:
            seen[path], count = self._children_stat(path)
            return count
        try:
            children, stat = self._call(None, "get_children", path, include_data=True)
        except NoNodeError:
            seen[path] = -1
            return 0
        seen[path] = int(stat.pzxid)
        return sum(self._count(f"{path}/{child}", depth - 1, seen) for child in children)

    def _children_stat(self: ZooKeeperBackend, path: str) -> tuple[int, int]:  # type: ignore[misc]
        """``(pzxid, number of children)`` of ``path``; ``(-1, 0)`` if it is missing."""
        stat = self._call(None, "exists", path)
        return (-1, 0) if stat is None else (int(stat.pzxid), int(stat.numChildren))

    def kv_sync(self: ZooKeeperBackend, key: str) -> bool:  # type: ignore[misc]
        self._call(None, "sync", key)
        return True

    def kv_wait(self: ZooKeeperBackend, key: str, seen: Entry | None, timeout: float) -> None:  # type: ignore[misc]
        woken = threading.Event()
        try:
            stat = self._call(None, "exists", key, watch=lambda _e: woken.set())
        except CoordinationError:
            time.sleep(min(timeout, 0.1))
            return
        if (stat is None) != (seen is None) or (stat is not None and seen is not None
                                                 and stat.mzxid != seen.stamp):
            return
        woken.wait(timeout)


class ZooKeeperBackend(_ZooKeeperKV, Backend):
    name = "zookeeper"
    node_styles = tuple(NODE_STYLES)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._guard = threading.RLock()
        self._changed = threading.Condition(self._guard)  # client or session state changed
        self._assured: set[str] = set()
        self._heads: dict[str, list[str]] = {}  # root -> directories of its first leaf
        self._negotiated: dict[int, float] = {}  # session id -> negotiated timeout (s)
        self._loss_timer: threading.Timer | None = None
        self._discarded = False  # the current client was closed after a presumed loss
        self._replace_guard = threading.Lock()
        self._client: KazooClient = None  # set just below
        self._client = tls.connect(config, self._open_client, config.connect_timeout)
        self._session = self._new_session(self._client)
        PAUSE_WATCH.subscribe(self)

    # --- client and session lifecycle --------------------------------------------------

    def _disown_parent(self) -> None:
        self._guard = threading.RLock()
        self._changed = threading.Condition(self._guard)
        self._replace_guard = threading.Lock()
        self._loss_timer = None  # its thread is the parent's
        self._session.disown()

    def _reconnect_in_child(self) -> None:
        fork.abandon(self._client)
        client = tls.connect(self.config, self._open_client, self.config.connect_timeout)
        with self._guard:
            self._client, self._discarded = client, False
            self._session = self._new_session(client)
        PAUSE_WATCH.subscribe(self)

    def _open_client(self, timeout: float) -> KazooClient:
        client = KazooClient(
            hosts=",".join(self.config.endpoints),
            timeout=self.config.session_ttl,
            connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.5),
            **zookeeper_security.client_options(self.config),
        )
        zookeeper_security.prepare(client)
        _record_negotiated_timeout(client, self._negotiated)
        client.add_listener(lambda state: self._on_state(client, state))
        try:
            client.start(timeout=timeout)
            zookeeper_security.check_identity(client, self.config)
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
        ttl = self._negotiated.get(session_id, self.config.session_ttl)
        return Session(session_id, ttl)

    def _on_state(self, client: KazooClient, state: str) -> None:
        """kazoo's listener: runs in its connection thread, so it must not block."""
        with self._guard:
            if client is not self._client:
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
                    threading.Thread(target=self.sweep_orphans, daemon=True,
                                     name="coordination-orphan-sweep").start()
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
            if client is not self._client or session.state != SessionState.SUSPENDED:
                return
            log.warning("ZooKeeper session %#x presumed lost (suspended too long)", session.id)
            self._notify(session, SessionState.LOST)
            self._discarded = True
            self._changed.notify_all()
        # Close the old session for good: if it came back, its ephemeral nodes would
        # outlive what we told the recipes.
        threading.Thread(target=_discard, args=(client,), daemon=True,
                         name="coordination-zk-discard").start()

    def on_tick(self, now: float, gap: float) -> None:
        """From the process's pause watch. A process frozen (GC, SIGSTOP, swap) for half
        a session timeout may have let the server expire its session without kazoo
        noticing yet: presume it lost. The session's ``watchdog`` makes readers of
        ``alive`` see that at once on waking."""
        if self.closed:
            return
        self.sweep_orphans_if_due()
        with self._guard:
            session, client = self._session, self._client
        if gap < session.ttl / 2:
            session.watchdog = now + session.ttl / 2
        elif not session.lost.is_set():
            log.warning("process was frozen for %.2fs: ZooKeeper session %#x presumed lost",
                        gap, session.id)
            session.deadline = now  # not alive from now on, before the timer runs
            with self._guard:
                if client is self._client and session is self._session:
                    self._notify(session, SessionState.LOST)
                    self._discarded = True
                    threading.Thread(target=_discard, args=(client,), daemon=True,
                                     name="coordination-zk-discard").start()

    @property
    def session_ttl(self) -> float:
        return self._session.ttl

    def session(self) -> Session:
        deadline = time.monotonic() + self.config.request_timeout
        while True:
            self.check_open()
            with self._guard:
                client = self._client
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
            if self.closed:
                _discard(new)
                self.check_open()
            self._client = new
            self._session = self._new_session(new)
            self._discarded = False

    def close(self) -> None:
        if not self.closed:
            self._stop_companions()
        with self._guard:
            if self.closed:
                return
            self.closed = True
            self._changed.notify_all()  # session() waiters: closed
            if self._inherited:  # a forked child's copy: the client is the parent's
                return
            self._cancel_loss_timer()
            session, client = self._session, self._client
        # Outside the guard: it waits for the watch's thread, which may be waiting for
        # the guard in on_tick.
        PAUSE_WATCH.unsubscribe(self)
        _discard(client)
        session.set_state(SessionState.CLOSED)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "hosts": self.config.endpoints, "session": self._session}

    # --- the one place for retries and error translation -------------------------------

    def _call(self, session: Session | None, fn: str | Callable[..., Any], *args: Any,
              **kw: Any) -> Any:
        """Run ``fn`` (a kazoo client method name, or a callable) with retries on
        connection loss until the request timeout.

        If ``session`` is given, the call must run in that session generation: once
        it is lost, ``SessionLost`` is raised instead of acting in a newer session.
        Without one, the call runs in the current generation, opening a new one if the
        last was lost.
        """
        self.check_open()

        def attempt() -> Any:
            if session is not None:
                session.check()
                client_id = self._client.client_id
                if client_id is not None and client_id[0] != session.id:
                    raise SessionLost(f"session {session.id:#x} is gone")
            elif self._discarded:
                self.session()  # replaces the client closed after a presumed loss
            if isinstance(fn, str):
                return getattr(self._client, fn)(*args, **kw)
            return fn(*args, **kw)

        retry = KazooRetry(
            max_tries=-1, delay=0.02, max_delay=0.5, deadline=self.config.request_timeout,
            # Without a session to honour, an expiry is transient: kazoo opens a new one.
            ignore_expire=session is None,
        )
        try:
            return retry(attempt)
        except (NoNodeError, NotEmptyError, SessionLost):
            raise
        except NoAuthError:
            what = fn if isinstance(fn, str) else getattr(fn, "__name__", "a request")
            path = next((a for a in args if isinstance(a, str) and a.startswith("/")), "?")
            raise zookeeper_security.denied(what, path, self.config) from None
        except RetryFailedError:
            raise BackendUnavailable(
                f"ZooKeeper did not answer within {self.config.request_timeout:g}s"
            ) from None
        except SessionExpiredError:
            if session is not None:
                self._notify(session, SessionState.LOST)
            raise SessionLost("ZooKeeper session expired") from None
        except ConnectionClosedError:
            if self.closed:
                raise ClientClosed("the coordinator is closed") from None
            raise SessionLost("ZooKeeper connection closed") from None
        except KazooException as exc:
            raise CoordinationError(f"ZooKeeper error: {type(exc).__name__}: {exc}") from None

    @property
    def client(self) -> KazooClient:
        return self._client

    # --- paths -------------------------------------------------------------------------

    def recipe_path(self, kind: str, name: str) -> str:
        return f"/{self.config.namespace}/{kind}/{name}"

    def raw_path(self, path: str) -> str:
        return path if path.startswith("/") else "/" + path

    # --- the ordered contender queue ---------------------------------------------------

    def enqueue(
        self, path: str, data: bytes, kind: str | None = None, rule: Rule = MUTEX,
        style: str = "kazoo",
    ) -> tuple[Contender, list[Blocker] | None]:
        session = self.session()
        template = READER_NODE if kind == "rlock" else NODE_STYLES[style]
        prefix = template.format(uuid=uuid.uuid4().hex)
        tried = False

        def create_once() -> tuple[str, int, list[str] | None]:
            # A create whose reply was lost may have happened: look for our prefix
            # before creating again, and adopt only a node of our own session.
            nonlocal tried
            if tried:
                found = self._find_own(path, prefix, session)
                if found:
                    return (*found, None)
            tried = True
            # Pipelined: one session's requests are served in order, so the listing sent
            # right behind the create sees our node (one round trip, not two).
            created = self._client.create_async(
                f"{path}/{prefix}", data, ephemeral=True, sequence=True, makepath=True,
                include_data=True,
            )
            listed = self._client.get_children_async(path)
            node, stat = created.get()
            try:
                children = listed.get()
            except NoNodeError:  # the parent was made after the listing: ask again later
                children = None
            return node, stat.ephemeralOwner, children

        try:
            node, owner, children = self._call(session, create_once)
        except PermissionDenied:
            raise zookeeper_security.denied("creating a contender node", path, self.config) from None
        except CoordinationError as exc:
            if tried and not isinstance(exc, SessionLost | ClientClosed):
                # The create may have applied, and its node would block everyone behind
                # it while our session lives: remove it, found by our prefix, now or once
                # the servers answer again.
                self.withdraw(Contender(path, f"{path}/{prefix}", _UNKNOWN, session))
            raise
        if owner != session.id:  # created in a newer session than we meant: undo it
            try:
                self._call(None, "delete", node)
            except NoNodeError:
                pass
            raise SessionLost("ZooKeeper session changed while enqueuing")
        me = Contender(path, node, _sequence(node), session)
        if children is None or node.rsplit("/", 1)[1] not in children:
            return me, None
        return me, rule.blocking(_nearest_counted(me, children, rule))

    def _find_own(self, path: str, prefix: str, session: Session) -> tuple[str, int] | None:
        try:
            children = self._client.get_children(path)
        except NoNodeError:
            return None
        for child in children:
            if child.startswith(prefix):
                stat = self._client.exists(f"{path}/{child}")
                if stat is not None and stat.ephemeralOwner == session.id:
                    return f"{path}/{child}", stat.ephemeralOwner
        return None

    def predecessor(self, me: Contender) -> Blocker | None:
        before = self._preceding(me, MUTEX)
        return before[0] if before else None

    def _preceding(self, me: Contender, rule: Rule) -> list[Blocker]:
        # Every contender before ours was created before ours; the server we read from
        # has applied our create, hence all of those: the read cannot miss one.
        try:
            children = self._call(me.session, "get_children", me.path)
        except NoNodeError:
            raise SessionLost(f"the lock node {me.path} is gone") from None
        if me.key.rsplit("/", 1)[1] not in children:
            raise SessionLost(f"our contender node {me.key} is gone")
        return _nearest_counted(me, children, rule)

    def wait_deleted(self, blocker: Blocker, me: Contender, timeout: float | None) -> bool:
        return self._wait_any_deleted([blocker], me, timeout)

    def _wait_any_deleted(self, blockers: Sequence[Blocker], me: Contender,
                          timeout: float | None) -> bool:
        woken = threading.Event()
        me.session.add_waker(woken)
        try:
            for blocker in blockers:
                if not self._watch_entry(blocker.key, lambda _event: woken.set(), me.session):
                    return True
            return woken.wait(timeout)
        finally:
            me.session.remove_waker(woken)

    def head(self, path: str) -> Head:
        self._call(None, "sync", path)
        while True:
            try:
                children = self._call(None, "get_children", path)
            except NoNodeError:
                return Head(None)
            ordered = sorted((_sequence(c), c) for c in children if CONTENDER_RE.search(c))
            for seq, child in ordered:
                try:
                    data, _stat = self._call(None, "get", f"{path}/{child}")
                except NoNodeError:
                    continue  # gone since the listing: the next one may lead now
                return Head(f"{path}/{child}", data, seq)
            if not ordered:
                return Head(None)

    def next_head(self, path: str, seen: Head, timeout: float,
                  woken: threading.Event | None = None) -> Head | None:
        self._wait_head_changed(path, seen, timeout, woken)
        head = self.head(path)
        return None if head.same_entry(seen) else head

    def _watch_entry(self, key: str, wake: Callable[[Any], None],
                     session: Session | None = None) -> bool:
        """Watch the entry ``key`` for its deletion; False (and no watch) if it is gone.
        A read, not ``exists``: ``exists`` on a missing node leaves a watch for its
        creation, which for a contender entry never comes (Curator reads for this)."""
        try:
            self._call(session, "get", key, watch=wake)
        except NoNodeError:
            return False
        return True

    def _wait_head_changed(self, path: str, seen: Head, timeout: float,
                           woken: threading.Event | None) -> None:
        event = woken or threading.Event()

        def wake(_event: Any) -> None:
            event.set()

        try:
            if seen.key is not None:
                if not self._watch_entry(seen.key, wake):
                    return
            else:
                try:
                    children = self._call(None, "get_children", path, watch=wake)
                except NoNodeError:
                    if self._call(None, "exists", path, watch=wake) is not None:
                        return
                    children = []
                if any(CONTENDER_RE.search(child) for child in children):
                    return
        except CoordinationError:
            event.wait(min(timeout, 0.1))
            return
        event.wait(timeout)

    def _delete_entry(self, me: Contender) -> bool:
        if me.token == _UNKNOWN:  # an enqueue that failed: its node, if it was created
            prefix = me.key.rsplit("/", 1)[1]
            found = self._call(me.session, self._find_own, me.path, prefix, me.session)
            if found is None:
                return False
            me = Contender(me.path, found[0], _sequence(found[0]), me.session)
        # Names are unique (uuid + sequence): a retried delete cannot hit another node.
        try:
            self._call(me.session, "delete", me.key)
        except NoNodeError:
            return False
        return True

    def contenders(self, path: str) -> list[Listed]:
        try:
            children = self._call(None, "get_children", path)
        except NoNodeError:
            return []
        result = []
        for token, child in sorted((_sequence(c), c) for c in children if CONTENDER_RE.search(c)):
            try:
                data, stat = self._call(None, "get", f"{path}/{child}")
            except NoNodeError:
                continue
            result.append(Listed(f"{path}/{child}", data, stat.ephemeralOwner, token))
        return result


#: Token of a contender whose create may or may not have applied (name known up to the
#: sequence number).
_UNKNOWN = -1
#: Passes ``kv_counts`` makes before it settles for one it could not confirm.
_SNAPSHOT_ATTEMPTS = 5


def _kind(node: str) -> str:
    """``rlock`` for a shared (reader) contender node, else ``lock``."""
    return "rlock" if READER_RE.search(node) else "lock"


def _nearest_counted(me: Contender, children: list[str], rule: Rule) -> list[Blocker]:
    """The nearest ``rule.permits`` contenders before ``me`` among ``children`` whose
    kind counts under ``rule``, nearest first."""
    before = []
    for child in children:
        match = CONTENDER_RE.search(child)
        if match is None or int(match.group(1)) >= me.token:
            continue
        if rule.kinds is not None and _kind(child) not in rule.kinds:
            continue
        before.append((int(match.group(1)), child))
    before.sort(reverse=True)
    return [Blocker(f"{me.path}/{child}") for _seq, child in before[: rule.permits]]


def _sequence(node: str) -> int:
    """Sequence suffixes compare as integers, not strings."""
    match = CONTENDER_RE.search(node)
    if match is None:  # pragma: no cover - we named the node ourselves
        raise CoordinationError(f"unexpected contender node name {node!r}")
    return int(match.group(1))


def _discard(client: KazooClient) -> None:
    """Stop a kazoo client and end its session, ignoring errors."""
    try:
        client.stop()
        client.close()
    except Exception:  # pragma: no cover - best effort
        log.debug("error while discarding a kazoo client", exc_info=True)
