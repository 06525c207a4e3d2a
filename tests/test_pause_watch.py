"""The process-wide pause watch: one thread ticks every client; a stall shows as a gap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import coordination
from coordination.backends.pause_watch import TICK, PauseWatch

from .helpers import wait_for


class Recorder:
    def __init__(self, stall: float = 0.0) -> None:
        self.ticks: list[tuple[int, float]] = []  # (thread, gap)
        self.stall = stall

    def on_tick(self, now: float, gap: float) -> None:
        self.ticks.append((threading.get_ident(), gap))
        if self.stall:
            stall, self.stall = self.stall, 0.0
            time.sleep(stall)  # the watch's thread held up, as in a frozen process


def test_one_thread_ticks_every_subscriber_and_stops_when_none_is_left() -> None:
    watch = PauseWatch()
    first, second = Recorder(), Recorder()
    watch.subscribe(first)
    watch.subscribe(second)
    wait_for(lambda: len(first.ticks) >= 3 and len(second.ticks) >= 3, 5.0)
    threads = {t for t, _gap in first.ticks + second.ticks}
    assert len(threads) == 1
    watch.unsubscribe(first)
    watch.unsubscribe(second)
    wait_for(lambda: watch._thread is None, 5.0, message="the watch's thread ends")
    counted = len(first.ticks)
    time.sleep(TICK * 4)  # nothing to wait for: no tick may come
    assert len(first.ticks) == counted


def test_a_stall_shows_as_one_long_gap_to_every_subscriber() -> None:
    watch = PauseWatch()
    stalling, other = Recorder(stall=0.5), Recorder()
    watch.subscribe(stalling)
    watch.subscribe(other)
    try:
        wait_for(lambda: any(gap >= 0.5 for _t, gap in other.ticks), 5.0,
                 message="the stall seen by the other subscriber")
        assert any(gap >= 0.5 for _t, gap in stalling.ticks)
        # Ordinary ticks stay far below a session's half timeout.
        assert sorted(gap for _t, gap in other.ticks)[0] < 0.5
    finally:
        watch.unsubscribe(stalling)
        watch.unsubscribe(other)


def test_a_failing_subscriber_does_not_stop_the_ticks_of_the_others() -> None:
    class Failing:
        def on_tick(self, now: float, gap: float) -> None:
            raise RuntimeError("bug")

    watch = PauseWatch()
    failing, other = Failing(), Recorder()
    watch.subscribe(failing)
    watch.subscribe(other)
    try:
        wait_for(lambda: len(other.ticks) >= 3, 5.0, message="ticks despite the failing one")
    finally:
        watch.unsubscribe(failing)
        watch.unsubscribe(other)


def test_many_zookeeper_clients_share_one_watch_thread(
    backend: str, connect: Callable[..., coordination.Coordinator],
) -> None:
    if backend != "zookeeper":
        pytest.skip("etcd clients keep their leases from their keepalive threads")
    coords = [connect() for _ in range(8)]
    # (a watch thread that had just found no subscriber may still be ending)
    wait_for(lambda: sum(t.name == "coordination-pause-watch" for t in threading.enumerate()) == 1,
             5.0, message="one watch thread")
    for coord in coords:  # still alive: the watch keeps their watchdogs fed
        lock = coord.lock("pause-watch")
        assert lock.acquire(timeout=10)
        lock.release()


def test_a_session_frozen_before_the_first_tick_is_not_alive(
    backend: str, connect: Callable[..., coordination.Coordinator],
) -> None:
    """A process frozen right after connecting, before the watch's first tick for the
    new session: on waking, the session must not read as alive (it was None, found by
    the election chaos test under load)."""
    if backend != "zookeeper":
        pytest.skip("etcd leases carry their own local deadline")
    from coordination.backends.pause_watch import PAUSE_WATCH

    frozen, thaw = threading.Event(), threading.Event()

    class Freezer:  # holds up the watch's thread: no tick reaches any session
        def on_tick(self, now: float, gap: float) -> None:
            frozen.set()
            thaw.wait(30)

    freezer = Freezer()
    PAUSE_WATCH.subscribe(freezer)
    try:
        assert frozen.wait(5)
        coord = connect(session_ttl=2)
        lock = coord.lock("frozen-at-birth")
        assert lock.acquire(timeout=10)
        ttl = coord.driver.session_ttl
        wait_for(lambda: not lock.held, ttl, message="the unfed session to read as lost")
    finally:
        thaw.set()
        PAUSE_WATCH.unsubscribe(freezer)
