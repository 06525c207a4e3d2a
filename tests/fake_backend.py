"""An in-memory backend: the whole ``Backend`` interface in a page, for fast unit tests of
the recipes' own logic (FIFO hand-off, permits, the queue's state machine, what a lost
session does to a holder). Never proof that a backend works: that is what the tests on
real clusters are for. One process, one lock, one revision counter; sessions end only
when a test calls ``expire()``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from typing import Any

from coordination.backends.base import Backend
from coordination.backends.contenders import (
    MUTEX,
    Blocker,
    Contender,
    Head,
    Listed,
    Rule,
)
from coordination.backends.kv import (
    Absent,
    Check,
    Create,
    Delete,
    Entry,
    KeyValue,
    Op,
    Present,
    Version,
)
from coordination.backends.watching import Watching
from coordination.config import Config
from coordination.errors import SessionLost
from coordination.session import Session, SessionState, Waker


class FakeKV(KeyValue):
    """Keys in a dict; every commit is one revision, which is each written key's version."""

    def __init__(self, backend: FakeBackend) -> None:
        self._b = backend
        self.entries: dict[str, Entry] = {}

    def root(self, kind: str, name: str) -> str:
        return f"/{self._b.config.namespace}/{kind}/{name}"

    def get(self, key: str) -> Entry | None:
        self._b.check_open()
        return self.entries.get(key)

    def commit(self, checks: Sequence[Check], ops: Sequence[Op],
               session: Session | None = None) -> int | None:
        self._b.check_open()
        with self._b.changed:
            if session is not None:
                session.check()
            if not all(self._holds(check) for check in checks):
                return None
            if any(isinstance(op, Create) and op.key in self.entries for op in ops):
                return None  # as ZooKeeper's multi: a create of an existing key fails it all
            stamp = self._b.next_revision()
            for op in ops:
                if isinstance(op, Delete):
                    self.entries.pop(op.key, None)
                else:
                    owner = int(session.id) if op.ephemeral and session else 0
                    self.entries[op.key] = Entry(op.key, op.value, stamp, stamp, owner)
            self._b.changed.notify_all()
            return stamp

    def _holds(self, check: Check) -> bool:
        entry = self.entries.get(check.key)
        if isinstance(check, Absent):
            return entry is None
        if isinstance(check, Present):
            return entry is not None
        return entry is not None and isinstance(check, Version) and entry.version == check.version

    def written_version(self, stamp: int, before: Entry | None) -> int:
        return stamp

    def leaves(self, root: str, depth: int, limit: int) -> list[str]:
        self._b.check_open()
        return self._below(root, depth)[:limit]

    def counts(self, roots: Sequence[tuple[str, int]]) -> list[int]:
        with self._b.changed:
            return [len(self._below(root, depth)) for root, depth in roots]

    def _below(self, root: str, depth: int) -> list[str]:
        return sorted(key for key in self.entries
                      if key.startswith(root + "/") and key[len(root) + 1:].count("/") == depth - 1)

    def watch(self, key: str, seen: Entry | None, woken: Waker) -> Watching:
        changes = self._b.changed
        with changes:
            if self.entries.get(key) != seen or self._b.closed:
                return Watching(gone=True)
            changes.wakers.add(woken)

        def cancel() -> None:
            with changes:
                changes.wakers.discard(woken)

        return Watching(False, None, cancel)

    def expire(self, owner: int) -> None:
        for key in [key for key, entry in self.entries.items() if entry.owner == owner]:
            del self.entries[key]


class _Changes(threading.Condition):
    """The backend's condition; every change also sets the armed wakers."""

    def __init__(self) -> None:
        super().__init__()
        self.wakers: set[Waker] = set()

    def notify_all(self) -> None:
        super().notify_all()
        for waker in list(self.wakers):
            waker.set()


class FakeBackend(Backend):
    name = "fake"
    node_styles = ()

    def __init__(self, namespace: str = "t", ttl: float = 2.0) -> None:
        super().__init__(Config(backend="etcd", endpoints=("127.0.0.1:1",), namespace=namespace))
        self.changed = _Changes()
        self._revisions = itertools.count(1)
        self._ids = itertools.count(1)
        self._ttl = ttl
        self._session = Session(next(self._ids), ttl)
        self.queues: dict[str, list[tuple[int, str, bytes, Session, str]]] = {}  # path -> entries
        self.kv = FakeKV(self)

    def next_revision(self) -> int:
        return next(self._revisions)

    def session(self) -> Session:
        self.check_open()
        with self.changed:
            if not self._session.alive:
                self._session = Session(next(self._ids), self._ttl)
            return self._session

    @property
    def session_ttl(self) -> float:
        return self._ttl

    def expire(self) -> None:
        """The servers end the current session: its entries go, its holders hear LOST."""
        with self.changed:
            session = self._session
            for path, entries in self.queues.items():
                self.queues[path] = [e for e in entries if e[3] is not session]
            self.kv.expire(int(session.id))
            self.changed.notify_all()
        self.listeners.notify(session, SessionState.LOST)

    def close(self) -> None:
        self.expire()
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}

    def _disown_parent(self) -> None:
        raise NotImplementedError("the fake backend does not fork")

    def _reconnect_in_child(self) -> None:
        raise NotImplementedError("the fake backend does not fork")

    def recipe_path(self, kind: str, name: str) -> str:
        return self.kv.root(kind, name) + "/"

    def raw_path(self, path: str) -> str:
        return path + "/"

    def names(self, kind: str, parts: frozenset[str] = frozenset()) -> list[str]:
        root = self.recipe_path(kind, "")
        keys = [path for path, entries in self.queues.items() if entries] + list(self.kv.entries)
        return sorted({key[len(root):].split("/")[0] for key in keys if key.startswith(root)})

    def enqueue(self, path: str, data: bytes, kind: str | None = None, rule: Rule = MUTEX,
                *, style: str | None = None, timeout: float | None = None
                ) -> tuple[Contender, list[Blocker] | None]:
        session = self.session()
        with self.changed:
            token = self.next_revision()
            key = f"{path}{kind or 'lock'}-{token:010d}"
            self.queues.setdefault(path, []).append((token, key, data, session, kind or "lock"))
        return Contender(path, key, token, session), None

    def blockers(self, me: Contender, rule: Rule) -> list[Blocker]:
        with self.changed:
            entries = self.queues.get(me.path, [])
            if all(key != me.key for _t, key, *_rest in entries):
                raise SessionLost(f"our entry {me.key} is gone")
            before = [Blocker(key) for token, key, _d, _s, kind in reversed(entries)
                      if token < me.token and (rule.kinds is None or kind in rule.kinds)]
        return rule.blocking(before[: rule.permits])

    def watch_deleted(self, blockers: Sequence[Blocker], me: Contender, woken: Waker) -> Watching:
        with self.changed:
            keys = {key for _t, key, *_rest in self.queues.get(me.path, [])}
            if not me.session.alive or any(b.key not in keys for b in blockers):
                return Watching(gone=True)
            self.changed.wakers.add(woken)
        me.session.add_waker(woken)

        def cancel() -> None:
            me.session.remove_waker(woken)
            with self.changed:
                self.changed.wakers.discard(woken)

        return Watching(False, None, cancel)

    def head(self, path: str) -> Head:
        with self.changed:
            entries = self.queues.get(path, [])
            if not entries:
                return Head(None)
            token, key, data, _session, _kind = entries[0]
            return Head(key, data, token)

    def watch_head(self, path: str, seen: Head, woken: Waker) -> Watching:
        with self.changed:
            if not self.head(path).same_entry(seen) or self.closed:
                return Watching(gone=True)
            self.changed.wakers.add(woken)

        def cancel() -> None:
            with self.changed:
                self.changed.wakers.discard(woken)

        return Watching(False, None, cancel)

    def contenders(self, path: str) -> list[Listed]:
        with self.changed:
            return [Listed(key, data, int(session.id), token)
                    for token, key, data, session, _kind in self.queues.get(path, [])]

    def _delete_entry(self, me: Contender) -> bool:
        with self.changed:
            entries = self.queues.get(me.path, [])
            kept = [entry for entry in entries if entry[1] != me.key]
            self.queues[me.path] = kept
            self.changed.notify_all()
            return len(kept) < len(entries)
