"""The task record's codec and the key layout, without a server: the bytes and keys of
queues written before the queue was split into modules read back the same, and writing
a record back changes none of its bytes."""

from __future__ import annotations

import dataclasses

import pytest

from coordination.errors import QueueError
from coordination.recipes.queue.layout import QueueLayout, leaf, position, ready_band
from coordination.recipes.queue.record import TaskRecord, decode, encode

#: ``Queue._pack`` output of the queue as one module (before the split), for headers
#: made by its own code paths: put, keyed put, claim, nack, ack, dead letter, requeue.
#: (Claims have not written the record since 2026-12-07: ``keyed_claimed`` is what a queue
#: in flight during an upgrade holds.)
STORED = {
    "fresh": b'{"id":"5f0c8e1d2b3a4c5d6e7f80912a3b4c5d","p":0,"k":null,"a":0,"s":1733540013123456789,'
             b'"due":0}\ntwo\nlines',
    "keyed_delayed": b'{"id":"order-42-paid","p":-5,"k":"commande-\\u00e9/42","a":0,"s":1733540013123456790,'
                     b'"due":1733540073123456790,"q":"01733540013123456790.order-42-paid"}\n{"sku": 42}',
    "keyed_claimed": b'{"id":"order-42-paid","p":-5,"k":"commande-\\u00e9/42","a":0,"s":1733540013123456790,'
                     b'"due":1733540073123456790,"q":"01733540013123456790.order-42-paid","state":"claimed",'
                     b'"claims":1,"n":"0a1b2c3d4e5f"}\n{"sku": 42}',
    "keyed_nacked": b'{"id":"order-42-paid","p":-5,"k":"commande-\\u00e9/42","a":1,"s":1733540013123456790,'
                    b'"due":0,"q":"01733540013123456790.order-42-paid","state":"ready","claims":1,'
                    b'"n":"1b2c3d4e5f60","e":"RuntimeError: \\u00e9chec \\u00ab gateway \\u00bb"}'
                    b'\n{"sku": 42}',
    "keyed_tombstone": b'{"id":"order-42-paid","p":-5,"k":"commande-\\u00e9/42","a":1,'
                       b'"s":1733540013123456790,"due":0,"q":"01733540013123456790.order-42-paid",'
                       b'"state":"done","claims":2,"n":"3d4e5f607182",'
                       b'"e":"RuntimeError: \\u00e9chec \\u00ab gateway \\u00bb",'
                       b'"done":1733540099000000001}\n',
    "dead": b'{"id":"t\\u00e2che-1","p":100,"k":null,"a":1,"s":1733540013123456791,"due":0,"state":"dead",'
            b'"claims":1,"n":"5f60718293a4","e":"nack"}\n\x00\xffbinary',
    "revived": b'{"id":"t\\u00e2che-1","p":100,"k":null,"a":0,"s":1733540013123456791,"due":0,'
               b'"state":"ready","claims":1,"n":"5f60718293a4","e":"nack"}\n\x00\xffbinary',
    "tombstone": b'{"id":"x","p":-100,"k":null,"a":0,"s":1,"due":0,"state":"done","claims":1,'
                 b'"n":"718293a4b5c6","done":1733540100000000000}\n',
}

GATEWAY = "RuntimeError: \u00e9chec \u00ab gateway \u00bb"


@pytest.mark.parametrize("name", sorted(STORED))
def test_stored_records_are_written_back_byte_for_byte(name: str) -> None:
    record, payload = decode(STORED[name])
    assert encode(record, payload) == STORED[name]
    assert decode(encode(record, payload)) == (record, payload)


def test_fields_map_to_the_stored_keys() -> None:
    record, payload = decode(STORED["keyed_tombstone"])
    assert payload == b""
    assert record == TaskRecord(
        id="order-42-paid", priority=-5, key="commande-\u00e9/42", attempts=1,
        seq=1733540013123456790, due=0, position="01733540013123456790.order-42-paid",
        state="done", claims=2, nonce="3d4e5f607182", error=GATEWAY,
        done_at=1733540099000000001)
    fresh, payload = decode(STORED["fresh"])
    assert payload == b"two\nlines"  # only the first newline ends the header
    assert fresh == TaskRecord(id="5f0c8e1d2b3a4c5d6e7f80912a3b4c5d", priority=0, key=None,
                               attempts=0, seq=1733540013123456789)
    assert (fresh.state, fresh.claims, fresh.nonce, fresh.error, fresh.position,
            fresh.done_at) == (None, 0, None, None, None, None)


def test_state_changes_write_what_the_single_module_wrote() -> None:
    # Claims no longer write the record; the records they wrote still settle the same.
    claimed, data = decode(STORED["keyed_claimed"])
    nacked = claimed.requeued("1b2c3d4e5f60", GATEWAY, due=0)
    assert encode(nacked, data) == STORED["keyed_nacked"]
    acked = dataclasses.replace(nacked, claims=2).acked("3d4e5f607182", 1733540099000000001)
    assert encode(acked, b"") == STORED["keyed_tombstone"]

    fresh = TaskRecord(id="t\u00e2che-1", priority=100, key=None, attempts=0,
                       seq=1733540013123456791, claims=1)
    dead = fresh.dead_lettered("5f60718293a4", "nack")
    assert encode(dead, b"\x00\xffbinary") == STORED["dead"]
    assert encode(dead.revived(), b"\x00\xffbinary") == STORED["revived"]


def test_a_record_settled_without_old_claims_has_no_claims_key() -> None:
    fresh, data = decode(STORED["fresh"])
    assert b'"claims"' not in encode(fresh.requeued("n1", "nack", 0), data)
    assert decode(encode(fresh.acked("n2", 5), b""))[0].state == "done"


def test_errors_are_cut_to_2000_characters() -> None:
    record = TaskRecord(id="a", priority=0, key=None, attempts=0, seq=1)
    assert record.requeued("n2", "x" * 5000, 0).error == "x" * 2000
    assert record.dead_lettered("n2", "y" * 5000).error == "y" * 2000


def test_keys_it_does_not_know_are_kept() -> None:
    value = b'{"id":"a","p":0,"k":null,"a":0,"s":1,"due":0,"v2":{"trace":"abc"}}\ndata'
    record, payload = decode(value)
    assert record.extra == {"v2": {"trace": "abc"}}
    assert encode(record, payload) == value
    nacked = record.requeued("n1", "nack", 0)
    assert decode(encode(nacked, payload))[0].extra == {"v2": {"trace": "abc"}}
    assert decode(encode(nacked, payload)) == (nacked, payload)


@pytest.mark.parametrize("value", [b"", b"not json\n", b"[1, 2]\n", b'{"id":"a"}\n', b"\xff\n"])
def test_a_value_that_is_no_record_is_a_queue_error(value: bytes) -> None:
    with pytest.raises(QueueError):
        decode(value)


def test_keys_are_those_of_the_single_module() -> None:
    keys = QueueLayout("/shop/queues/orders")
    record, _ = decode(STORED["keyed_delayed"])
    ready = "/shop/queues/orders/r/105/0017335400/0017335400131/01733540013123456790.order-42-paid"
    delayed = "/shop/queues/orders/w/0017335400/0017335400731/01733540073123456790.order-42-paid"
    done = "/shop/queues/orders/x/01733540099/01733540099000000001.order-42-paid"
    assert keys.ready(record) == ready
    assert keys.delayed(record) == delayed
    assert keys.done(record.id, 1733540099000000001) == done
    assert keys.scheduled(record, now=record.due - 1) == delayed
    assert keys.scheduled(record, now=record.due) == ready
    assert [keys.index(k).depth for k in (ready, delayed, done)] == [4, 3, 2]
    assert position(record) == record.position
    assert keys.key_count("commande-\u00e9/42") == "/shop/queues/orders/n/540ac9c120852cb17d2516ae"
    assert keys.key_fifo_leaf("commande-\u00e9/42", position(record)) == (
        "/shop/queues/orders/k/540ac9c120852cb17d2516ae/01733540013123456790.order-42-paid")
    assert (keys.record("a"), keys.in_flight("a"), keys.claim("a"), keys.dead("a"), keys.bell) == (
        "/shop/queues/orders/t/a", "/shop/queues/orders/f/a", "/shop/queues/orders/c/a",
        "/shop/queues/orders/d/a", "/shop/queues/orders/bell")
    assert leaf(ready) == (1733540013123456790, "order-42-paid")
    assert ready_band(ready) == "105"


def test_a_record_is_a_value() -> None:
    record = TaskRecord(id="a", priority=0, key=None, attempts=0, seq=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.attempts = 3  # type: ignore[misc]
