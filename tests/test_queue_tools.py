"""``peek``, ``purge`` and payload codecs, on both backends (and their logic over the
in-memory backend, in a second)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import coordination
from coordination import errors
from coordination.backends.kv import Absent, Create, Delete, OutcomeUnknown, Update
from coordination.recipes.queue import Queue, limits
from coordination.recipes.queue import claim as claim_module

from .fake_backend import FakeBackend


@pytest.fixture(params=["fake", "real"])
def queues(request: pytest.FixtureRequest, backend: str) -> Any:
    """``make(name, **kw)``: a queue on the in-memory backend, or on the real cluster of
    ``backend`` (sessions of 2 s, so upkeep runs every half second)."""
    if request.param == "fake":
        fake = FakeBackend(ttl=2.0)
        return lambda name, **kw: Queue(fake, name, **kw)
    connect: Any = request.getfixturevalue("connect")
    return connect(session_ttl=2).queue


def _drain(queue: Queue) -> list[Any]:
    seen = []
    while (task := queue.get(timeout=0)) is not None:
        seen.append(task.data)
        task.ack()
    return seen


def test_peek_shows_the_next_tasks_in_order_without_claiming(queues: Any) -> None:
    queue = queues("orders")
    assert queue.peek() == []
    queue.put_many(["b1", "b2", "b3"])
    queue.put("urgent", priority=5)
    queue.put("later", delay=60)
    assert [task.data for task in queue.peek(3)] == [b"urgent", b"b1", b"b2"]
    with pytest.raises(errors.AlreadyAcknowledged):
        queue.peek(1)[0].ack()  # a look, not a claim
    assert queue.stats()["pending"] == 4 and queue.stats()["in_flight"] == 0
    with pytest.raises(errors.InvalidArgument):
        queue.peek(0)


def test_purge_removes_all_but_the_tasks_in_flight(queues: Any) -> None:
    queue = queues("orders", max_attempts=1)
    queue.put_many([f"plain {i}" for i in range(60)])
    queue.put("later", delay=60)
    for step in range(30):
        queue.put(f"order-1 step {step}", key="order-1")
    queue.put("order-2 step 0", key="order-2")
    in_hand = queue.get(timeout=5)  # the first keyed or plain task, by put order
    assert in_hand is not None
    dead = queue.get(timeout=5)
    assert dead is not None
    dead.nack(error="bad")  # max_attempts 1: dead
    assert queue.purge() == 60 + 1 + 30 + 1 - 1  # all but the one in flight
    assert queue.stats() == {"pending": 0, "delayed": 0, "blocked": 0, "in_flight": 1, "dead": 0}
    in_hand.ack()  # its worker settles it as usual
    assert queue.stats()["in_flight"] == 0 and _drain(queue) == []
    queue.put("again", key="order-1")  # a purged key works afresh
    queue.put("fresh")
    assert sorted(_drain(queue)) == [b"again", b"fresh"]


def test_purge_keeps_a_keys_task_in_flight_and_its_turn(queues: Any) -> None:
    queue = queues("steps")
    for step in ("pay", "pack", "ship"):
        queue.put(step, key="order-7")
    paying = queue.get(timeout=5)
    assert paying is not None and paying.data == b"pay"
    assert queue.purge() == 2
    paying.nack()  # back in the queue: it is the key's only task now
    again = queue.get(timeout=5)
    assert again is not None and again.data == b"pay"
    again.ack()
    assert queue.get(timeout=0) is None and len(queue) == 0


def test_a_json_queue_gives_back_the_values_it_was_given(queues: Any) -> None:
    queue = queues("orders", codec="json")
    orders = [{"order": 42, "items": ["sku-1", "sku-7"], "total": 19.5, "note": "très bien"},
              [1, 2, 3], "text", None]
    queue.put(orders[0], key="order-42")
    queue.put_many(orders[1:])
    got = []
    while (task := queue.get(timeout=0)) is not None:
        got.append(task.data)
        task.ack()
    assert sorted(map(repr, got)) == sorted(map(repr, orders))
    with pytest.raises(errors.InvalidPayload):
        queue.put({"when": object()})
    with pytest.raises(errors.InvalidPayload):
        queue.put(float("nan"))
    assert len(queue) == 0  # nothing half-written


def test_a_payload_that_is_not_json_says_so_when_read(queues: Any) -> None:
    raw = queues("orders")
    raw.put(b"\xff not json")
    task = queues("orders", codec="json").get(timeout=5)
    assert task is not None and task.raw == b"\xff not json"
    with pytest.raises(errors.InvalidPayload):
        _ = task.data
    task.ack()


def test_a_codec_of_your_own(queues: Any) -> None:
    class Upper:
        name = "upper"

        def encode(self, value: str) -> bytes:
            return value.upper().encode()

        def decode(self, data: bytes) -> str:
            return data.decode().lower()

    queue = queues("orders", codec=Upper())
    queue.put("Hello")
    task = queue.get(timeout=5)
    assert task is not None and task.raw == b"HELLO" and task.data == "hello"
    task.ack()
    for bad in ("pickle", object()):
        with pytest.raises(errors.InvalidArgument):
            queues("orders", codec=bad)


def test_a_claim_past_its_time_limit_is_taken_back_and_its_ack_refused(queues: Any) -> None:
    queue = queues("orders", time_limit=60)
    task_id = queue.put("slow")
    hung = queue.get(timeout=5, time_limit=0.5)  # per get: overrides the queue's 60 s
    assert hung is not None and hung.expires_at is not None
    again = queue.get(timeout=10)  # another consumer's upkeep takes it back
    assert again is not None and again.id == task_id and again.attempts == 1
    assert "time limit" in (again.error or "") and again.token > hung.token
    assert again.expires_at is not None and again.expires_at - time.time() > 50
    with pytest.raises(errors.ClaimLost):
        hung.ack()
    with pytest.raises(errors.ClaimLost):
        hung.extend(60)
    again.ack()
    assert queue.stats()["in_flight"] == 0


def test_extend_keeps_a_long_task_and_its_ack(queues: Any) -> None:
    queue = queues("orders")
    queue.put("long")
    task = queue.get(timeout=5, time_limit=1)
    assert task is not None
    for _ in range(3):  # 3 s of work in 1 s limits, pushed as it goes
        task.extend(1)
        assert queue.get(timeout=0.8) is None  # not taken back meanwhile
    task.ack()
    assert queue.stats()["in_flight"] == 0 and len(queue) == 0
    with pytest.raises(errors.InvalidArgument):
        queue.get(timeout=0, time_limit=0)


@pytest.mark.integration
def test_an_extended_claim_still_ends_with_its_session(
        connect: Any, backend: str) -> None:
    worker, other = connect(session_ttl=2), connect(session_ttl=2)
    worker.queue("orders").put("x")
    task = worker.queue("orders").get(timeout=5, time_limit=60)
    assert task is not None
    task.extend(120)  # an update of the claim key: it must stay the session's (etcd lease)
    worker.close()  # the session ends: the claim with it, whatever its time limit
    again = other.queue("orders").get(timeout=10)
    assert again is not None and again.id == task.id and again.attempts == 1
    again.ack()


def test_get_many_claims_in_order_and_never_two_of_a_key(queues: Any) -> None:
    queue = queues("orders")
    plain = queue.put_many([f"p{i}" for i in range(40)])
    for step in range(3):
        queue.put(f"k{step}", key="order-1")
    first = queue.get_many(10, timeout=5)  # fewer if a time bucket ends among them
    assert first and [task.id for task in first] == plain[:len(first)]  # delivery order
    rest: list[Any] = []
    while batch := queue.get_many(100, timeout=0):  # (ZooKeeper: a time bucket a call)
        rest += batch
    keyed = [task for task in rest if task.key is not None]
    assert [task.data for task in keyed] == [b"k0"]  # the key's first only, while in flight
    assert queue.get_many(5, timeout=0) == []
    assert queue.ack_many(first + rest) == []
    assert [task.data for task in queue.get_many(5, timeout=5)] == [b"k1"]
    with pytest.raises(errors.AlreadyAcknowledged):
        queue.ack_many(first)
    with pytest.raises(errors.InvalidArgument):
        queue.get_many(0)


def test_ack_many_acks_the_others_when_one_claim_was_lost(queues: Any) -> None:
    queue = queues("orders")
    lapsing = queue.put("lapsing")
    queue.put_many(["kept 1", "kept 2"])
    [hung] = queue.get_many(1, timeout=5, time_limit=0.5)
    kept = queue.get_many(5, timeout=5)
    assert hung.id == lapsing and len(kept) == 2
    again = queue.get(timeout=10)  # taken back from the hung claim
    assert again is not None and again.id == lapsing
    assert queue.ack_many([hung, *kept]) == [hung]  # said which; the others went through
    assert queue.stats()["in_flight"] == 1  # only the new delivery
    again.ack()
    assert queue.stats() == {"pending": 0, "delayed": 0, "blocked": 0, "in_flight": 0, "dead": 0}


def test_concurrent_batch_claims_hand_out_each_task_once(queues: Any) -> None:
    queue = queues("orders")
    put = set(queue.put_many([f"t{i}" for i in range(60)]))
    seen: list[str] = []
    guard = threading.Lock()

    def consume() -> None:
        while tasks := queue.get_many(7, timeout=0.5):
            with guard:
                seen.extend(task.id for task in tasks)
            assert queue.ack_many(tasks) == []

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(seen) == sorted(put)  # each once
    assert queue.stats()["in_flight"] == 0 and len(queue) == 0


def test_a_batch_claim_keeps_what_it_won_when_another_consumer_took_some(
        queues: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    queue, other = queues("orders"), queues("orders")
    put = queue.put_many([f"t{i}" for i in range(5)])
    kv = queue._kv  # the store both queues share
    real = kv.commit_each
    taken: list[Any] = []

    def another_consumer_first(commits: Any, keys: Any, session: Any = None) -> Any:
        taken.append(other.get(timeout=0))  # between our listing and our commit
        return real(commits, keys, session)

    monkeypatch.setattr(kv, "commit_each", another_consumer_first)
    won = queue.get_many(5, timeout=5)
    monkeypatch.undo()
    assert len(taken) == 1 and taken[0] is not None and taken[0].id == put[0]
    assert [task.id for task in won] == put[1:]  # the rest, in one round trip
    assert queue.ack_many([*won, taken[0]]) == []
    assert len(queue) == 0 and queue.stats()["in_flight"] == 0


@pytest.mark.integration
def test_commit_each_applies_each_commit_on_its_own(coord: coordination.Coordinator) -> None:
    kv = coord.driver.kv
    root = kv.root("queues", "each")
    assert kv.commit([], [Create(f"{root}/taken", b"x")]) is not None
    applied = kv.commit_each([
        ([Absent(f"{root}/a")], [Create(f"{root}/a", b"1")]),
        ([Absent(f"{root}/taken")], [Create(f"{root}/b", b"2")]),  # its check fails
        ([], [Create(f"{root}/r/100/1", b"3", depth=2)]),  # a leaf (etcd: with markers)
    ], [[f"{root}/a", f"{root}/taken"], [f"{root}/b"], []])
    assert applied[0] is not None and applied[1] is None and applied[2] is not None
    _stamp, (made, taken) = applied[0]  # each reads its keys as its commit left them
    assert (made.value, taken.value) == (b"1", b"x")
    assert kv.get(f"{root}/a").value == b"1" and kv.get(f"{root}/b") is None
    assert kv.leaves(f"{root}/r", 2, 5) == [f"{root}/r/100/1"]


def test_a_batch_claim_of_large_tasks_comes_back_whole(
        queues: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch claim reads each task's record as it applies: 8 tasks of 800 KiB are one
    answer of 6.4 MB on etcd, above gRPC's default limit of 4 MiB."""
    # Buckets of 1,000 s: the 8 puts land in one (a listing may stop at a bucket's end).
    monkeypatch.setattr(limits, "INNER_NS", 10**12)
    monkeypatch.setattr(limits, "OUTER_NS", 10**13)
    queue = queues("orders")
    payloads = [bytes([i]) * 800 * 1024 for i in range(8)]
    for payload in payloads:
        queue.put(payload)
    tasks = queue.get_many(8, timeout=5)
    assert sorted(task.data for task in tasks) == payloads
    assert queue.ack_many(tasks) == [] and len(queue) == 0


@pytest.mark.integration
def test_commit_and_get_reads_what_the_commit_left(coord: coordination.Coordinator) -> None:
    kv = coord.driver.kv
    root = kv.root("queues", "read")
    assert kv.commit([], [Create(f"{root}/record", b"r")]) is not None
    claimed = kv.commit_and_get([Absent(f"{root}/claim")], [Create(f"{root}/claim", b"me")],
                                [f"{root}/record", f"{root}/claim", f"{root}/none"])
    assert claimed is not None
    _stamp, (record, claim, none) = claimed
    assert (record.value, claim.value, none) == (b"r", b"me", None)
    # Its token: the claim key's stamp, which grows with the next commit.
    assert kv.commit([], [Update(f"{root}/record", b"r2")]) > claim.stamp
    assert kv.commit_and_get([Absent(f"{root}/claim")], [Create(f"{root}/claim", b"you")],
                             [f"{root}/claim"]) is None


@pytest.mark.integration
def test_commit_first_applies_the_first_commit_whose_checks_hold(
        coord: coordination.Coordinator) -> None:
    kv = coord.driver.kv
    root = kv.root("queues", "first")
    kv.commit([], [Create(f"{root}/a", b"taken"), Create(f"{root}/record", b"r")])

    def claim(name: str) -> tuple[list[Any], list[Any]]:
        return [Absent(f"{root}/{name}")], [Create(f"{root}/{name}", b"me")]

    first = kv.commit_first([claim("a"), claim("b"), claim("c")],
                            [[f"{root}/a"], [f"{root}/record", f"{root}/b"], [f"{root}/c"]])
    assert first is not None
    index, stamp, (record, made) = first
    assert index == 1 and (record.value, made.value) == (b"r", b"me")
    assert stamp in (made.stamp, 0)  # 0: ZooKeeper's multi of creates tells none (kv.py)
    assert kv.get(f"{root}/c") is None  # only the first that could apply did
    assert kv.commit_first([claim("a"), claim("b")], [[], []]) is None


@pytest.mark.integration
def test_a_claim_leaves_the_record_as_put(queues: Any) -> None:
    """A claim writes three small keys, not the payload again: the record keeps the
    version of its put until the task is settled."""
    queue = queues("orders")
    task_id = queue.put(b"x" * 10_000)
    kv, record_key = queue._kv, queue.layout.record(task_id)
    put = kv.get(record_key)
    task = queue.get(timeout=5)
    assert task.id == task_id and kv.get(record_key).version == put.version
    assert task.token > put.stamp
    task.ack()
    assert kv.get(record_key).version != put.version


@pytest.mark.integration
def test_a_listing_goes_on_past_emptied_buckets(coord: coordination.Coordinator,
                                                connect: Any) -> None:
    """Consumers drain the head bucket, one prunes it, the others find it gone: each
    listing goes on from the head's next siblings, then the next directory; a bucket
    that came before the head (a higher priority, a task put back) is seen first."""
    kv, other = coord.driver.kv, connect().driver.kv
    root = kv.root("queues", "flow") + "/r"
    keys = [f"{root}/100/a/00{i}/{i}" for i in (1, 2, 3)] + [f"{root}/100/b/001/4"]

    def other_lists(limit: int) -> list[str]:
        # A listing may miss the last moments of another client's writes, never what
        # its own client has read: ``other`` reads a key first, after ``kv``'s writes.
        other.get(keys[0])
        return other.leaves(root, 4, limit)

    kv.commit([], [Create(key, depth=4) for key in keys])
    assert kv.leaves(root, 4, 1) == keys[:1] and other_lists(1) == keys[:1]
    kv.commit([], [Delete(keys[0])])
    assert kv.leaves(root, 4, 8) == keys[1:3]  # its head emptied (and pruned)
    assert other_lists(8) == keys[1:3]  # its head pruned by the other
    kv.commit([], [Delete(keys[1]), Delete(keys[2])])
    assert other_lists(8) == [keys[3]]  # every sibling empty: the next directory
    kv.commit([], [Create(f"{root}/100/a/000/0", depth=4)])
    assert kv.leaves(root, 4, 8) == [f"{root}/100/a/000/0", keys[3]]
    assert other_lists(8) == [f"{root}/100/a/000/0", keys[3]]


def test_a_bucket_removed_under_a_writer_is_made_again(
        coord: coordination.Coordinator, connect: Any) -> None:
    """A listing prunes empty buckets; a writer that made the bucket before (and
    remembers it) finds it gone: its commit fails as a whole and is sent again after
    the bucket is made again, alone or in a batch."""
    kv, other = coord.driver.kv, connect().driver.kv
    root = kv.root("queues", "pruned")
    last = f"{root}/r/200/0"  # the last bucket is never pruned: writers are filling it
    assert kv.commit([], [Create(f"{root}/r/100/1", b"1", depth=2),
                          Create(last, b"", depth=2)]) is not None
    for n, write in ((2, lambda key: kv.commit([], [Create(key, b"x", depth=2)])),
                     (3, lambda key: kv.commit_each([([], [Create(key, b"x", depth=2)])], [[]])[0])):
        other.get(last)  # a listing never misses what its own client has read since
        assert other.leaves(f"{root}/r", 2, 10)[0] == f"{root}/r/100/{n - 1}"
        assert other.commit([], [Delete(f"{root}/r/100/{n - 1}")]) is not None
        assert other.leaves(f"{root}/r", 2, 10) == [last]  # and the empty bucket pruned
        assert write(f"{root}/r/100/{n}") is not None
        assert kv.leaves(f"{root}/r", 2, 10)[0] == f"{root}/r/100/{n}"


def test_a_batch_claim_whose_reply_was_lost_keeps_the_claims_that_applied(
        queues: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    queue, other = queues("orders"), queues("orders")
    put = queue.put_many([f"t{i}" for i in range(4)])
    kv = queue._kv
    real = kv.commit_each
    taken: list[Any] = []

    def applied_but_reply_lost(commits: Any, keys: Any, session: Any = None) -> Any:
        taken.append(other.get(timeout=0))  # one of them goes to another consumer
        real(commits, keys, session)
        raise OutcomeUnknown("reply lost (injected)")

    monkeypatch.setattr(kv, "commit_each", applied_but_reply_lost)
    won = queue.get_many(4, timeout=5)
    monkeypatch.undo()
    assert [task.id for task in won] == put[1:]  # read back: ours, and not the other's
    assert queue.ack_many([*won, taken[0]]) == []
    assert len(queue) == 0 and queue.stats()["in_flight"] == 0


def test_a_contended_consumer_claims_from_the_rest_of_its_listing(
        queues: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a lost race, a consumer tries 4 listed tasks a claim from its last listing
    while it is fresh, and lists again only when that listing is used up."""
    monkeypatch.setattr(claim_module, "_FRESH_FOR", 60.0)  # fresh throughout, however slow
    queue = queues("spare")
    queue.put_many([b"%d" % i for i in range(12)])
    claimer = queue._claimer  # white box: the test forces the contended mode and counts
    listed = []
    leaves = claimer._kv.leaves
    monkeypatch.setattr(claimer._kv, "leaves", lambda root, *a: (
        listed.append(root) if root == queue.layout.ready_root else None, leaves(root, *a))[1])
    claimer._contended_until = time.monotonic() + 60
    taken = [queue.get(timeout=0) for _ in range(3)]
    assert len(listed) == 1  # 12 listed: three claims of 4 candidates each
    assert queue.get(timeout=0) is not None and len(listed) == 2
    assert len({task.id for task in taken if task is not None}) == 3
