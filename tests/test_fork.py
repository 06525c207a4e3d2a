"""A coordinator used in a forked child (gunicorn pre-fork, ``multiprocessing`` with the
fork start method): the child opens a session of its own at first use and never hangs;
the parent's holds and claims stay the parent's, and the parent works on afterwards."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest

import coordination
from coordination import errors

pytestmark = pytest.mark.integration

FORK = multiprocessing.get_context("fork")
#: A child that has not finished by then hung (what this test is about).
CHILD_LIMIT = 60.0


def _child(coord: coordination.Coordinator, lock: coordination.Lock, task: coordination.Task,
           results: Any) -> None:
    """Runs in the forked child: report what it saw, one (name, value) pair each."""
    try:
        results.put(("parent lock held here", lock.held))
        try:
            task.ack()
            results.put(("ack of the parent's claim", "ok"))
        except errors.ClaimLost:
            results.put(("ack of the parent's claim", "ClaimLost"))
        results.put(("parent lock free for the child", coord.lock("L").acquire(timeout=0.3)))
        other = coord.lock("child-only")
        with other:
            results.put(("child lock token", other.token))
        got = coord.queue("q").get(timeout=10)
        results.put(("child got", None if got is None else got.data))
        if got is not None:
            got.ack()
        results.put(("child counter", coord.counter("n").add(1)))
        results.put(("child session", coord.driver.session().id))
        coord.close()
        results.put(("done", os.getpid()))
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def test_forked_child_opens_its_own_session_and_the_parent_keeps_its_own(
        connect, backend: str) -> None:
    coord = connect()
    lock = coord.lock("L")
    assert lock.acquire(timeout=5)
    q = coord.queue("q")
    q.put(b"for the parent")
    task = q.get(timeout=5)
    assert task is not None
    q.put(b"for the child")
    parent_session = coord.driver.session().id
    results = FORK.Queue()
    child = FORK.Process(target=_child, args=(coord, lock, task, results))
    child.start()
    child.join(CHILD_LIMIT)
    hung = child.is_alive()
    if hung:
        child.kill()
    seen = {}
    while not results.empty():
        name, value = results.get()
        seen[name] = value
    assert not hung, f"the child hung; it reported {seen}"
    assert child.exitcode == 0 and "error" not in seen, seen
    assert seen["parent lock held here"] is False
    assert seen["ack of the parent's claim"] == "ClaimLost"
    assert seen["parent lock free for the child"] is False  # the parent still holds it
    assert seen["child got"] == b"for the child"
    assert seen["child counter"] == 1
    assert seen["child session"] != parent_session
    # The parent goes on in its own session: its hold and its claim are intact.
    assert coord.driver.session().id == parent_session
    assert lock.held
    lock.ensure_held()
    task.ack()
    lock.release()
    assert coord.counter("n").add(1) == 2
    assert coord.lock("L").acquire(timeout=5)
    assert q.stats() == {"pending": 0, "delayed": 0, "blocked": 0, "in_flight": 0, "dead": 0}


#: The parent's coordinator, inherited by the pool's forked workers (not pickled).
_inherited: coordination.Coordinator | None = None


def _add(times: int) -> int:
    assert _inherited is not None
    stock = _inherited.counter("stock")
    for _ in range(times):
        stock.add(-1, min=0)
    return os.getpid()


def test_pool_of_forked_workers_shares_one_parent_coordinator(connect) -> None:
    """A ``multiprocessing`` pool (fork) whose workers use the parent's coordinator."""
    global _inherited
    coord = _inherited = connect()
    stock = coord.counter("stock")
    stock.set(60)
    with FORK.Pool(3) as pool:
        outcome = pool.map_async(_add, [10] * 6)
        pids = outcome.get(CHILD_LIMIT)
    assert len(set(pids)) >= 2
    assert stock.value == 0
