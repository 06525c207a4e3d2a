"""How contenders are named under a lock or election znode, ours and foreign ones.

A lock contender is ``UUID__lock__SEQUENCE``, the node naming of kazoo's ``Lock``, so
that both exclude each other (or Curator's ``_c_UUID-lock-SEQUENCE``, asked for by
``style="curator"``). The sequence number is the fencing token. A reader of a
read-write lock is ``UUID__rlock__SEQUENCE``, like kazoo's ``ReadLock``: readers wait
only for the nodes of the other names (writers), so kazoo's read-write locks interoperate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ...errors import CoordinationError
from ..contenders import Blocker, Contender, Rule

#: Node names of foreign lock contenders we honour: kazoo Lock/ReadLock (``__lock__``,
#: ``__rlock__``), Curator InterProcessMutex (``-lock-``) and its read/write lock.
CONTENDER_RE = re.compile(r"(?:__lock__|__rlock__|-lock-|__READ__|__WRIT__)(-?\d{10})$")
#: Shared (reader) contenders: kazoo ReadLock, Curator's read lock. All others exclude.
READER_RE = re.compile(r"(?:__rlock__|__READ__)-?\d{10}$")
NODE_STYLES = {"kazoo": "{uuid}__lock__", "curator": "_c_{uuid}-lock-"}
READER_NODE = "{uuid}__rlock__"
#: Token of a contender whose create may or may not have applied (name known up to the
#: sequence number).
UNKNOWN = -1


def is_contender(node: str) -> bool:
    return CONTENDER_RE.search(node) is not None


def node_prefix(kind: str | None, style: str, uuid: str) -> str:
    """The name of a new contender node, up to the sequence number the server adds."""
    return (READER_NODE if kind == "rlock" else NODE_STYLES[style]).format(uuid=uuid)


def sequence(node: str) -> int:
    """Sequence suffixes compare as integers, not strings."""
    match = CONTENDER_RE.search(node)
    if match is None:  # pragma: no cover - we named the node ourselves
        raise CoordinationError(f"unexpected contender node name {node!r}")
    return int(match.group(1))


def in_order(children: Iterable[str]) -> list[tuple[int, str]]:
    """The contender nodes among ``children`` with their tokens, first first."""
    return sorted((sequence(child), child) for child in children if is_contender(child))


def nearest_counted(me: Contender, children: Iterable[str], rule: Rule) -> list[Blocker]:
    """The nearest ``rule.permits`` contenders before ``me`` among ``children`` whose
    kind counts under ``rule``, nearest first."""
    before = [
        (token, child) for token, child in in_order(children)
        if token < me.token and (rule.kinds is None or _kind(child) in rule.kinds)
    ]
    before.reverse()
    return [Blocker(f"{me.path}/{child}") for _token, child in before[: rule.permits]]


def _kind(node: str) -> str:
    """``rlock`` for a shared (reader) contender node, else ``lock``."""
    return "rlock" if READER_RE.search(node) else "lock"
