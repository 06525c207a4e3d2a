"""Directories for etcd, so that a listing of the first keys of a deep index stays cheap.

etcd 3.4 serves a ranged read by visiting every key in the range, even with a limit, and
every key deleted there since the last compaction: the first ready task of a queue holding
a million, or that handed out a million since, would cost a million-key visit. The queue
lists its indexes with ``kv.leaves(root, depth, limit)`` over keys
``ROOT/D1/.../D(depth-1)/LEAF`` whose directories are time buckets; ZooKeeper has real
directories, etcd gets these markers::

    ROOT.dirs/J/D1/.../DJ       directory D1/.../DJ of ROOT holds a leaf (J = 1 .. depth-1)

A commit that creates a leaf also creates its missing markers (nested transactions that
write only when the marker is absent, so a busy bucket costs no extra writes). A
listing walks the markers level by level, each read spanning one directory's children,
then reads one bucket's leaves. A directory found empty loses its marker in a commit that
checks the leaf range is still empty, so a concurrent create either sees the marker
gone and writes it again, or makes the check fail.

The last head directory of each root is remembered. The next listing reads, in one
round trip, that directory's leaves and whether a marker of a directory before it exists
(a leaf put before the head: a higher priority, a task put back); if none does and the
head holds leaves, they are the answer. A head found empty is pruned and the walk goes
on from its next sibling, then one level up at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from pyetcd import etcdrpc
from pyetcd.utils import prefix_range_end

from ..kv import Create, Delete, Op

#: Markers read per request while walking one directory level.
_PAGE = 16
#: Seconds between two reads of an index found empty for leaves without markers.
_UNMARKED_EVERY = 5.0
#: Reads ``[start, end)``, keys only, at most ``limit`` (0: all); the keys, in order.
RangeKeys = Callable[[bytes, bytes, int], list[bytes]]
#: Reads several ``(start, end, limit)`` ranges, keys only, in one round trip.
ReadRanges = Callable[[Sequence[tuple[bytes, bytes, int]]], list[list[bytes]]]
#: Next sibling directories read with the head (their names), and of those, the ones
#: whose leaves the next listing reads with the head's.
_NEXT, _AHEAD = 3, 2
#: Runs a transaction, once; its reply, or None if it could not be run.
Txn = Callable[[etcdrpc.TxnRequest], "etcdrpc.TxnResponse | None"]


def _marker(root: str, dirs: Sequence[str]) -> bytes:
    return f"{root}.dirs/{len(dirs)}/{'/'.join(dirs)}".encode()


def _markers_under(root: str, dirs: Sequence[str], level: int) -> bytes:
    """Prefix of the level-``level`` markers inside directory ``dirs``."""
    return f"{root}.dirs/{level}/{''.join(d + '/' for d in dirs)}".encode()


def _leaf_prefix(root: str, dirs: Sequence[str]) -> bytes:
    return f"{root}/{''.join(d + '/' for d in dirs)}".encode()


def _split(key: str, depth: int) -> tuple[str, list[str]]:
    """``(root, directories)`` of a leaf ``depth`` levels below its root."""
    parts = key.split("/")
    return "/".join(parts[:-depth]), parts[-depth:-1]


def _markers_of(ops: Sequence[Op]) -> Iterator[bytes]:
    seen: set[bytes] = set()
    for op in ops:
        if isinstance(op, Create) and op.depth > 1:
            root, dirs = _split(op.key, op.depth)
            for level in range(1, len(dirs) + 1):
                marker = _marker(root, dirs[:level])
                if marker not in seen:
                    seen.add(marker)
                    yield marker


def marker_ops(ops: Sequence[Op]) -> list[etcdrpc.RequestOp]:
    """Request ops that create the missing directory markers of the leaves ``ops``
    create: put into the same transaction, they commit with the leaves."""
    return [
        etcdrpc.RequestOp(request_txn=etcdrpc.TxnRequest(
            compare=[etcdrpc.Compare(key=marker, target=etcdrpc.Compare.CREATE,
                                     result=etcdrpc.Compare.EQUAL, create_revision=0)],
            success=[etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=marker))],
        ))
        for marker in _markers_of(ops)
    ]


def unmark_ops(deletes: Sequence[Op], creates: Sequence[Op]) -> list[etcdrpc.RequestOp]:
    """Request ops that drop the marker of each directory whose last leaves ``deletes``
    delete (a directory where ``creates`` makes a leaf keeps it): a nested transaction
    that checks no other leaf is there. etcd checks it against the keys as they were
    before the transaction, hence a check of each gap between the deleted leaves. In a
    flowing queue the claim that takes a bucket's last task drops its marker, so that
    no listing has to prune it (a prune is a write, and all consumers try it at once)."""
    kept = {_marker(*_split(op.key, op.depth)) for op in creates
            if isinstance(op, Create) and op.depth > 1}
    gone: dict[bytes, tuple[bytes, set[bytes]]] = {}
    for op in deletes:
        if isinstance(op, Delete) and op.depth > 1:
            root, dirs = _split(op.key, op.depth)
            marker = _marker(root, dirs)
            if marker not in kept:
                gone.setdefault(marker, (_leaf_prefix(root, dirs), set()))[1].add(op.key.encode())
    requests = []
    for marker, (prefix, keys) in gone.items():
        bounds = [prefix, *sorted(keys | {key + b"\0" for key in keys}),
                  prefix_range_end(prefix)]
        requests.append(etcdrpc.RequestOp(request_txn=etcdrpc.TxnRequest(
            compare=[etcdrpc.Compare(key=start, range_end=end, target=etcdrpc.Compare.CREATE,
                                     result=etcdrpc.Compare.EQUAL, create_revision=0)
                     for start, end in zip(bounds[::2], bounds[1::2]) if start < end],
            success=[etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(
                key=marker))])))
    return requests


class Directories:
    """Listings of ``kv.leaves`` over marked directories (see the module doc)."""

    def __init__(self, range_keys: RangeKeys, read_ranges: ReadRanges, txn: Txn) -> None:
        self._range_keys = range_keys
        self._read_ranges = read_ranges
        self._txn = txn
        # root -> its head directory as last listed, and the next marked directories
        # beside it (their leaves are read with the head's)
        self._heads: dict[str, tuple[list[str], list[str]]] = {}
        self._unmarked_checked: dict[str, float] = {}  # root -> when last read whole

    def leaves(self, root: str, depth: int, limit: int) -> list[str]:
        """Up to ``limit`` first leaves in key order (fewer only if the head bucket and
        the next ones read with it hold fewer: the next listing goes on from there)."""
        remembered = self._heads.get(root)
        start = _leaf_prefix(root, [])
        found: list[str] = []
        nexts: list[str] = []
        if remembered is None:
            self._walk(root, [], depth, limit, found)
        else:
            # Never a read from the index's start: etcd would visit every key deleted
            # there since the last compaction. Whether a directory before the head's got
            # a leaf (a higher priority, a task put back) says a marker.
            head, ahead = remembered
            head_leaves, head_marker = _leaf_prefix(root, head), _marker(root, head)
            siblings = _markers_under(root, head[:-1], len(head))
            earlier, in_head, marked, following, *later = self._read_ranges([
                (_markers_under(root, [], depth - 1), head_marker, 1),
                (head_leaves, prefix_range_end(head_leaves), limit),
                (head_marker, head_marker + b"\0", 1),
                (head_marker + b"\0", prefix_range_end(siblings), _NEXT),
                *((prefix, prefix_range_end(prefix), limit)
                  for prefix in (_leaf_prefix(root, [*head[:-1], name]) for name in ahead))])
            nexts = [marker[len(siblings):].decode() for marker in following]
            if earlier:
                self._walk(root, [], depth, limit, found)
            else:
                found = self._decode(in_head)
                # The next directories' leaves, read with the head's: in key order after
                # them as long as those directories are still the head's next ones.
                for name, next_name, leaves in zip(ahead, nexts, later):
                    if len(found) >= limit or name != next_name:
                        break
                    found += self._decode(leaves)
                del found[limit:]
                if not in_head and found and marked:
                    self._prune(root, head, depth)
                elif not found:
                    # A head whose marker is gone was pruned by another client already:
                    # its consumers all find it empty at once, one prune will do.
                    self._step_on(root, head, nexts, depth, limit, found, bool(marked))
        if not found and time.monotonic() >= self._unmarked_checked.get(root, 0.0) + _UNMARKED_EVERY:
            # Leaves written without markers (by a version before these directories)
            # are found, and indexed, here; not at every listing, so that an empty
            # index mostly costs one empty read.
            self._unmarked_checked[root] = time.monotonic()
            found = self._decode(self._range_keys(start, prefix_range_end(start), limit))
            if found:
                self._txn(etcdrpc.TxnRequest(success=marker_ops(
                    [Create(key, depth=depth) for key in found])))
        if found:
            dirs = _split(found[0], depth)[1]
            if remembered is None or dirs[:-1] != remembered[0][:-1]:
                nexts = []  # the next listing reads them
            self._heads[root] = (dirs, [name for name in nexts if name > dirs[-1]][:_AHEAD])
        else:
            self._heads.pop(root, None)
        return found

    def _step_on(self, root: str, head: list[str], nexts: list[str], depth: int, limit: int,
                 found: list[str], marked: bool) -> None:
        """The head found empty, and ``nexts`` the next marked directories beside it:
        prune the head (if ``marked``: no other client did) and read the leaves of
        ``nexts``, in one round trip; walk on from there if they hold none either. In
        a flowing queue the next bucket is the head's sibling: one request, not a prune,
        a read of the siblings and one of each sibling's leaves."""
        ranges = [(prefix, prefix_range_end(prefix), limit)
                  for prefix in (_leaf_prefix(root, [*head[:-1], name]) for name in nexts)]
        if ranges and not marked:
            for keys in self._read_ranges(ranges):
                found += self._decode(keys)
        elif ranges:
            reads = [etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(
                key=start, range_end=end, limit=limit, keys_only=True))
                for start, end, limit in ranges]
            reply = self._txn(self._prune_request(root, head, depth, reads))
            if reply is not None and reply.succeeded:
                for response in reply.responses[-len(reads):]:
                    found += self._decode([kv.key for kv in response.response_range.kvs])
            marked = reply is None or not reply.succeeded
        del found[limit:]
        if not found:
            self._walk_on(root, head, depth, limit, found, pruned=not marked)

    def _walk_on(self, root: str, head: list[str], depth: int, limit: int,
                 found: list[str], pruned: bool = False) -> None:
        """Walk on from directory ``head``, found to hold no leaf, as nothing lies before
        it: its next siblings first, then one level up at a time (in a flowing queue
        the next bucket is usually a sibling: two reads, not a walk from the root)."""
        for level in range(len(head), 0, -1):
            if not (pruned and level == len(head)):
                self._prune(root, head[:level], depth)
            self._walk(root, head[:level - 1], depth, limit, found, after=head[level - 1])
            if found:
                return

    def _walk(self, root: str, parents: list[str], depth: int, limit: int,
              found: list[str], after: str | None = None) -> None:
        """Find leaves under directory ``parents``, in its children after ``after``
        (all if None), pruning the children found empty."""
        if len(parents) == depth - 1:
            prefix = _leaf_prefix(root, parents)
            found += self._decode(self._range_keys(prefix, prefix_range_end(prefix),
                                                   limit - len(found)))
            return
        for name in self._children(_markers_under(root, parents, len(parents) + 1), after):
            child = [*parents, name]
            before = len(found)
            self._walk(root, child, depth, limit, found)
            if len(found) >= limit:
                return
            if len(found) == before:
                self._prune(root, child, depth)

    def _children(self, prefix: bytes, after: str | None = None) -> Iterator[str]:
        """The directory names marked under ``prefix`` (after ``after``), in order, a
        page at a time (a walk usually stops at the first)."""
        start, end = prefix, prefix_range_end(prefix)
        if after is not None:
            start = prefix + after.encode() + b"\0"
        while True:
            page = self._range_keys(start, end, _PAGE)
            yield from (marker[len(prefix):].decode() for marker in page)
            if len(page) < _PAGE:
                return
            start = page[-1] + b"\0"

    def _prune(self, root: str, dirs: list[str], depth: int) -> None:
        """Drop the markers of ``dirs`` and below, if it still holds no leaf."""
        self._txn(self._prune_request(root, dirs, depth))

    @staticmethod
    def _prune_request(root: str, dirs: list[str], depth: int,
                       then: Sequence[etcdrpc.RequestOp] = ()) -> etcdrpc.TxnRequest:
        """The transaction of ``_prune``; if it applies, it runs ``then`` after."""
        leaves = _leaf_prefix(root, dirs)
        deeper = [_markers_under(root, dirs, level) for level in range(len(dirs) + 1, depth)]
        return etcdrpc.TxnRequest(
            compare=[etcdrpc.Compare(key=leaves, range_end=prefix_range_end(leaves),
                                     target=etcdrpc.Compare.CREATE,
                                     result=etcdrpc.Compare.EQUAL, create_revision=0)],
            success=[etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(
                key=_marker(root, dirs)))] + [
                etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(
                    key=prefix, range_end=prefix_range_end(prefix))) for prefix in deeper]
            + list(then),
        )

    @staticmethod
    def _decode(keys: list[bytes]) -> list[str]:
        return [key.decode() for key in keys]
