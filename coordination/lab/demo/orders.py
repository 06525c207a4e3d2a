"""Each order's state machine (:mod:`coordination.recipes.statemachine`): an order
worker moves the order's record one step per queue task, ``created`` (the record is
made) then ``paid`` then ``shipped``, each from the state before it only
(:data:`~.settings.ORDER_TRANSITIONS`). A step delivered again after a worker died finds
the record past it: the record refuses the move (``Conflict``) and the step counts as
repeated, not done twice. At the end :func:`audit` reads every record back: its history
must be exactly ``created, paid, shipped``.
"""

from __future__ import annotations

from collections.abc import Iterable

import coordination
from coordination.errors import Conflict

from .settings import ORDER_TRANSITIONS, record_name
from .store import STEPS


def record(coord: coordination.Coordinator, run: str, order_id: str) -> coordination.StateRecord:
    return coord.record(record_name(run, order_id), ORDER_TRANSITIONS)


def advance(order: coordination.StateRecord, step: str, data: object = None) -> bool:
    """Move ``order`` to ``step`` from the step before it (``created``: make it). True
    if this call moved it; False if it was there or past it already (a repeat).
    ``Conflict`` if it is not even at the step before (the queue tries again later)."""
    try:
        if step == STEPS[0]:
            order.create(step, data)
        else:
            order.transition(step, expect=STEPS[STEPS.index(step) - 1])
        return True
    except Conflict:
        state = order.state
        if state in STEPS and STEPS.index(state) >= STEPS.index(step):
            return False
        raise


def audit(coord: coordination.Coordinator, run: str, order_ids: Iterable[str]) -> dict[str, object]:
    """Read every order's record back: how many walked exactly ``created, paid,
    shipped`` (``walked``) and a line for each that did not (``bad``)."""
    walked, bad = 0, []
    for order_id in order_ids:
        snapshot = record(coord, run, order_id).get()
        path = [] if snapshot is None else [state for state, _at in reversed(snapshot.history)]
        if path == list(STEPS):
            walked += 1
        else:
            bad.append(f"{order_id}: {' -> '.join(path) or 'no record'}")
    return {"walked": walked, "bad": bad}
