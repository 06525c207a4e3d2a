"""Checkers over recorded histories. Each returns a list of violations (strings); an
empty list means the invariant held. They are written to be able to fail: see the
negative control in ``tests/chaos`` and the unit tests in ``tests/test_checkers.py``."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import combinations
from pathlib import Path
from typing import Any

Event = dict[str, Any]


def load(paths: Iterable[Path]) -> list[Event]:
    """All events of the given JSONL files (a torn last line of a killed worker is skipped)."""
    events = []
    for path in paths:
        if not Path(path).exists():
            continue
        for line in Path(path).read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def check_fenced_writes(writes: list[tuple[int, int, int, bool]], initial: int) -> list[str]:
    """The resource's view: applied writes have strictly increasing tokens, and each
    applied write took exactly one unit off the stock (no lost update, no oversell)."""
    problems = []
    last_token, expected = None, initial
    for pid, token, qty, applied in writes:
        if not applied:
            continue
        if last_token is not None and token <= last_token:
            problems.append(f"stale write applied: token {token} after {last_token} (pid {pid})")
        if qty != expected - 1:
            problems.append(f"lost update: stock set to {qty}, expected {expected - 1} (pid {pid})")
        if qty < 0:
            problems.append(f"stock below zero: {qty}")
        last_token, expected = token, qty
    return problems


def holds(events: list[Event]) -> list[tuple[float, float, int, int, str]]:
    """``(start, end, token, pid, release_result)`` of every hold that was released."""
    open_holds: dict[int, Event] = {}
    result = []
    for event in events:
        if event["op"] == "acquire" and event.get("ok"):
            open_holds[event["pid"]] = event
        elif event["op"] == "release" and event["pid"] in open_holds:
            start = open_holds.pop(event["pid"])
            result.append((start["t1"], event["t0"], start["token"], event["pid"], event["result"]))
    return result


def check_lock_holds(events: list[Event]) -> list[str]:
    """Holds not reported lost never overlap, and their tokens grow in time order."""
    problems = []
    safe = sorted(h for h in holds(events) if h[4] == "ok")
    for (start, end, token, pid, _r), (nstart, _e, ntoken, npid, _r2) in zip(safe, safe[1:]):
        if nstart < end:
            problems.append(f"overlap: pid {pid} [{start:.3f},{end:.3f}] token {token} and "
                            f"pid {npid} from {nstart:.3f} token {ntoken}")
        if ntoken <= token:
            problems.append(f"token did not grow: {token} then {ntoken}")
    return problems


def check_errors_typed(events: list[Event]) -> list[str]:
    """Every failure seen by a worker was a typed ``coordination.errors`` error."""
    from .. import errors

    known = {name for name in dir(errors) if isinstance(getattr(errors, name), type)}
    return [f"untyped error {e['error']!r} in {e['op']}" for e in events
            if e.get("error") and e["error"] not in known]


def check_queue(events: list[Event], stats: dict[str, int], dead: set[str]) -> list[str]:
    """Jepsen's total queue, stricter: every acknowledged put is acked or dead; nothing
    unexpected is delivered; no task is acked twice; per-key order; nothing in flight."""
    problems = []
    put_ok = {e["id"] for e in events if e["op"] == "put" and e.get("ok")}
    put_any = {e["id"] for e in events if e["op"] == "put"}
    seq = {e["id"]: (e["key"], e["seq"]) for e in events if e["op"] == "put"}
    claims = [e for e in events if e["op"] == "claim"]
    acked: dict[str, int] = defaultdict(int)
    for event in events:
        if event["op"] == "ack" and event.get("ok"):
            acked[event["id"]] += 1
    for task_id in sorted(put_ok - set(acked) - dead):
        if not any(c["id"] == task_id for c in claims):
            problems.append(f"lost: task {task_id} was put but never delivered")
    for task_id, count in acked.items():
        if count > 1:
            problems.append(f"acked twice: task {task_id} ({count} times)")
    unexpected = {c["id"] for c in claims} - put_any
    problems += [f"unexpected delivery: {task_id}" for task_id in sorted(unexpected)]
    first_claims: dict[str, list[int]] = defaultdict(list)
    for claim in sorted(claims, key=lambda c: c["token"]):
        key, number = seq.get(claim["id"], (None, None))
        if key is not None and number not in first_claims[key]:
            first_claims[key].append(number)
    for key, numbers in first_claims.items():
        if numbers != sorted(numbers):
            problems.append(f"key {key} delivered out of order: {numbers}")
    if stats.get("in_flight") or stats.get("pending") or stats.get("delayed"):
        problems.append(f"not drained: {stats}")
    return problems


def queue_claims(events: list[Event]) -> list[Event]:
    """Every ``claim`` event, with its settle (the ``ack``/``nack`` of the same task that
    the same worker thread recorded next) under ``"settle"``, or None: the worker was
    killed before settling, or stopped first."""
    result: list[Event] = []
    # By thread and task: a thread of a batching worker holds several claims at once.
    open_claims: dict[tuple[int, int, str], Event] = {}
    for event in events:
        if event["op"] not in ("claim", "ack", "nack"):
            continue
        held = (event.get("pid", 0), event.get("tid", 0), event["id"])
        if event["op"] == "claim":
            claim = {**event, "settle": None}
            open_claims[held] = claim
            result.append(claim)
        else:
            opened = open_claims.pop(held, None)
            if opened is not None:
                opened["settle"] = event
    return result


def _who(claim: Event) -> str:
    return f"pid {claim.get('pid')} thread {claim.get('tid', 0)}"


def check_exclusive_delivery(events: list[Event]) -> list[str]:
    """Two claims of one task never overlap in time unless the earlier one was lost.

    A claim runs from its ``get``'s return (``t1``) to the start of its settle (``t0``).
    Claims are ordered by token, the stamp of the claim's commit: if the earlier one's
    settle succeeded, the server checked that it was still the task's claim when the
    settle committed, so a later claim whose ``get`` returned before that settle began
    was handed out while the earlier one held. An earlier claim that was not settled
    (worker killed) or whose settle failed (``ClaimLost`` after a session loss, a pause,
    ``UncertainOutcome``, the servers unreachable) may have been lost: it excuses the
    overlap. One claim token delivered to two ``get`` calls is a violation whatever
    became of them: the same claim in two hands (issue 14)."""
    problems = []
    by_task: dict[str, list[Event]] = defaultdict(list)
    for claim in queue_claims(events):
        if "t1" in claim:
            by_task[claim["id"]].append(claim)
    for task_id, claims in sorted(by_task.items()):
        claims.sort(key=lambda c: (c["token"], c["t1"]))
        for first, later in combinations(claims, 2):
            if first["token"] == later["token"]:
                problems.append(f"task {task_id}: claim token {first['token']} delivered twice, "
                                f"to {_who(first)} at {first['t1']:.3f} and to {_who(later)} "
                                f"at {later['t1']:.3f}")
                continue
            settle = first["settle"]
            if settle is None or not settle.get("ok"):
                continue
            if later["t1"] < settle["t0"]:
                problems.append(
                    f"task {task_id}: {_who(later)} got it (token {later['token']}) at "
                    f"{later['t1']:.3f} while {_who(first)} held it (token {first['token']}) "
                    f"from {first['t1']:.3f} until its {settle['op']} at {settle['t0']:.3f}")
    return problems


def check_observers(events: list[Event], since: float, pids: Iterable[int]) -> list[str]:
    """Election observers keep reporting: while leaders go on changing after the faults,
    the observer of each worker in ``pids`` reported a change after ``since`` (one that
    went silent, e.g. on a watch from a compacted revision, does not)."""
    last: dict[int, float] = {}
    for event in events:
        if event["op"] == "observed":
            last[event["pid"]] = max(event["t"], last.get(event["pid"], event["t"]))
    problems = []
    for pid in pids:
        if pid not in last:
            problems.append(f"the observer of pid {pid} reported nothing")
        elif last[pid] < since:
            problems.append(f"the observer of pid {pid} went silent at {last[pid]:.3f}, before "
                            f"the faults ended at {since:.3f}, while leaders went on changing")
    return problems


def check_inventory(initial: int, final: int | None, sales: int) -> list[str]:
    """Stock never below zero and equal to the initial stock minus accepted sales
    (``final`` None: the item is gone)."""
    if final is None:
        return ["the item's stock row is gone"]
    problems = []
    if final < 0:
        problems.append(f"stock below zero: {final}")
    if final != initial - sales:
        problems.append(f"stock {final} != initial {initial} - accepted sales {sales}")
    return problems


def check_capacity(events: list[Event], permits: int) -> list[str]:
    """At no instant do more than ``permits`` holds not reported lost overlap."""
    edges = []
    for start, end, token, pid, result in holds(events):
        if result == "ok":
            edges += [(start, 1, pid, token), (end, -1, pid, token)]
    problems, inside = [], 0
    for t, step, pid, token in sorted(edges, key=lambda e: (e[0], e[1])):  # ends first
        inside += step
        if inside > permits:
            problems.append(f"{inside} holders at {t:.3f} (pid {pid} token {token} came in)")
    return problems


def check_reservations(events: list[Event], stock: dict[str, int],
                    final: dict[str, tuple[int, int, int]]) -> list[str]:
    """Carts over an inventory of ``stock``, once every hold has ended: each SKU's
    ``final`` (available, reserved, sold) is non-negative, adds up to its stock, holds
    nothing reserved, and its sold units are those of the confirms that returned (plus
    at most those of the confirms in doubt: raised, or begun by a worker killed before it
    could say); no hold ended twice."""
    problems = []
    sure: Counter[str] = Counter()
    doubt: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    for event in events:
        if event["op"] in ("confirm", "release") and event.get("ok") is not False:
            if event.get("ok"):
                ended[event["hold"]] += 1
            for sku, units in event["lines"].items():
                if event["op"] == "confirm":
                    (sure if event.get("ok") else doubt)[sku] += units
    problems += [f"hold {hold} ended {n} times" for hold, n in ended.items() if n > 1]
    answered = {event["hold"] for event in events if event["op"] in ("confirm", "release")}
    for event in events:  # a confirm whose worker was killed inside it: in doubt
        if event["op"] == "settling" and event["intent"] == "confirm" \
                and event["hold"] not in answered:
            for sku, units in event["lines"].items():
                doubt[sku] += units
    for sku, total in stock.items():
        available, reserved, sold = final[sku]
        if min(available, reserved, sold) < 0 or available + reserved + sold != total:
            problems.append(f"{sku}: {available} available + {reserved} reserved + {sold} sold "
                            f"!= the stock {total} (or negative)")
        if reserved:
            problems.append(f"{sku}: {reserved} still reserved after every hold expired")
        if not sure[sku] <= sold <= sure[sku] + doubt[sku]:
            problems.append(f"{sku}: {sold} sold, but confirms returned {sure[sku]} "
                            f"(+{doubt[sku]} in doubt)")
    return problems


def check_counter(events: list[Event], initial: int, final: int) -> list[str]:
    """Decrements by one of a counter: every returned value is distinct and in range, the
    final value is explained by the successes (plus at most the uncertain ones), and
    the values respect real time: an add that began after another one returned saw a
    smaller value."""
    adds = [e for e in events if e["op"] == "add"]
    done = sorted((e for e in adds if e.get("ok")), key=lambda e: e["t0"])
    uncertain = sum(1 for e in adds if e.get("ok") is None)
    problems = []
    values = [e["value"] for e in done]
    problems += [f"value {v} returned to {n} adds (an update lost)"
                 for v, n in sorted(Counter(values).items()) if n > 1]
    problems += [f"value {v} out of [{final}, {initial - 1}]" for v in values
                 if not final <= v < initial]
    applied = initial - final
    if not len(done) <= applied <= len(done) + uncertain:
        problems.append(f"{applied} applied, but {len(done)} adds returned and {uncertain} "
                        "were uncertain")
    by_end = sorted(done, key=lambda e: e["t1"])
    lowest, i = None, 0
    for event in done:  # by start
        while i < len(by_end) and by_end[i]["t1"] < event["t0"]:
            lowest = by_end[i]["value"] if lowest is None else min(lowest, by_end[i]["value"])
            i += 1
        if lowest is not None and event["value"] >= lowest:
            problems.append(f"pid {event['pid']} got {event['value']} after {lowest} had "
                            "been returned: not linearizable")
    return problems
