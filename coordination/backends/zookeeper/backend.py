"""ZooKeeper backend (kazoo): contenders as ephemeral sequential znodes.

Layout: recipe ``kind``/``name`` lives at ``/NAMESPACE/KIND/NAME``; its contenders are
named as kazoo's and Curator's locks name theirs (``layout.py``). Sessions, retries and
errors: ``connection.py``; the key-value store: ``kv.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from kazoo.exceptions import NoNodeError

from ...config import Config
from ...errors import ClientClosed, CoordinationError, PermissionDenied, SessionLost
from ...session import Session, Waker
from ..base import Backend
from ..contenders import MUTEX, Blocker, Contender, Head, Listed, Rule
from ..watching import Watching
from . import layout, security
from .connection import Connection, NodeMissing
from .kv import ZooKeeperKV

_RETRY_WATCH = 0.1  # seconds before a look again when a watch could not be armed


class ZooKeeperBackend(Backend):
    name = "zookeeper"
    node_styles = tuple(layout.NODE_STYLES)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.connection = Connection(self)
        self.kv = ZooKeeperKV(self.connection, f"/{config.namespace}")

    @property
    def client(self) -> Any:
        """The current kazoo client (for tests and tools)."""
        return self.connection.client

    # --- sessions and lifecycle ----------------------------------------------------------

    def session(self) -> Session:
        return self.connection.session()

    @property
    def session_ttl(self) -> float:
        return self.connection.session_ttl

    def _disown_parent(self) -> None:
        self.connection.disown()

    def _reconnect_in_child(self) -> None:
        self.connection.reconnect_in_child()

    def close(self) -> None:
        if not self.closed:
            self.stop_companions()
        self.connection.close()

    def describe(self) -> dict[str, Any]:
        return self.connection.describe()

    def _call(self, session: Session | None, fn: str | Callable[..., Any], *args: Any,
              **kw: Any) -> Any:
        return self.connection.call(session, fn, *args, **kw)

    # --- paths -------------------------------------------------------------------------

    def recipe_path(self, kind: str, name: str) -> str:
        return self.kv.root(kind, name)

    def raw_path(self, path: str) -> str:
        return path if path.startswith("/") else "/" + path

    def names(self, kind: str, parts: frozenset[str] = frozenset()) -> list[str]:
        """Names nest here (``a`` and ``a/b``): a lock or election is a znode that holds
        contenders or held them (lock znodes stay, as their sequence counter is the token
        source); a key-value recipe is a znode holding one of its ``parts``."""
        found: list[str] = []
        self._find_names(self.recipe_path(kind, "").rstrip("/"), "", parts, found)
        return found

    def _find_names(self, path: str, name: str, parts: frozenset[str], found: list[str]) -> None:
        try:
            children = self._call(None, "get_children", path)
        except NodeMissing:
            return
        if parts:
            below = [child for child in children if child not in parts]
            is_one = len(below) < len(children)
        else:
            below = [child for child in children if not layout.is_contender(child)]
            is_one = len(below) < len(children) or not children
        if name and is_one:
            found.append(name)
        for child in below:
            self._find_names(f"{path}/{child}", f"{name}/{child}" if name else child, parts, found)

    # --- the ordered contender queue ---------------------------------------------------

    def enqueue(self, path: str, data: bytes, kind: str | None = None, rule: Rule = MUTEX,
                *, style: str | None = None, timeout: float | None = None
                ) -> tuple[Contender, list[Blocker] | None]:
        session = self.session()
        prefix = layout.node_prefix(kind, style or "kazoo", uuid.uuid4().hex)
        tried = False

        def create_once() -> tuple[str, int, list[str] | None]:
            # A create whose reply was lost may have happened: look for our prefix
            # before creating again, and adopt only a node of our own session.
            nonlocal tried
            if tried:
                found = self._find_own(path, prefix, session)
                if found:
                    return (*found, None)
            tried = True
            # Pipelined: one session's requests are served in order, so the listing sent
            # right behind the create sees our node (one round trip, not two).
            created = self.client.create_async(
                f"{path}/{prefix}", data, ephemeral=True, sequence=True, makepath=True,
                include_data=True,
            )
            listed = self.client.get_children_async(path)
            node, stat = created.get()
            try:
                children = listed.get()
            except NoNodeError:  # the parent was made after the listing: ask again later
                children = None
            return node, stat.ephemeralOwner, children

        try:
            node, owner, children = self._call(session, create_once)
        except PermissionDenied:
            raise security.denied("creating a contender node", path, self.config) from None
        except CoordinationError as exc:
            if tried and not isinstance(exc, SessionLost | ClientClosed):
                # The create may have applied, and its node would block everyone behind
                # it while our session lives: remove it, found by our prefix, now or once
                # the servers answer again.
                self.withdraw(Contender(path, f"{path}/{prefix}", layout.UNKNOWN, session))
            raise
        if owner != session.id:  # created in a newer session than we meant: undo it
            try:
                self._call(None, "delete", node)
            except NodeMissing:
                pass
            raise SessionLost("ZooKeeper session changed while enqueuing")
        me = Contender(path, node, layout.sequence(node), session)
        if children is None or node.rsplit("/", 1)[1] not in children:
            return me, None
        return me, rule.blocking(layout.nearest_counted(me, children, rule))

    def _find_own(self, path: str, prefix: str, session: Session) -> tuple[str, int] | None:
        """Our node named ``prefix...`` under ``path``, if the session made one; run
        within ``call``."""
        try:
            children = self.client.get_children(path)
        except NoNodeError:
            return None
        for child in children:
            if child.startswith(prefix):
                stat = self.client.exists(f"{path}/{child}")
                if stat is not None and stat.ephemeralOwner == session.id:
                    return f"{path}/{child}", stat.ephemeralOwner
        return None

    def blockers(self, me: Contender, rule: Rule) -> list[Blocker]:
        # Every contender before ours was created before ours; the server we read from
        # has applied our create, hence all of those: the read cannot miss one.
        try:
            children = self._call(me.session, "get_children", me.path)
        except NodeMissing:
            raise SessionLost(f"the lock node {me.path} is gone") from None
        if me.key.rsplit("/", 1)[1] not in children:
            raise SessionLost(f"our contender node {me.key} is gone")
        return rule.blocking(layout.nearest_counted(me, children, rule))

    def watch_deleted(self, blockers: Sequence[Blocker], me: Contender, woken: Waker) -> Watching:
        me.session.add_waker(woken)
        try:
            gone = not all(self._watch_entry(blocker.key, lambda _event: woken.set(), me.session)
                           for blocker in blockers)
        except BaseException:
            me.session.remove_waker(woken)
            raise
        if gone:
            me.session.remove_waker(woken)
            return Watching(gone=True)
        return Watching(False, None, lambda: me.session.remove_waker(woken))

    def head(self, path: str) -> Head:
        self._call(None, "sync", path)
        while True:
            try:
                ordered = layout.in_order(self._call(None, "get_children", path))
            except NodeMissing:
                return Head(None)
            for token, child in ordered:
                try:
                    data, _stat = self._call(None, "get", f"{path}/{child}")
                except NodeMissing:
                    continue  # gone since the listing: the next one may lead now
                return Head(f"{path}/{child}", data, token)
            if not ordered:
                return Head(None)

    def _watch_entry(self, key: str, wake: Callable[[Any], None],
                     session: Session | None = None) -> bool:
        """Watch the entry ``key`` for its deletion; False (and no watch) if it is gone.
        A read, not ``exists``: ``exists`` on a missing node leaves a watch for its
        creation, which for a contender entry never comes (Curator reads for this)."""
        try:
            self._call(session, "get", key, watch=wake)
        except NodeMissing:
            return False
        return True

    def watch_head(self, path: str, seen: Head, woken: Waker) -> Watching:
        def wake(_event: Any) -> None:
            woken.set()

        try:
            if seen.key is not None:
                if not self._watch_entry(seen.key, wake):
                    return Watching(gone=True)
            else:
                try:
                    children = self._call(None, "get_children", path, watch=wake)
                except NodeMissing:
                    if self._call(None, "exists", path, watch=wake) is not None:
                        return Watching(gone=True)
                    children = []
                if any(layout.is_contender(child) for child in children):
                    return Watching(gone=True)
        except CoordinationError:
            return Watching(False, _RETRY_WATCH)
        return Watching(False)  # ZooKeeper watches fire once and need no cancel

    def _delete_entry(self, me: Contender) -> bool:
        if me.token == layout.UNKNOWN:  # an enqueue that failed: its node, if it was created
            prefix = me.key.rsplit("/", 1)[1]
            found = self._call(me.session, self._find_own, me.path, prefix, me.session)
            if found is None:
                return False
            me = Contender(me.path, found[0], layout.sequence(found[0]), me.session)
        # Names are unique (uuid + sequence): a retried delete cannot hit another node.
        try:
            self._call(me.session, "delete", me.key)
        except NodeMissing:
            return False
        return True

    def contenders(self, path: str) -> list[Listed]:
        try:
            ordered = layout.in_order(self._call(None, "get_children", path))
        except NodeMissing:
            return []
        result = []
        for token, child in ordered:
            try:
                data, stat = self._call(None, "get", f"{path}/{child}")
            except NodeMissing:
                continue
            result.append(Listed(f"{path}/{child}", data, stat.ephemeralOwner, token))
        return result
