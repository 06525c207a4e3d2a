"""Removals of contender entries that failed while the servers could not be reached.

A failed or timed-out acquire must never leave an entry that would block everyone
behind it while its session lives: its removal is remembered here and retried when the
connection is back, and about once a second in the background (a connection that stays
up while requests fail brings no reconnect to trigger a retry).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .contenders import Contender

log = logging.getLogger(__name__)
#: Seconds between background retries of removals that failed.
RETRY_EVERY = 1.0


class PendingRemovals:
    """Entries to remove later with ``remove(entry)``, which re-adds what fails again."""

    def __init__(self, remove: Callable[[Contender], object]) -> None:
        self._remove = remove
        self._pending: list[Contender] = []
        self._guard = threading.Lock()
        self._next_retry = 0.0

    def add(self, entry: Contender) -> None:
        log.warning("could not remove %s now; will retry", entry.key)
        with self._guard:
            self._pending.append(entry)

    def forget(self, key: str) -> None:
        """Entry ``key`` is in use again (etcd reuses ``PREFIX/LEASE``): never let a
        pending removal of its earlier use delete it."""
        with self._guard:
            self._pending = [entry for entry in self._pending if entry.key != key]

    def retry(self) -> None:
        """Try every pending removal now, in this thread."""
        with self._guard:
            pending, self._pending = self._pending, []
        for entry in pending:
            self._remove(entry)

    def retry_soon(self) -> None:
        """Try them in a thread of their own (the caller's thread must not block)."""
        threading.Thread(target=self.retry, daemon=True, name="coordination-orphan-sweep").start()

    def retry_if_due(self) -> None:
        """``retry_soon`` about once every ``RETRY_EVERY`` seconds while any is pending."""
        now = time.monotonic()
        if self._pending and now >= self._next_retry:
            self._next_retry = now + RETRY_EVERY
            self.retry_soon()

    def disown(self) -> None:
        """In a forked child: the pending removals are the parent's."""
        self._guard = threading.Lock()
        self._pending = []
