"""The transactional key-value store (``backend.kv``) on ZooKeeper: keys are znodes,
one ``multi`` per commit, parents created on demand and cached."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kazoo.exceptions import NoAuthError, NoNodeError, RolledBackError
from kazoo.protocol.serialization import Create as CreateRequest

from ...errors import BackendUnavailable, CoordinationError, SessionLost
from ...session import Session, Waker
from ..kv import (
    Absent,
    Check,
    Create,
    Delete,
    Entry,
    KeyValue,
    Op,
    OutcomeUnknown,
    Present,
    Update,
)
from ..watching import Watching
from . import security
from .connection import Connection, NodeMissing

#: Passes ``counts`` makes before it settles for one it could not confirm.
_SNAPSHOT_ATTEMPTS = 10
#: A commit that failed as its parent was pruned meanwhile: how often it is tried.
_PARENT_RETRIES = 3
#: Buckets of leaves listed in one round trip (pipelined) by a walk.
_BUCKETS_A_TRIP = 4


class _ParentGone(Exception):
    """A create failed as its parent was removed meanwhile (an empty bucket pruned)."""


class ZooKeeperKV(KeyValue):
    def __init__(self, connection: Connection, recipe_root: str) -> None:
        self._conn = connection
        self._recipe_root = recipe_root  # /NAMESPACE
        self._assured: set[str] = set()
        self._heads: dict[str, list[str]] = {}  # root -> directories of its first leaf

    def root(self, kind: str, name: str) -> str:
        return f"{self._recipe_root}/{kind}/{name}"

    def get(self, key: str) -> Entry | None:
        try:
            data, stat = self._conn.call(None, "get", key)
        except NodeMissing:
            return None
        return Entry(key, data, stat.version, stat.mzxid, stat.ephemeralOwner)

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        return self._conn.call(None, self._get_all, list(keys))

    def _get_all(self, keys: list[str]) -> list[Entry | None]:
        """Every key's entry, requests pipelined; run within ``call``."""
        pending = [self._conn.client.get_async(key) for key in keys]
        found: list[Entry | None] = []
        for key, result in zip(keys, pending):
            try:
                data, stat = result.get()
            except NoNodeError:
                found.append(None)
                continue
            found.append(Entry(key, data, stat.version, stat.mzxid, stat.ephemeralOwner))
        return found

    def _ensure_parent(self, key: str) -> None:
        parent = key.rsplit("/", 1)[0]
        if parent in self._assured:
            return
        for _attempt in range(10):
            try:  # an empty bucket pruned between two levels of the path: try again
                # (exists first: a failed create costs the ensemble a write, a read does not)
                self._conn.call(None, "ensure_path", parent)
                break
            except NodeMissing:
                continue
        else:
            raise CoordinationError(f"could not create {parent}")
        self._assured.add(parent)

    def commit(self, checks: Sequence[Check], ops: Sequence[Op],
               session: Session | None = None) -> int | None:
        return self._commit_all([(checks, ops)], session)[0]

    def commit_each(self, commits: Sequence[tuple[Sequence[Check], Sequence[Op]]],
                    keys: Sequence[Sequence[str]], session: Session | None = None,
                    ) -> list[tuple[int, list[Entry | None]] | None]:
        return self._read_after(self._commit_all(commits, session), keys)

    def _commit_all(self, commits: Sequence[tuple[Sequence[Check], Sequence[Op]]],
                    session: Session | None) -> list[int | None]:
        for checks, ops in commits:
            for key in [op.key for op in ops if isinstance(op, Create)] + [
                    c.key for c in checks if isinstance(c, Absent)]:
                self._ensure_parent(key)
        replies = self._send(commits, session)
        return [self._settle(checks, ops, reply, session)
                for (checks, ops), reply in zip(commits, replies)]

    def _send(self, commits: Sequence[tuple[Sequence[Check], Sequence[Op]]],
              session: Session | None) -> list[tuple[Any, list[Any], int | None]]:
        """Send each commit as a ``multi``, pipelined (one session's requests apply in
        the order sent), once: a commit sent again could apply twice."""
        if session is not None:
            session.check()

        def send_all() -> list[tuple[Any, list[Any], int | None]]:
            sent = []
            for checks, ops in commits:
                txn = self._conn.client.transaction()  # of the client current now
                update_at = _build(txn, checks, ops)
                sent.append((txn, txn.commit_async(), update_at))
            return [(txn, result.get(), update_at) for txn, result, update_at in sent]

        try:
            return self._conn.call(session, send_all, retry=False)
        except (BackendUnavailable, SessionLost) as exc:
            raise OutcomeUnknown(str(exc)) from None

    def _settle(self, checks: Sequence[Check], ops: Sequence[Op],
                reply: tuple[Any, list[Any], int | None], session: Session | None) -> int | None:
        """The stamp of a sent commit, or None; a commit that failed as a whole because
        an empty bucket was removed under it is sent again after making it again."""
        for attempt in range(_PARENT_RETRIES):
            try:
                return self._outcome(*reply)
            except _ParentGone:
                if attempt == _PARENT_RETRIES - 1:
                    break
                for op in ops:
                    if isinstance(op, Create):
                        self._assured.discard(op.key.rsplit("/", 1)[0])
                        self._ensure_parent(op.key)
                reply = self._send([(checks, ops)], session)[0]
        return None

    def _outcome(self, txn: Any, results: list[Any], update_at: int | None) -> int | None:
        """The commit's stamp, or None if a check failed; ``_ParentGone`` to try again."""
        failures = [(i, r) for i, r in enumerate(results)
                    if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
        for index, error in failures:
            if isinstance(error, NoAuthError):
                op = txn.operations[index]
                raise security.denied(f"a {type(op).__name__.lower()} in a transaction",
                                      op.path, self._conn.config)
        if failures:
            index, error = failures[0]
            if isinstance(error, NoNodeError) and isinstance(txn.operations[index], CreateRequest):
                raise _ParentGone()
            return None
        if update_at is not None:
            return int(results[update_at].mzxid)
        return 0

    def written_version(self, stamp: int, before: Entry | None) -> int:
        return 0 if before is None else before.version + 1  # node data versions count writes

    def leaves(self, root: str, depth: int, limit: int) -> list[str]:
        head = self._heads.get(root) if depth > 1 else None
        found = self._leaves_under(root, head, limit) if head is not None else None
        if found is None:
            found = []
            self._walk(root, depth, limit, found)
        if depth > 1 and found:
            self._heads[root] = found[0][len(root) + 1:].split("/")[:-1]
        elif depth > 1:
            self._heads.pop(root, None)
        return found

    def _leaves_under(self, root: str, head: list[str], limit: int) -> list[str] | None:
        """The walk below in one round trip: every level of the last head path is listed
        at once (a session's reads are served in order, as the walk would send them).
        The answer stands if that path is still the first at each level and its bucket
        holds a leaf. A head bucket found empty, or pruned, is followed by its next
        siblings (read in one more round trip; the empty head pruned by whoever sees it
        still there): in a flowing queue that is where the next leaves are. Else None
        (walk)."""
        paths = [root] + ["/".join([root, *head[:level]]) for level in range(1, len(head) + 1)]
        listings = self._conn.call(None, self._list_all, paths)
        for level, (children, name) in enumerate(zip(listings, head)):
            first = min(children) if children else None
            if first != name:
                if level == len(head) - 1 and first is not None and first > name:
                    break  # the head bucket is gone: its next siblings follow it
                return None  # an earlier directory came, or this level emptied
        leaves = listings[-1]
        if leaves:
            return [f"{paths[-1]}/{leaf}" for leaf in sorted(leaves)[:limit]]
        siblings = sorted(child for child in listings[-2] if child > head[-1])
        if not siblings:
            return None
        if head[-1] in listings[-2]:
            self._prune(paths[-1])  # empty, and not the last: writers fill a later one
        found: list[str] = []
        self._read_buckets(paths[-2], siblings, limit, found)
        return found or None

    def _read_buckets(self, parent: str, names: list[str], limit: int, found: list[str]) -> None:
        """Add the leaves of the first buckets of ``names`` under ``parent`` that hold
        any (in order, up to ``limit``), a few buckets a round trip: the first round trip
        that finds a leaf is the last (``leaves`` may return fewer than ``limit``).
        Prune the buckets found empty but the last (writers are filling it: buckets are
        named by time)."""
        for start in range(0, len(names), _BUCKETS_A_TRIP):
            chunk = names[start:start + _BUCKETS_A_TRIP]
            listings = self._conn.call(None, self._list_all, [f"{parent}/{n}" for n in chunk])
            for name, leaves in zip(chunk, listings):
                if not leaves and not found and name != names[-1]:
                    self._prune(f"{parent}/{name}")
                found.extend(f"{parent}/{name}/{leaf}" for leaf in sorted(leaves)[:limit - len(found)])
            if found:
                return

    def _list_all(self, paths: list[str]) -> list[list[str]]:
        """The children of each path (none for a missing one), requests pipelined; run
        within ``call``."""
        pending = [self._conn.client.get_children_async(path) for path in paths]
        listings = []
        for result in pending:
            try:
                listings.append(result.get())
            except NoNodeError:
                listings.append([])
        return listings

    def _walk(self, node: str, depth: int, limit: int, found: list[str]) -> None:
        try:
            children = sorted(self._conn.call(None, "get_children", node))
        except NodeMissing:
            return
        if depth == 1:
            found.extend(f"{node}/{child}" for child in children[: limit - len(found)])
            return
        if depth == 2:
            self._read_buckets(node, children, limit, found)
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

    def _prune(self, bucket: str) -> None:
        """Remove an empty bucket so that listings stay short, if that works at once.
        Harmless if a producer refills it meanwhile: its create fails and is retried
        after recreating parents."""
        try:
            self._conn.call(None, "delete", bucket, retry=False)
            self._assured.discard(bucket)
        except CoordinationError:
            pass  # refilled, gone already, or the servers are busy: a later walk prunes it

    def counts(self, roots: Sequence[tuple[str, int]]) -> list[int]:
        # ZooKeeper has no snapshot reads. A pass is a snapshot if no directory it read
        # changed its children (pzxid) before a second look: then each count held from
        # its read to its check, so all held at the instant between the two.
        for _attempt in range(_SNAPSHOT_ATTEMPTS):
            seen: dict[str, int] = {}
            counts = [self._count(root, depth, seen) for root, depth in roots]
            # The second look in one round trip: the shorter it takes, the likelier a
            # pass under steady writes is confirmed.
            if self._conn.call(None, self._pzxids, list(seen)) == list(seen.values()):
                break
        return counts

    def _pzxids(self, paths: list[str]) -> list[int]:
        """The pzxid of each path (-1 for a missing one), requests pipelined; run
        within ``call``."""
        pending = [self._conn.client.exists_async(path) for path in paths]
        return [-1 if stat is None else int(stat.pzxid) for stat in (p.get() for p in pending)]

    def _count(self, path: str, depth: int, seen: dict[str, int]) -> int:
        """Keys ``depth`` levels below ``path``; ``seen`` gets each directory's pzxid."""
        if depth == 1:
            seen[path], count = self._children_stat(path)
            return count
        try:
            children, stat = self._conn.call(None, "get_children", path, include_data=True)
        except NodeMissing:
            seen[path] = -1
            return 0
        seen[path] = int(stat.pzxid)
        return sum(self._count(f"{path}/{child}", depth - 1, seen) for child in children)

    def _children_stat(self, path: str) -> tuple[int, int]:
        """``(pzxid, number of children)`` of ``path``; ``(-1, 0)`` if it is missing."""
        stat = self._conn.call(None, "exists", path)
        return (-1, 0) if stat is None else (int(stat.pzxid), int(stat.numChildren))

    def sync(self, key: str) -> bool:
        self._conn.call(None, "sync", key)
        return True

    def watch(self, key: str, seen: Entry | None, woken: Waker) -> Watching:
        try:
            stat = self._conn.call(None, "exists", key, watch=lambda _e: woken.set())
        except CoordinationError:
            return Watching(False, _RETRY_WATCH)
        if (stat is None) != (seen is None) or (stat is not None and seen is not None
                                                 and stat.mzxid != seen.stamp):
            return Watching(gone=True)
        return Watching(False)  # a ZooKeeper watch fires once and needs no cancel


_RETRY_WATCH = 0.1  # seconds before a look again when a watch could not be armed


def _build(txn: Any, checks: Sequence[Check], ops: Sequence[Op]) -> int | None:
    """Fill the kazoo transaction ``txn``; the index of its first update, if any."""
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
    return update_at
