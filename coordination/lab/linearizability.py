"""A linearizability checker for acquire/release histories against a mutex model.

A history is a list of operations ``(process, kind, invoke, complete, ok)`` with
``kind`` in ``acquire``/``release``; ``complete`` is None for an operation that never
returned (its effect may or may not have happened). The search (Wing & Gong, with
memoisation of (done set, holder)) tries to order the operations so that each one takes
effect between its invocation and completion and the mutex model accepts the order:
``acquire`` succeeds only when free, ``release`` only by the holder. Exponential in the
worst case: meant for small histories (tens of operations).
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Op:
    process: int
    kind: str  # "acquire" or "release"
    invoke: float
    complete: float | None  # None: never returned
    ok: bool = True


def _apply(holder: int | None, op: Op) -> tuple[bool, int | None]:
    if op.kind == "acquire":
        return (holder is None, op.process) if op.ok else (True, holder)
    return holder == op.process, None


def is_linearizable(history: list[Op]) -> bool:
    """True if some order of the operations explains the history (see module doc)."""
    ops = [op for op in history if op.ok or op.complete is None]
    ops.sort(key=lambda op: op.invoke)
    seen: set[tuple[frozenset[int], int | None]] = set()

    def search(done: frozenset[int], holder: int | None) -> bool:
        if len(done) == len(ops):
            return True
        if (done, holder) in seen:
            return False
        seen.add((done, holder))
        pending = [i for i in range(len(ops)) if i not in done]
        # Only an operation invoked before every pending completion can go next.
        horizon = min(math.inf if (c := ops[i].complete) is None else c for i in pending)
        for i in pending:
            op = ops[i]
            if op.invoke > horizon:
                break
            legal, new_holder = _apply(holder, op)
            if legal and search(done | {i}, new_holder):
                return True
            if op.complete is None and search(done | {i}, holder):
                return True  # a never-returned operation may not have happened at all
        return False

    return search(frozenset(), None)
