"""etcd backend (etcd-sdk-python): contenders are keys on our lease, ordered by create
revision.

Layout: recipe ``kind``/``name`` lives under the prefix ``/NAMESPACE/KIND/NAME/``
(the name percent-encoded, so the prefix of ``a`` never contains the keys of ``ab`` or
``a/b``); a lock contender is ``PREFIX/LEASE_ID_HEX``, the layout of etcd's
``concurrency.Mutex`` (and ``etcdctl lock``) so that both exclude each other. The
create revision of our key is the fencing token. That key is one per lease, so two
contenders of this process for one mutex take turns at it (``Turn``). Contenders of a
kind (read-write locks, semaphores) are ``PREFIX/KIND/UUID``: many per lease, and a
reader finds the last writer before it with one ranged read of ``PREFIX/lock/``.

Retries and errors: ``connection.py``; leases: ``leases.py``; the key-value store:
``kv.py``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from pyetcd import etcdrpc
from pyetcd.utils import prefix_range_end

from ...config import Config
from ...errors import CoordinationError, SessionLost
from ...session import Session, SessionState, Waker
from .. import fork
from ..base import Backend
from ..contenders import MUTEX, Blocker, Contender, Head, Listed, Rule, Turn
from ..watching import Watching
from .connection import Connection
from .kv import EtcdKV, created
from .leases import Leases

_RETRY_WATCH = 0.1  # seconds before a look again when a watch could not be armed


class EtcdBackend(Backend):
    name = "etcd"
    local_turns = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.connection = Connection(self)
        self.kv = EtcdKV(self.connection, f"/{config.namespace}")
        self._leases = Leases(self, self.connection)
        self._gates: dict[str, threading.Lock] = {}
        self._gates_guard = threading.Lock()
        self._leases.start()

    # --- sessions and lifecycle ----------------------------------------------------------

    def session(self) -> Session:
        return self._leases.session()

    @property
    def session_ttl(self) -> float:
        return self._leases.ttl

    def _disown_parent(self) -> None:
        self._gates, self._gates_guard = {}, threading.Lock()
        self.connection.disown()
        self._leases.disown()

    def _reconnect_in_child(self) -> None:
        fork.abandon(self.connection.client)
        self._leases.start()

    def close(self) -> None:
        if not self.closed:
            self.stop_companions()
        session = self._leases.close()
        if session is None or self.inherited:  # closed already; or the parent's client
            return
        session.set_state(SessionState.CLOSED)
        self._leases.join()  # before the client closes under its keepalive
        self.connection.close()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "endpoints": self.config.endpoints,
                "session": self._leases.current}

    # --- paths -------------------------------------------------------------------------

    def recipe_path(self, kind: str, name: str) -> str:
        return self.kv.root(kind, name) + "/"

    def raw_path(self, path: str) -> str:
        return path + "/"  # etcd's Mutex uses NAME + "/" as its prefix

    def names(self, kind: str, parts: frozenset[str] = frozenset()) -> list[str]:
        """One ranged read per name: read the first key, then skip past its name."""
        root = f"/{self.config.namespace}/{kind}/".encode()
        end = prefix_range_end(root)
        start = root
        names: list[str] = []
        while True:
            reply = self.connection.range(None, etcdrpc.RangeRequest(
                key=start, range_end=end, limit=1, keys_only=True))
            if not reply.kvs:
                return names
            encoded = reply.kvs[0].key[len(root):].split(b"/", 1)[0]
            names.append(unquote(encoded.decode()))
            start = prefix_range_end(root + encoded + b"/")

    # --- the ordered contender queue ---------------------------------------------------

    def _turn(self, path: str, timeout: float | None) -> Turn | None:
        """This process's turn at its one mutex key under ``path``; None on timeout."""
        with self._gates_guard:
            gate = self._gates.setdefault(path, threading.Lock())
        if not gate.acquire(timeout=-1 if timeout is None else timeout):
            return None
        return Turn(gate)

    def enqueue(self, path: str, data: bytes, kind: str | None = None, rule: Rule = MUTEX,
                *, style: str | None = None, timeout: float | None = None
                ) -> tuple[Contender, list[Blocker] | None] | None:
        """One transaction, like etcd's Mutex.tryAcquire: create our key if missing (a
        retry after a lost reply finds it instead) and read the first contender (first:
        nothing blocks us under any rule; else unknown)."""
        turn = None
        if kind is None:
            turn = self._turn(path, timeout)
            if turn is None:
                return None
        try:
            return self._enqueue(path, data, kind, turn)
        except BaseException:
            if turn is not None:
                turn.end()
            raise

    def _enqueue(self, path: str, data: bytes, kind: str | None, turn: Turn | None
                 ) -> tuple[Contender, list[Blocker] | None]:
        session = self.session()
        if kind is None:
            key = f"{path}{session.id:x}".encode()
        else:  # fixed before the first try, so a retried create finds it
            key = f"{path}{kind}/{uuid.uuid4().hex}".encode()
        first = _range_first(path)
        reply = self.connection.txn(session, etcdrpc.TxnRequest(
            compare=[created(key, 0)],
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
            self.removals.forget(key.decode())
        owner = reply.responses[1].response_range.kvs
        is_first = bool(owner) and owner[0].create_revision == token
        return Contender(path, key.decode(), token, session, turn), [] if is_first else None

    def blockers(self, me: Contender, rule: Rule) -> list[Blocker]:
        """The nearest ``rule.permits`` counted keys created before ours (ranged reads
        with that limit; with ``rule.kinds``, one per kind's sub-prefix, merged by create
        revision), read in a transaction that also proves our own key is still there."""
        key = me.key.encode()
        prefixes = [me.path] if rule.kinds is None else [
            f"{me.path}{kind}/" for kind in sorted(rule.kinds)]
        reply = self.connection.txn(me.session, etcdrpc.TxnRequest(
            compare=[created(key, me.token)],
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
        return rule.blocking([Blocker(kv.key.decode(), kv.create_revision)
                              for kv in kvs[: rule.permits]])

    def watch_deleted(self, blockers: Sequence[Blocker], me: Contender, woken: Waker) -> Watching:
        watch_ids: list[int] = []

        def cancel() -> None:
            me.session.remove_waker(woken)
            for watch_id in watch_ids:
                self.connection.cancel_watch(watch_id)

        me.session.add_waker(woken)
        try:
            for blocker in blockers:
                watch_ids.append(self.connection.watch_from_now(
                    me.session, blocker.key.encode(), lambda _response: woken.set()))
            gone = self._any_gone(me.session, blockers)  # deleted before the watches began
        except BaseException:
            cancel()
            raise
        if gone:
            cancel()
            return Watching(gone=True)
        # A watch stream to a paused server stays silent: re-check once a TTL.
        return Watching(False, me.session.ttl, cancel)

    def _any_gone(self, session: Session, blockers: Sequence[Blocker]) -> bool:
        """Whether a blocker's entry is gone: its key deleted, or made again since (the
        same session re-enters under the same key)."""
        reply = self.connection.txn(session, etcdrpc.TxnRequest(compare=[
            created(blocker.key.encode(), blocker.created) for blocker in blockers]))
        return not reply.succeeded

    def head(self, path: str) -> Head:
        first = _range_first(path)
        first.keys_only = False
        reply = self.connection.range(None, first)
        if not reply.kvs:
            return Head(None, revision=reply.header.revision)
        kv = reply.kvs[0]
        return Head(kv.key.decode(), kv.value, kv.create_revision, reply.header.revision)

    def watch_head(self, path: str, seen: Head, woken: Waker) -> Watching:
        """Watch the head key (or the prefix while empty) from now on, then read the
        head: a change made before the watch began is seen by that read, a later one
        wakes us (a watch error too). Not from ``seen``'s revision: etcd serves a watch
        that starts in the past from a catch-up loop run every 100 ms, so an observer
        replaying a churn fell further behind with every change, and a compaction
        removes that history."""
        key = (seen.key or path).encode()
        range_end = None if seen.key else prefix_range_end(path.encode())
        try:
            watch_id = self.connection.watch_from_now(None, key, lambda _r: woken.set(), range_end)
        except CoordinationError:
            return Watching(False, _RETRY_WATCH)

        def cancel() -> None:
            self.connection.cancel_watch(watch_id)

        try:
            changed = not self.head(path).same_entry(seen)
        except BaseException:
            cancel()
            raise
        if changed:
            cancel()
            return Watching(gone=True)
        return Watching(False, None, cancel)

    def _delete_entry(self, me: Contender) -> bool:
        # Compare the create revision: a retried release never deletes a newer key.
        key = me.key.encode()
        reply = self.connection.txn(me.session, etcdrpc.TxnRequest(
            compare=[created(key, me.token)],
            success=[etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key))],
        ))
        return bool(reply.succeeded)

    def contenders(self, path: str) -> list[Listed]:
        reply = self.connection.range(None, etcdrpc.RangeRequest(
            key=path.encode(), range_end=prefix_range_end(path.encode()),
            sort_target=etcdrpc.RangeRequest.CREATE, sort_order=etcdrpc.RangeRequest.ASCEND,
        ))
        return [Listed(kv.key.decode(), kv.value, kv.lease, kv.create_revision) for kv in reply.kvs]


def _range_first(path: str) -> etcdrpc.RangeRequest:
    return etcdrpc.RangeRequest(
        key=path.encode(), range_end=prefix_range_end(path.encode()),
        sort_target=etcdrpc.RangeRequest.CREATE, sort_order=etcdrpc.RangeRequest.ASCEND,
        limit=1, keys_only=True,
    )
