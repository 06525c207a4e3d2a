"""The event hook (coordination/events.py), against every backend: a listener hears lock
waits, timeouts, holds and losses, queue puts, deliveries, redeliveries and settlements,
counter conflicts and session changes, with bounded names and the right durations; a
listener that raises changes nothing for the recipe."""

from __future__ import annotations

import logging
import threading
import time

import pytest

import coordination
from coordination import errors
from coordination.events import KINDS, Event, Events

from .conftest import TTL
from .helpers import wait_for
from .test_session_loss import expire_session

pytestmark = pytest.mark.integration


class Heard:
    """A listener that keeps every event (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._guard = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._guard:
            self.events.append(event)

    def of(self, kind: str) -> list[Event]:
        with self._guard:
            return [event for event in self.events if event.kind == kind]

    def total(self, kind: str) -> int:
        return sum(event.count for event in self.of(kind))


def test_lock_waits_holds_timeouts_and_losses_are_told(coord: coordination.Coordinator,
                                                      connect, caplog) -> None:
    caplog.set_level(logging.INFO, logger="coordination")
    heard = Heard()
    coord.add_event_listener(heard)
    lock, rival = coord.lock("sku-1"), connect().lock("sku-1")
    assert rival.acquire()
    threading.Timer(0.3, rival.release).start()
    assert lock.acquire(timeout=10)  # waits about 0.3 s for the rival
    time.sleep(0.1)  # the hold being measured
    lock.release()
    (acquired,), (released,) = heard.of("lock.acquired"), heard.of("lock.released")
    assert acquired.name == "sku-1" and 0.2 < acquired.seconds < 5  # type: ignore[operator]
    assert released.name == "sku-1" and 0.1 <= released.seconds < 5  # type: ignore[operator]
    assert rival.acquire()
    assert not lock.acquire(timeout=0.2)
    (timeout,) = heard.of("lock.timeout")
    assert timeout.name == "sku-1" and timeout.seconds >= 0.2  # type: ignore[operator]
    rival.release()
    assert lock.acquire()
    expire_session(coord)
    wait_for(lambda: heard.of("lock.lost"), timeout=TTL * 3)
    assert heard.of("lock.lost")[0].name == "sku-1"
    assert any(event.detail == "LOST" for event in heard.of("session"))
    # One INFO line each for the operator, from the module's own logger.
    lines = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("coordination.recipes.lock", logging.INFO,
            f"lock 'sku-1' lost with its session (token {lock.token})") in lines
    assert any(name == "coordination.session" and level == logging.INFO and "lost" in text
               for name, level, text in lines)
    with pytest.raises(errors.LockLost):
        lock.release()
    assert len(heard.of("lock.released")) == 1  # a lost hold is not told as released


def test_queue_deliveries_and_settlements_are_told(coord: coordination.Coordinator) -> None:
    heard = Heard()
    coord.add_event_listener(heard)
    queue = coord.queue("orders", max_attempts=2)
    queue.put(b"one")
    queue.put_many([b"two", b"three"])
    assert heard.total("queue.put") == 3
    first = queue.get(timeout=5)
    assert first is not None
    time.sleep(0.05)
    first.ack()
    (acked,) = heard.of("queue.acked")
    assert acked.name == "orders" and 0.05 <= acked.seconds < 5  # type: ignore[operator]
    tasks = queue.get_many(2, timeout=5)
    assert len(tasks) == 2 and heard.total("queue.delivered") == 3
    tasks[0].nack()
    tasks[1].nack(dead=True)
    assert len(heard.of("queue.nacked")) == 1 and len(heard.of("queue.dead")) == 1
    again = queue.get(timeout=5)  # the nacked one, delivered a second time
    assert again is not None and heard.total("queue.redelivered") == 1
    assert queue.ack_many([again]) == [] and len(heard.of("queue.acked")) == 2
    claimed = queue.put(b"four")
    task = queue.get(timeout=5)
    assert task is not None and task.id == claimed
    expire_session(coord)
    wait_for(lambda: any(event.detail == "LOST" for event in heard.of("session")),
             timeout=TTL * 3)
    with pytest.raises(errors.ClaimLost):
        task.ack()
    assert [event.name for event in heard.of("queue.claim_lost")] == ["orders"]
    assert {event.kind for event in heard.events} <= KINDS


def test_counter_conflicts_are_told(coord: coordination.Coordinator, connect) -> None:
    heard = Heard()
    coord.add_event_listener(heard)
    counters = [coord.counter("stock") for _ in range(3)] + [connect().counter("stock")
                                                             for _ in range(3)]
    counters[0].set(0)
    threads = [threading.Thread(target=lambda c=c: [c.add(1) for _ in range(20)])
               for c in counters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters[0].value == 120
    # Six writers on one key meet each other; only coord's own conflicts are told here.
    assert all(event.name == "stock" for event in heard.of("counter.conflict"))
    assert heard.of("counter.conflict"), "no conflict in 120 contended adds"


def test_a_failing_listener_changes_nothing(coord: coordination.Coordinator, caplog) -> None:
    def failing(_event: Event) -> None:
        raise RuntimeError("a listener with a bug")

    heard = Heard()
    coord.add_event_listener(failing)
    coord.add_event_listener(heard)
    with coord.lock("sku-2", timeout=5):
        pass
    assert len(heard.of("lock.released")) == 1  # the next listener still heard it
    assert any("event listener" in record.getMessage() for record in caplog.records)
    coord.remove_event_listener(failing)
    coord.remove_event_listener(heard)
    with coord.lock("sku-2", timeout=5):
        pass
    assert len(heard.of("lock.released")) == 1


def test_emit_without_listeners_builds_nothing() -> None:
    events = Events()
    assert not events
    events.emit("lock.acquired", "x", 0.1)  # no listener: nothing to call
    heard = Heard()
    events.add(heard)
    events.emit("queue.put", "q", count=3)
    assert heard.events == [Event("queue.put", "q", None, 3, "")]
