"""etcd's directory markers (backends/etcd/dirs.py) against a real cluster: listings
follow key order across buckets and priorities, emptied buckets lose their markers, a
bucket that is refilled keeps its marker, and leaves without markers are still found."""

from __future__ import annotations

from typing import Any

import pytest

import coordination
from coordination.backends.etcd import dirs
from coordination.backends.kv import Create, Delete
from coordination.recipes.queue import limits as queue_module

pytestmark = pytest.mark.integration


def _count_reads(directories: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The round trips of ``directories``' reads and upkeep transactions from now on, as
    a list that grows."""
    reads: list[Any] = []
    for name in ("_range_keys", "_read_ranges", "_txn"):
        real = getattr(directories, name)
        monkeypatch.setattr(directories, name,
                            lambda *a, real=real: reads.append(a) or real(*a))
    return reads


@pytest.fixture
def etcd(backend: str, coord: coordination.Coordinator) -> coordination.Coordinator:
    if backend != "etcd":
        pytest.skip("etcd's directory index")
    return coord


def _markers(coord: coordination.Coordinator, root: str) -> list[str]:
    prefix = f"{root}.dirs/".encode()
    return [key.decode() for key in coord.driver.kv._range_keys(prefix, prefix[:-1] + b"0", 0)]


def test_gets_follow_priority_then_put_order_across_buckets(etcd, monkeypatch) -> None:
    # Microsecond buckets: every task lands in a bucket of its own.
    monkeypatch.setattr(queue_module, "INNER_NS", 1_000)
    monkeypatch.setattr(queue_module, "OUTER_NS", 100_000)
    queue = etcd.queue("orders")
    expected = []
    for i in range(30):
        priority = (i % 3) - 1
        expected.append((-priority, i))
        queue.put(str(i), priority=priority)
    first = queue.get(timeout=1)
    assert first is not None
    first.nack()  # back into its old bucket, ahead of the remembered head
    got = []
    while (task := queue.get(timeout=0)) is not None:
        got.append((-task.priority, int(task.data)))
        task.ack()
    assert got == sorted(expected)
    root = etcd.driver.kv.root("queues", "orders")
    assert _markers(etcd, f"{root}/r") == []  # the last, empty listing pruned them all
    assert queue.stats()["pending"] == 0


def test_a_bucket_keeps_its_marker_while_it_holds_a_leaf(etcd) -> None:
    backend = etcd.driver
    root = backend.kv.root("queues", "raw") + "/r"
    leaf = f"{root}/100/a/b/leaf"
    backend.kv.commit([], [Create(leaf, depth=4)])
    assert _markers(etcd, root) == [f"{root}.dirs/1/100", f"{root}.dirs/2/100/a",
                                    f"{root}.dirs/3/100/a/b"]
    backend.kv._dirs._prune(root, ["100"], 4)  # a stale view: the check keeps the markers
    assert len(_markers(etcd, root)) == 3
    assert backend.kv.leaves(root, 4, 8) == [leaf]
    backend.kv.commit([], [Delete(leaf)])
    assert backend.kv.leaves(root, 4, 8) == []
    assert _markers(etcd, root) == []


def test_leaves_written_without_markers_are_found_and_indexed(etcd) -> None:
    backend = etcd.driver
    root = backend.kv.root("queues", "legacy") + "/r"
    old = [f"{root}/100/a/b/1", f"{root}/100/a/c/2"]
    backend.kv.commit([], [Create(key) for key in old])  # no depth: no markers
    assert backend.kv.leaves(root, 4, 8) == old
    assert len(_markers(etcd, root)) == 4
    backend.kv._dirs._heads.clear()
    assert backend.kv.leaves(root, 4, 8) == old  # now through the markers


def test_a_walk_pages_through_many_emptied_buckets(etcd) -> None:
    backend = etcd.driver
    root = backend.kv.root("queues", "pages") + "/r"
    leaves = [f"{root}/100/a/{i:03d}/leaf" for i in range(40)]
    for start in range(0, 40, 10):
        backend.kv.commit([], [Create(key, depth=4) for key in leaves[start:start + 10]])
    backend.kv.commit([], [Delete(key) for key in leaves[:39]])
    assert backend.kv.leaves(root, 4, 8) == leaves[39:]
    assert _markers(etcd, root) == [f"{root}.dirs/1/100", f"{root}.dirs/2/100/a",
                                    f"{root}.dirs/3/100/a/039"]


def test_an_empty_index_costs_one_read_and_unmarked_leaves_are_still_found(etcd, monkeypatch) -> None:
    backend = etcd.driver
    root = backend.kv.root("queues", "empty") + "/r"
    assert backend.kv.leaves(root, 4, 8) == []  # the first listing also reads the whole range
    reads = _count_reads(backend.kv._dirs, monkeypatch)
    assert backend.kv.leaves(root, 4, 8) == []
    assert len(reads) == 1  # the markers of the first level only
    old = [f"{root}/100/a/b/1"]
    backend.kv.commit([], [Create(key) for key in old])  # no depth: no markers
    monkeypatch.setattr(dirs, "_UNMARKED_EVERY", 0.0)  # as once the interval has passed
    assert backend.kv.leaves(root, 4, 8) == old


def test_when_the_head_bucket_empties_the_listing_walks_on_from_its_siblings(
        etcd, connect, monkeypatch) -> None:
    backend = etcd.driver
    root = backend.kv.root("queues", "siblings") + "/r"
    first, second = f"{root}/100/a/001/1", f"{root}/100/a/002/2"
    backend.kv.commit([], [Create(first, depth=4), Create(second, depth=4)])
    assert backend.kv.leaves(root, 4, 1) == [first]  # its bucket is now the head
    backend.kv.commit([], [Delete(first)])
    reads = _count_reads(backend.kv._dirs, monkeypatch)
    assert backend.kv.leaves(root, 4, 8) == [second]
    # The old head (empty) with its next sibling's marker, then the old head pruned and
    # that sibling read in one transaction: not a walk from the root.
    assert len(reads) == 2
    assert _markers(etcd, root) == [f"{root}.dirs/1/100", f"{root}.dirs/2/100/a",
                                    f"{root}.dirs/3/100/a/002"]
    # Another client whose head was the same bucket finds it pruned: it reads on, once.
    other = connect().driver.kv
    other.get(second)  # a listing never misses what its own client has read since
    other._dirs._heads[root] = (["100", "a", "001"], [])
    reads = _count_reads(other._dirs, monkeypatch)
    assert other.leaves(root, 4, 8) == [second] and len(reads) == 2
    # Its next siblings hold nothing either: walk on from there.
    backend.kv.commit([], [Delete(second), Create(f"{root}/100/b/001/3", depth=4)])
    assert backend.kv.leaves(root, 4, 8) == [f"{root}/100/b/001/3"]


def test_a_listing_never_reads_from_the_start_of_a_busy_index(etcd, monkeypatch) -> None:
    """etcd visits every key deleted in a range since the last compaction: a listing
    that read from the index's start would grow slower with every task handed out."""
    backend = etcd.driver
    root = backend.kv.root("queues", "history") + "/r"
    early, late = f"{root}/100/a/001/1", f"{root}/100/a/002/2"
    backend.kv.commit([], [Create(early, depth=4), Create(late, depth=4)])
    assert backend.kv.leaves(root, 4, 1) == [early]
    reads = _count_reads(backend.kv._dirs, monkeypatch)
    assert backend.kv.leaves(root, 4, 1) == [early]
    [(ranges,)] = reads  # one round trip: a marker before the head's? the head's leaves
    assert all(not start.startswith(f"{root}/".encode()) or start == f"{root}/100/a/001/".encode()
               for start, _end, _limit in ranges)
    backend.kv.commit([], [Create(f"{root}/090/a/001/0", depth=4)])  # a higher priority
    assert backend.kv.leaves(root, 4, 1) == [f"{root}/090/a/001/0"]


def test_the_commit_that_takes_a_buckets_last_leaf_drops_its_marker(etcd) -> None:
    """No listing has to prune it then (a prune is a write, tried by every consumer
    that finds the bucket empty); a bucket a leaf is left in, or that the same commit
    puts a leaf into, keeps its marker."""
    kv = etcd.driver.kv
    root = kv.root("queues", "unmark") + "/r"
    a, b, c = (f"{root}/100/a/001/{n}" for n in "abc")
    kv.commit([], [Create(key, depth=4) for key in (a, b, c)])
    kv.commit([], [Delete(b, depth=4)])
    assert f"{root}.dirs/3/100/a/001" in _markers(etcd, root)
    kv.commit([], [Delete(a, depth=4), Delete(c, depth=4), Create(f"{root}/100/a/001/d", depth=4)])
    assert f"{root}.dirs/3/100/a/001" in _markers(etcd, root)
    kv.commit([], [Delete(f"{root}/100/a/001/d", depth=4)])
    assert _markers(etcd, root) == [f"{root}.dirs/1/100", f"{root}.dirs/2/100/a"]
    assert kv.leaves(root, 4, 8) == []
    kv.commit([], [Create(a, depth=4), Create(b, depth=4)])  # the bucket again
    kv.commit_each([([], [Delete(a, depth=4)]), ([], [Create(c, depth=4)])], [[], []])
    kv.commit_each([([], [Delete(b, depth=4)]), ([], [Delete(c, depth=4)])], [[], []])
    assert f"{root}.dirs/3/100/a/001" in _markers(etcd, root)  # each kept the other
    assert kv.leaves(root, 4, 8) == []


def test_a_listing_behind_what_the_client_has_seen_is_read_again_from_the_leader(
        etcd, monkeypatch) -> None:
    """Listings are served by the connected server alone (no round to the leader), as
    ZooKeeper serves reads; one older than a revision this client has seen (a failover
    to a server that is behind) is read again, linearizably."""
    kv = etcd.driver.kv
    root = kv.root("queues", "recent") + "/r"
    leaf = f"{root}/100/a/001/x"
    kv.commit([], [Create(leaf, depth=4)])
    conn = kv._conn
    sent: list[bool] = []
    real = conn.txn
    monkeypatch.setattr(conn, "txn", lambda session, request, timeout=None: sent.append(
        request.success[0].request_range.serializable) or real(session, request, timeout))
    assert kv.leaves(root, 4, 8) == [leaf] and set(sent) == {True}
    sent.clear()
    assert kv.leaves(root, 4, 8) == [leaf] and sent == [True]  # the head, remembered
    # As if a reply from another server had shown a later revision:
    monkeypatch.setattr(conn, "_seen", conn._seen + 1_000_000)
    sent.clear()
    assert kv.leaves(root, 4, 8) == [leaf] and sent == [True, False]
