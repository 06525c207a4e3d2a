"""One thread per process that notices when the process was frozen (GC, SIGSTOP, swap).

A freeze stops every client of the process at once, so one thread serves them all: it
ticks every ``TICK`` seconds and tells each subscriber how long it has been since the
last tick. (A thread per client cost 20 wake-ups a second each: with 32 clients in one
process, about a sixth of the lock throughput.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Protocol

log = logging.getLogger(__name__)

#: Seconds between ticks; a freeze shows as a gap well above it.
TICK = 0.05


class Ticked(Protocol):
    def on_tick(self, now: float, gap: float) -> None:
        """Called from the watch's thread: must return quickly and never block."""


class PauseWatch:
    """Calls ``on_tick(now, gap)`` of every subscriber every ``TICK`` seconds, ``gap``
    being the time since the previous tick. Subscribers are held weakly; the thread
    runs while there are any, and is gone when ``unsubscribe`` of the last returns."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        """Also in a forked child: the parent's thread, guard and subscribers are not
        the child's (its backends subscribe again when they reconnect)."""
        self._guard = threading.Lock()
        self._subscribers: weakref.WeakSet[Ticked] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()  # the current thread's

    def subscribe(self, subscriber: Ticked) -> None:
        with self._guard:
            self._subscribers.add(subscriber)
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="coordination-pause-watch",
                    daemon=True,
                )
                self._thread.start()

    def unsubscribe(self, subscriber: Ticked) -> None:
        with self._guard:
            self._subscribers.discard(subscriber)
            if self._subscribers or self._thread is None:
                return
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not threading.current_thread():
            thread.join()

    def _run(self, stop: threading.Event) -> None:
        last = time.monotonic()
        while not stop.wait(TICK):
            with self._guard:
                subscribers = list(self._subscribers)
                if not subscribers:  # all collected without unsubscribing
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
            now = time.monotonic()
            for subscriber in subscribers:
                try:
                    subscriber.on_tick(now, now - last)
                except Exception:  # one subscriber's bug must not starve the others
                    log.exception("pause watch subscriber %r failed", subscriber)
            last = now


#: The process's watch.
PAUSE_WATCH = PauseWatch()
