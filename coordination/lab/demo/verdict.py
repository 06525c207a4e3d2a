"""The verdict on a flash sale: :func:`judge` checks its invariants against the
:class:`~.store.Ledger` and what the orchestrator saw (:class:`Outcome`), and adds
performance figures: a :class:`Report`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .settings import Settings, counter_name
from .store import STEPS, Ledger

#: The faults the demo injects, by their :mod:`coordination.lab.nemesis` name, as the
#: verdict lists them.
FAULT_LABELS = {"leader-kill": "leader kill", "follower-kill": "follower kill",
                "buyer-kill": "buyer kill", "worker-kill": "worker kill",
                "buyer-freeze": "buyer freeze"}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    checks: list[Check]
    stats: list[tuple[str, str]]
    run_dir: Path
    #: The run dir (child logs, the SQLite store) is kept for a look.
    keep: bool = False

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


@dataclass
class Outcome:
    """What the orchestrator saw of a sale (times from ``time.monotonic()``)."""

    settings: Settings
    run_dir: Path
    open_at: float
    closed_at: float
    drained_at: float
    #: The queue's last ``stats()`` reading (None: never read).
    queue_stats: dict[str, int] | None
    #: Faults that took effect, by nemesis name.
    faults: dict[str, int]
    #: Faults that failed, and a cluster that could not be healed: one line each.
    chaos_errors: list[str]
    #: Child processes that exited unplanned.
    crashes: int
    #: Every node of the local cluster running at the end (True without one).
    healthy: bool
    #: Units left when the sale hit its time limit (0: sold out).
    stalled: int
    #: Counter mode: each SKU's final counter value (empty: not read).
    finals: dict[str, int] = field(default_factory=dict)
    #: Counter mode: what :func:`~.stock.reconcile` settled.
    reconciled: dict[str, int] | None = None
    #: The order records read back (:func:`~.orders.audit`; None: not read).
    records: dict[str, object] | None = None
    #: Cart mode: the holds and levels read back (:func:`~.cart.audit`).
    carts: dict[str, object] | None = None


def judge(ledger: Ledger, o: Outcome) -> Report:
    """The invariants (each a :class:`Check`: seven, eight in cart mode) and the
    performance figures."""
    s = o.settings
    a = ledger.audit()
    q = o.queue_stats or {}
    sold, complete = int(a["sold"]), int(a["complete"])  # type: ignore[call-overload]
    orders = int(a["orders"])  # type: ignore[call-overload]
    initial, left = int(a["initial"]), int(a["left"])  # type: ignore[call-overload]
    steps_done, redeliveries = int(a["steps_done"]), int(a["redeliveries"])  # type: ignore[call-overload]
    queued = sum(q.values())
    if s.carts:
        stock_check = _levels_check(o)
        levels: dict[str, tuple[int, int, int]] = (o.carts or {}).get("levels", {})  # type: ignore[assignment]
        left = sum(level[0] for level in levels.values()) if levels else initial
    elif s.fenced:
        stock_check = Check("stock never below zero", int(a["min_qty"]) >= 0 and left >= 0,  # type: ignore[call-overload]
                            f"lowest stock level {a['min_qty']}, {left} of {initial} left")
    else:
        stock_check = _counters_check(ledger, o)
        left = sum(o.finals.values()) if o.finals else initial
    checks = [
        Check("units sold = orders completed", orders == complete and sold == initial - left,
              f"{sold} sold" + (f" in {orders} carts" if s.carts else "") +
              f", {complete} orders completed (created, paid, shipped), "
              f"stock down by {initial - left}"),
        stock_check,
        Check("no order lost", complete == orders and queued == 0,
              f"{orders - complete} orders incomplete; queue: " + (
                  "empty" if q and not queued else
                  ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in q.items()) or "?")),
        Check("no order processed twice",
              steps_done == len(STEPS) * orders and a["unknown_orders"] == 0,
              f"{steps_done} steps done once each; "
              f"{plural(redeliveries, 'redelivery', 'redeliveries')} absorbed "
              "(recorded per order and step)"),
        Check("no step out of order", a["out_of_order"] == 0 and a["disorder"] == 0,
              f"{a['out_of_order']} steps done before their predecessor"),
        _records_check(o, orders, int(a["repeats"])),  # type: ignore[call-overload]
        *([_holds_check(o)] if s.carts else []),
        _faults_check(o),
    ]
    sale_time = max(1e-9, o.closed_at - o.open_at)
    total_time = max(1e-9, o.drained_at - o.open_at)
    waits: list[float] = a["lock_waits_ms"]  # type: ignore[assignment]
    if not s.fenced:  # reconciled orders have no latency
        waits = [w for w in waits if w > 0]
    latency = "lock wait" if s.fenced else "checkout" if s.carts else "counter add"
    stats = [
        ("throughput", f"{sold / sale_time:.1f} units/s over the {sale_time:.1f}s sale; "
                       f"{complete / total_time:.1f} orders/s to shipped"),
        (latency, "p50 {} / p90 {} / p99 {} / max {} ms".format(
             *(_fmt_ms(_percentile(waits, p)) for p in (50, 90, 99, 100)))),
    ]
    if s.fenced:
        stats.append(("fencing", f"{plural(int(a['fenced_off']), 'stale write')} refused "  # type: ignore[call-overload]
                                 "by the stock store"))
    elif not s.carts:
        r = o.reconciled or {}
        doubt = r.get("in_doubt", 0)
        stats.append(("in doubt", "none: every decrement's outcome was known" if not doubt
                      else f"{plural(doubt, 'purchase')} ({r.get('uncertain', 0)} "
                      f"UncertainOutcome, {doubt - r.get('uncertain', 0)} buyer killed "
                      f"mid-purchase): {r.get('applied', 0)} applied per the counters, "
                      "recorded as orders" + (f"; {r['unresolved']} NOT reconcilable"
                                              if r.get("unresolved") else "")))
    stats += [
        ("run", f"{s.buyers} buyers, {s.workers} workers, {s.skus} SKUs, "
                f"{total_time:.1f}s from opening to the last order shipped"),
    ]
    errors = ledger.errors()
    if errors:
        # Not an invariant (the data stayed right), but a client-library bug: say so.
        kinds = sorted({text.split(":", 1)[0] for _who, text in errors})
        stats.append(("client errors", f"{len(errors)} unexpected exceptions retried "
                      f"({', '.join(kinds)}); tracebacks in {o.run_dir}"))
    return Report(checks, stats, o.run_dir, keep=bool(errors))


def _counters_check(ledger: Ledger, o: Outcome) -> Check:
    """Counter mode: each SKU's final counter value is >= 0 and initial - sold."""
    if not o.finals:
        return Check("stock never below zero", False, "the counters were not read")
    rows = ledger.db.execute("SELECT s.sku, s.initial, (SELECT COUNT(*) FROM orders o "
                             "WHERE o.sku = s.sku) FROM stock s ORDER BY s.sku").fetchall()
    bad = [f"{sku}: {o.finals.get(sku)} left, {initial} - {sold} sold"
           for sku, initial, sold in rows
           if o.finals.get(sku, -1) < 0 or o.finals.get(sku) != initial - sold]
    unresolved = (o.reconciled or {}).get("unresolved", 0)
    detail = (f"counters {', '.join(f'{counter_name(k)}={v}' for k, v in o.finals.items())}"
              f" (each >= 0 and = initial - sold)")
    if bad:
        detail += "; mismatch " + "; ".join(bad)
    if unresolved:
        detail += f"; {unresolved} purchases in doubt could not be reconciled"
    return Check("stock never below zero", not bad and not unresolved, detail)


def _levels_check(o: Outcome) -> Check:
    """Cart mode: per SKU, nothing reserved at the end, available + sold = the stock
    set, sold = the units of its orders, none below zero."""
    c = o.carts
    if c is None:
        return Check("no SKU oversold", False, "the inventory was not read")
    levels: dict[str, tuple[int, int, int]] = c["levels"]  # type: ignore[assignment]
    bad: list[str] = c["bad_levels"]  # type: ignore[assignment]
    detail = ("available/reserved/sold " +
              ", ".join(f"{sku} {a}/{r}/{s}" for sku, (a, r, s) in levels.items()) +
              " (each adds up to its stock; sold = the units of its orders)")
    if bad:
        detail += "; wrong: " + "; ".join(bad[:3])
    return Check("no SKU oversold", not bad, detail)


def _holds_check(o: Outcome) -> Check:
    """Cart mode: every hold ended once, as the inventory and its buyer agree."""
    c = o.carts or {}
    ends: dict[str, int] = c.get("ends", {})  # type: ignore[assignment]
    disagree: list[str] = c.get("disagree", ["the inventory was not read"])  # type: ignore[assignment]
    detail = (f"{plural(int(c.get('holds', 0)), 'hold')}: " +  # type: ignore[call-overload]
              ", ".join(f"{n} {end}" for end, n in ends.items()) +
              f" ({c.get('late', 0)} too late to confirm or release), each once, "
              "as its buyer was told")
    settled = c.get("settled") or {}
    if sum(settled.values()):  # type: ignore[attr-defined]
        detail += f"; {sum(settled.values())} ended unseen, read from the inventory"  # type: ignore[attr-defined]
    if disagree:
        detail += "; wrong: " + "; ".join(disagree[:3])
    return Check("every hold ended once", not disagree, detail)


def _records_check(o: Outcome, orders: int, repeats: int) -> Check:
    """Every order's record went ``created -> paid -> shipped`` and nowhere else."""
    r = o.records
    if r is None:
        return Check("no illegal transition", False, "the order records were not read")
    bad: list[str] = r["bad"]  # type: ignore[assignment]
    detail = (f"{r['walked']} of {orders} order records went {' -> '.join(STEPS)}, "
              f"nothing else; {plural(repeats, 'repeated step')} refused by its record")
    if bad:
        detail += "; wrong: " + "; ".join(bad[:3])
    return Check("no illegal transition", not bad and r["walked"] == orders, detail)


def _faults_check(o: Outcome) -> Check:
    total = sum(o.faults.values())
    parts = [plural(o.faults[name], label) for name, label in FAULT_LABELS.items()
             if o.faults.get(name)]
    problems = list(o.chaos_errors)
    if o.crashes:
        problems.append(f"{o.crashes} unplanned process exits")
    if not o.healthy:
        problems.append("cluster not healthy at the end")
    if o.stalled:
        problems.append(f"the sale stalled: {o.stalled} units unsold at its time limit")
    if not o.settings.chaos:
        return Check("faults survived", not problems,
                     "chaos off" + ("; " + "; ".join(problems) if problems else ""))
    if total:
        detail = f"{total} faults: " + ", ".join(parts)
    else:
        detail = "0 faults: the sale was over before the first one (try a longer --duration)"
    if problems:
        detail += "; " + "; ".join(problems)
    return Check("faults survived", not problems, detail)


def plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
