"""The transactional key-value store (``backend.kv``) on etcd: one Txn per commit; deep
indexes are listed through directory markers (``dirs.py``)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from pyetcd import etcdrpc
from pyetcd import events as etcd_events
from pyetcd.utils import prefix_range_end

from ...errors import BackendUnavailable, CoordinationError, InvalidArgument
from ...session import Session, Waker
from ..kv import Absent, Check, Delete, Entry, KeyValue, Op, OutcomeUnknown, Present
from ..watching import Watching
from .connection import RPC_TIMEOUT, Compacted, Connection
from .dirs import Directories, marker_ops, unmark_ops

#: Reads at one revision retried after a compaction removed it, before giving up.
_COMPACTED_RETRIES = 5
_READS_PER_TXN = 100  # etcd allows 128 operations per transaction


def created(key: bytes, revision: int) -> etcdrpc.Compare:
    """Compare: ``key`` has this create revision (0: it does not exist)."""
    return etcdrpc.Compare(key=key, target=etcdrpc.Compare.CREATE,
                           result=etcdrpc.Compare.EQUAL, create_revision=revision)


class EtcdKV(KeyValue):
    def __init__(self, connection: Connection, recipe_root: str) -> None:
        self._conn = connection
        self._recipe_root = recipe_root  # /NAMESPACE
        self._dirs = Directories(self._range_keys, self._read_ranges, self._index_txn)

    def root(self, kind: str, name: str) -> str:
        """Names are percent-encoded: the prefix of ``a`` holds no key of ``ab``, ``a/b``."""
        return f"{self._recipe_root}/{kind}/{quote(name, safe='')}"

    def get(self, key: str) -> Entry | None:
        return _entry(key, self._conn.range(None, etcdrpc.RangeRequest(key=key.encode())).kvs)

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        found: list[Entry | None] = []
        for start in range(0, len(keys), _READS_PER_TXN):
            chunk = keys[start:start + _READS_PER_TXN]
            reply = self._conn.txn(None, etcdrpc.TxnRequest(success=[
                etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key.encode()))
                for key in chunk]))
            found += [_entry(key, response.response_range.kvs)
                      for key, response in zip(chunk, reply.responses)]
        return found

    def commit(self, checks: Sequence[Check], ops: Sequence[Op],
               session: Session | None = None) -> int | None:
        reply = self._write(session, _txn(checks, ops, session))
        return reply.header.revision if reply.succeeded else None

    def commit_and_get(self, checks: Sequence[Check], ops: Sequence[Op], keys: Sequence[str],
                       session: Session | None = None) -> tuple[int, list[Entry | None]] | None:
        reply = self._write(session, _txn(checks, ops, session, _reads(keys)))
        return _read_in(reply, len(ops), keys, reply.header.revision)

    def commit_first(self, commits: Sequence[tuple[Sequence[Check], Sequence[Op]]],
                     keys: Sequence[Sequence[str]], session: Session | None = None,
                     ) -> tuple[int, int, list[Entry | None]] | None:
        # Built from the last: each commit's transaction runs the next one if its checks
        # fail. etcd checks every nested transaction against the keys as they were
        # before the outer one, so exactly one applies, the first whose checks hold.
        nested: etcdrpc.TxnRequest | None = None
        for (checks, ops), read in reversed(list(zip(commits, keys))):
            request = _txn(checks, ops, session, _reads(read))
            if nested is not None:
                request.failure.append(etcdrpc.RequestOp(request_txn=nested))
            nested = request
        if nested is None:
            return None
        reply = self._write(session, nested)
        revision = reply.header.revision
        for i, (_checks, ops) in enumerate(commits):
            applied = _read_in(reply, len(ops), keys[i], revision)
            if applied is not None:
                return i, applied[0], applied[1]
            if not reply.responses:
                return None
            reply = reply.responses[0].response_txn
        return None

    def commit_each(self, commits: Sequence[tuple[Sequence[Check], Sequence[Op]]],
                    keys: Sequence[Sequence[str]], session: Session | None = None,
                    ) -> list[tuple[int, list[Entry | None]] | None]:
        # etcd checks a nested transaction against what the outer one leaves of its
        # 128 operations: one outer op per commit, the directory markers after them.
        every = [op for _checks, ops in commits for op in ops]
        nested = [etcdrpc.RequestOp(request_txn=_txn(checks, ops, session, _reads(keys[i]),
                                                     markers=False, creates=every))
                  for i, (checks, ops) in enumerate(commits)]
        reply = self._write(session, etcdrpc.TxnRequest(success=nested + marker_ops(every)))
        revision = reply.header.revision
        return [_read_in(response.response_txn, len(ops), keys[i], revision)
                for i, ((_checks, ops), response) in enumerate(zip(commits, reply.responses))]

    def _write(self, session: Session | None, request: etcdrpc.TxnRequest) -> Any:
        """Send a writing transaction, once: sent again, it could apply twice.
        ``OutcomeUnknown`` if the connection broke: it may have applied before."""
        try:
            return self._conn.txn(session, request, timeout=0)
        except BackendUnavailable as exc:
            raise OutcomeUnknown(str(exc)) from None

    def next_write(self, key: str, version: int) -> bytes | None:
        # The watch replays the key's history from the revision after ``version``; a
        # write that came is there at once, so RPC_TIMEOUT without one means none came.
        watch = functools.partial(self._conn.client.watch_once_response, key.encode(),
                                  timeout=RPC_TIMEOUT, start_revision=version + 1)
        try:
            response = self._conn.call(None, watch, timeout=RPC_TIMEOUT)
        except CoordinationError:
            return None
        # pyetcd hands a compaction or a broken stream over in place of a response.
        events = getattr(response, "events", None)
        if events and isinstance(events[0], etcd_events.PutEvent):
            return bytes(events[0].value)
        return None

    def written_version(self, stamp: int, before: Entry | None) -> int:
        return stamp  # a key's mod revision is the revision of the transaction that wrote it

    def leaves(self, root: str, depth: int, limit: int) -> list[str]:
        if depth > 1:
            return self._dirs.leaves(root, depth, limit)
        prefix = (root + "/").encode()
        return [key.decode() for key in self._range_keys(prefix, prefix_range_end(prefix), limit)]

    def _range_keys(self, start: bytes, end: bytes, limit: int) -> list[bytes]:
        return self._read_ranges([(start, end, limit)])[0]

    def _read_ranges(self, ranges: Sequence[tuple[bytes, bytes, int]]) -> list[list[bytes]]:
        """The keys of each range, read as ZooKeeper reads (``Connection.read_recent``):
        a listing may miss the last moments of other clients' writes, as on ZooKeeper;
        whatever is done with what it lists is checked by a commit."""
        reply = self._conn.read_recent(etcdrpc.TxnRequest(success=[
            etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(
                key=start, range_end=end, limit=limit, keys_only=True))
            for start, end, limit in ranges]))
        return [[kv.key for kv in response.response_range.kvs] for response in reply.responses]

    def _index_txn(self, request: etcdrpc.TxnRequest) -> etcdrpc.TxnResponse | None:
        """One attempt at an index upkeep transaction (None if it could not be run: a
        failure is left for later)."""
        try:
            return self._conn.txn(None, request, timeout=0)
        except CoordinationError:
            return None

    def counts(self, roots: Sequence[tuple[str, int]]) -> list[int]:
        for _attempt in range(_COMPACTED_RETRIES):
            counts: list[int] = []
            revision = 0  # the first read's revision pins the others to the same instant
            try:
                for root, _depth in roots:
                    prefix = (root + "/").encode()
                    reply = self._conn.range(None, etcdrpc.RangeRequest(
                        key=prefix, range_end=prefix_range_end(prefix), count_only=True,
                        revision=revision))
                    revision = revision or reply.header.revision
                    counts.append(int(reply.count))
                return counts
            except Compacted:  # compacted past the first read's revision meanwhile
                continue
        raise BackendUnavailable("etcd compacted every snapshot of the counts before it was read")

    def watch(self, key: str, seen: Entry | None, woken: Waker) -> Watching:
        try:
            watch_id = self._conn.watch_from_now(None, key.encode(), lambda _r: woken.set())
        except CoordinationError:
            return Watching(False, _RETRY_WATCH)

        def cancel() -> None:
            self._conn.cancel_watch(watch_id)

        try:
            current = self.get(key)  # what changed before the watch began
        except CoordinationError:
            cancel()
            return Watching(gone=True)  # unknown: the caller reads again
        except BaseException:
            cancel()
            raise
        if (current is None) != (seen is None) or (
                current is not None and seen is not None and current.version != seen.version):
            cancel()
            return Watching(gone=True)
        return Watching(False, None, cancel)


_RETRY_WATCH = 0.1  # seconds before a look again when a watch could not be armed


def _txn(checks: Sequence[Check], ops: Sequence[Op], session: Session | None,
         reads: Sequence[etcdrpc.RequestOp] = (), markers: bool = True,
         creates: Sequence[Op] | None = None) -> etcdrpc.TxnRequest:
    """The transaction applying ``ops`` if every check holds, then ``reads``, then (with
    ``markers``) the directory markers of the leaves it creates, then the drops of the
    markers of the directories it empties (keeping those where ``creates``, default
    ``ops``, makes a leaf; see ``dirs.py``)."""
    return etcdrpc.TxnRequest(compare=[_compare(check) for check in checks],
                              success=[_request(op, session) for op in ops] + list(reads)
                              + (marker_ops(ops) if markers else [])
                              + unmark_ops(ops, ops if creates is None else creates))


def _reads(keys: Sequence[str]) -> list[etcdrpc.RequestOp]:
    return [etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key.encode()))
            for key in keys]


def _read_in(reply: Any, ops: int, keys: Sequence[str], revision: int
             ) -> tuple[int, list[Entry | None]] | None:
    """What a transaction built by ``_txn`` with ``ops`` ops and ``_reads(keys)`` read,
    with the stamp ``revision``; None if its checks failed."""
    if not reply.succeeded:
        return None
    responses = reply.responses[ops:ops + len(keys)]
    return revision, [_entry(key, response.response_range.kvs)
                      for key, response in zip(keys, responses)]


def _entry(key: str, kvs: Sequence[Any]) -> Entry | None:
    """The entry of ``key`` from a range response's ``kvs`` (None if empty)."""
    if not kvs:
        return None
    return Entry(key, kvs[0].value, kvs[0].mod_revision, kvs[0].mod_revision, kvs[0].lease)


def _compare(check: Check) -> etcdrpc.Compare:
    if isinstance(check, Absent):
        return created(check.key.encode(), 0)
    if isinstance(check, Present):
        return etcdrpc.Compare(key=check.key.encode(), target=etcdrpc.Compare.CREATE,
                               result=etcdrpc.Compare.GREATER, create_revision=0)
    return etcdrpc.Compare(key=check.key.encode(), target=etcdrpc.Compare.MOD,
                           result=etcdrpc.Compare.EQUAL, mod_revision=check.version)


def _request(op: Op, session: Session | None) -> etcdrpc.RequestOp:
    if isinstance(op, Delete):
        return etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=op.key.encode()))
    lease = 0
    if op.ephemeral:
        if session is None:
            raise InvalidArgument("an ephemeral create needs a session")
        lease = int(session.id)
    return etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=op.key.encode(), value=op.value,
                                                           lease=lease))
