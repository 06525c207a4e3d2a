"""Leader election: the lock's contender queue, with the candidate's value in its entry.

Candidates enqueue in arrival order; the first entry leads (the mutex rule), so when the
leader resigns or loses its session the next candidate in order takes over, and a
candidate watches only the one before it. ``leader()`` reads the value of the first
entry; an observer watches only the first entry (or the queue while it is empty).

The layout is the plain lock's, which is also that of kazoo's ``Election`` (nodes
``UUID__lock__SEQ`` holding the value) and of etcd's Go ``concurrency.Election`` /
``etcdctl elect`` (keys ``PREFIX/LEASE_HEX`` holding the value): with
``raw_prefix=True`` they see each other's candidates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..backends.base import Backend
from ..backends.contenders import Head
from ..errors import (
    AlreadyHeld,
    ClientClosed,
    CoordinationError,
    InvalidArgument,
    LockLost,
    NotHeld,
)
from ..names import validate_name, validate_raw_path
from ..payload import encode_payload
from ..session import Session
from .lock import Lock, check_timeout

log = logging.getLogger(__name__)

#: A candidate's value is small: it is read by every observer on every change.
MAX_VALUE = 64 * 1024
Callback = Callable[[bytes | None], None]


class Candidacy(Lock):
    """A candidate's entry in an election: the lock of the election's name, holding
    the candidate's value; its hold is the leadership."""

    _recipe = "elections"
    _what = "election"


class Observer:
    """Calls ``callback(value)`` from a background thread: once with the current
    leader's value (None if there is none), then with the leader's value as read right
    after every change of leader (None when the last candidate left). It reports the
    current leader, not a backlog: a reign shorter than that read may be skipped, and
    the final leader after any churn or compaction is reported within a few round
    trips. Errors of the server or the watch are retried, never the end of it.
    ``stop()`` ends it; it also ends when the coordinator is closed."""

    def __init__(self, backend: Backend, path: str, callback: Callback) -> None:
        self._backend = backend
        self._path = path
        self._callback = callback
        self._stopped = threading.Event()
        self._wake = threading.Event()  # set by the watch, and by stop()
        self._wait = min(2.0, backend.session_ttl)
        self._thread = threading.Thread(
            target=self._run, name="coordination-election-observer", daemon=True)
        self._thread.start()
        backend.add_companion(self)

    def stop(self, timeout: float | None = None) -> None:
        """Stop observing (no call starts after this returns, unless called from the
        callback itself); wait up to ``timeout`` seconds for the thread to end."""
        self._stopped.set()
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(self._wait + 1.0 if timeout is None else timeout)

    def _run(self) -> None:
        head: Head | None = None
        while True:
            self._wake.clear()  # before the check: a stop() from now on is seen
            if self._stopped.is_set():
                return
            try:
                if head is None:  # the first read
                    following: Head | None = self._backend.head(self._path)
                else:  # the head after the next change from the one we reported
                    following = self._backend.next_head(self._path, head, self._wait, self._wake)
            except ClientClosed:
                return
            except Exception as exc:  # nothing a watch raises may end the observer
                if isinstance(exc, CoordinationError):
                    log.debug("election observer: %s", exc)
                else:
                    log.exception("election observer: unexpected error; observing on")
                self._stopped.wait(0.1)
                continue
            if following is None:
                continue
            if (head is None or not following.same_entry(head)) and not self._stopped.is_set():
                self._report(following)
            head = following

    def _report(self, head: Head) -> None:
        try:
            self._callback(None if head.key is None else head.value)
        except Exception:  # a user callback must not end the observer
            log.exception("election observer callback %r failed", self._callback)


class Election:
    """A named election; the same name is the same election in every process."""

    def __init__(self, backend: Backend, name: str, *, raw_prefix: bool = False) -> None:
        if raw_prefix:
            self._path = backend.raw_path(validate_raw_path(name))
        else:
            self._path = backend.recipe_path("elections", validate_name(name, "election name"))
        self.name = name
        self._raw = raw_prefix
        self._backend = backend
        self._guard = threading.Lock()
        self._candidacy: Candidacy | None = None
        self._campaigning = False
        self._token: int | None = None

    def __repr__(self) -> str:
        return f"<Election {self.name!r} {'leader' if self.is_leader else 'not leader'}>"

    @property
    def path(self) -> str:
        """The server path (ZooKeeper) or key prefix (etcd) of this election."""
        return self._path

    @property
    def is_leader(self) -> bool:
        """True while we lead; False as soon as our session is known lost."""
        candidacy = self._candidacy
        return candidacy is not None and candidacy.held

    @property
    def token(self) -> int | None:
        """The fencing token of our current (or last) leadership: it grows with every
        new leadership of the election, whichever candidate holds it."""
        return self._token

    @property
    def session(self) -> Session | None:
        """The session generation of our candidacy (None if not campaigning)."""
        candidacy = self._candidacy
        return None if candidacy is None else candidacy.session

    def campaign(self, value: bytes | str, timeout: float | None = None) -> bool:
        """Stand as a candidate with ``value`` and wait until we lead (True) or
        ``timeout`` seconds pass (False, and our candidacy is withdrawn). Raises
        ``AlreadyHeld`` while this object leads or campaigns."""
        data = encode_payload(value, MAX_VALUE, "a candidate value")
        timeout = check_timeout(timeout)
        with self._guard:
            if self._campaigning or (self._candidacy is not None and self._candidacy.held):
                raise AlreadyHeld(f"already campaigning or leading election {self.name!r}")
            self._campaigning = True
            self._candidacy = None  # a leadership lost with its session, never resigned
        won = False
        try:
            candidacy = self.candidacy(data)
            won = candidacy.acquire(timeout=timeout)
        finally:
            with self._guard:
                self._campaigning = False
                if won:
                    self._candidacy = candidacy
                    self._token = candidacy.token
        return won

    def candidacy(self, value: bytes | str) -> Candidacy:
        """A new candidacy with ``value``, not campaigning yet (``campaign`` does that;
        ``coordination.aio`` drives it on an event loop)."""
        data = encode_payload(value, MAX_VALUE, "a candidate value")
        return Candidacy(self._backend, self.name, raw_prefix=self._raw, identifier=data)

    def resign(self) -> None:
        """Stop leading (the next candidate in order takes over). No-op if not leading,
        including while a ``campaign()`` has not returned yet (use its ``timeout``)."""
        with self._guard:
            candidacy, self._candidacy = self._candidacy, None
        if candidacy is not None:
            try:
                candidacy.release()
            except (LockLost, NotHeld):
                pass  # the leadership had ended already

    def leader(self) -> bytes | None:
        """The current leader's value, or None if there is no candidate (linearizable)."""
        head = self._backend.head(self._path)
        return None if head.key is None else head.value

    def observe(self, callback: Callback) -> Observer:
        """Call ``callback(value)`` on every leader change (see :class:`Observer`)."""
        if not callable(callback):
            raise InvalidArgument("callback must be callable")
        self._backend.check_open()
        return Observer(self._backend, self._path, callback)
