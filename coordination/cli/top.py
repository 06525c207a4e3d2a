"""``coordination top [PREFIX]``: the locks and queues of a namespace, refreshed in place.

Each refresh is one ``coordination.inspect`` snapshot. What one snapshot cannot say is
followed across refreshes: how long the current hold of each lock has been held and its
longest waiter has waited (since this view first saw their tokens: ``>=`` for those
already there when it started), and each queue's tasks in and out per second (out: its
acks of the last seconds, from the queue's done index; in: out plus how fast the tasks
not yet acked grew).
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .. import inspect as inspection
from . import Connection, connection_options
from .output import console


class _Follow:
    """What the view remembers between two snapshots."""

    def __init__(self) -> None:
        self.first = True
        self.holds: dict[str, tuple[int | None, float, bool]] = {}  # name -> token, since, exact
        self.waits: dict[tuple[str, int], tuple[float, bool]] = {}  # (name, token) -> since, exact
        self.totals: dict[str, list[tuple[float, int]]] = {}  # name -> (at, tasks) seen

    def held_for(self, name: str, token: int | None, now: float) -> str:
        if token is None:
            self.holds.pop(name, None)
            return "-"
        seen = self.holds.get(name)
        if seen is None or seen[0] != token:
            seen = self.holds[name] = (token, now, not self.first)
        return f"{'' if seen[2] else '>='}{now - seen[1]:.1f}s"

    def longest_wait(self, name: str, waiting: list[int], now: float) -> str:
        """Since when the longest-waiting entry waits (as first seen by this view)."""
        for token in waiting:
            self.waits.setdefault((name, token), (now, not self.first))
        for key in [key for key in self.waits if key[0] == name and key[1] not in waiting]:
            del self.waits[key]
        if not waiting:
            return "-"
        since, exact = min(self.waits[(name, token)] for token in waiting)
        return f"{'' if exact else '>='}{now - since:.1f}s"

    def rates(self, queue: dict[str, Any], now: float) -> tuple[str, str]:
        """``(in/s, out/s)``: out is the acks of the last ``ACKED_OVER`` seconds; in is
        out plus how fast the tasks not yet acked grew over about the same time."""
        total = sum(queue[k] for k in ("pending", "delayed", "blocked", "in_flight", "dead"))
        seen = self.totals.setdefault(queue["name"], [])
        seen.append((now, total))
        while len(seen) > 1 and now - seen[1][0] >= inspection.ACKED_OVER:
            seen.pop(0)
        out = queue["acked_last_5s"] / inspection.ACKED_OVER
        if now - seen[0][0] < 0.5:
            return "-", f"{out:.1f}"
        grown = (total - seen[0][1]) / (now - seen[0][0])
        return f"{max(0.0, out + grown):.1f}", f"{out:.1f}"


def render(snap: dict[str, Any], follow: _Follow, now: float) -> Group:
    where = f"{snap['backend']} namespace {snap['namespace']!r}" + (
        f", names starting with {snap['prefix']!r}" if snap["prefix"] else "")
    locks = Table(title=f"locks ({where})", title_justify="left", expand=False)
    for column, justify in (("name", "left"), ("holder", "left"), ("token", "right"),
                            ("held for", "right"), ("waiters", "right"),
                            ("longest wait", "right")):
        locks.add_column(column, justify=justify)  # type: ignore[arg-type]
    for lock in snap["locks"]:
        locks.add_row(lock["name"], lock["holder"] or "-",
                      "-" if lock["token"] is None else str(lock["token"]),
                      follow.held_for(lock["name"], lock["token"], now), str(lock["waiters"]),
                      follow.longest_wait(lock["name"], lock["waiting"], now))
    queues = Table(title=f"queues ({where})", title_justify="left", expand=False)
    queues.add_column("name")
    for column in ("pending", "delayed", "blocked", "in flight", "dead", "oldest", "in/s",
                   "out/s"):
        queues.add_column(column, justify="right")
    for q in snap["queues"]:
        oldest = "-" if q["oldest_age"] is None else f"{q['oldest_age']:.1f}s"
        queues.add_row(q["name"], *(str(q[k]) for k in ("pending", "delayed", "blocked",
                                                         "in_flight", "dead")),
                       oldest, *follow.rates(q, now))
    follow.first = False
    held = sum(1 for lock in snap["locks"] if lock["token"] is not None)
    sessions = {session for lock in snap["locks"] for session in lock["sessions"]}
    head = Text(f"{time.strftime('%H:%M:%S')}  {len(snap['locks'])} locks ({held} held), "
                f"{len(sessions)} sessions holding or waiting, {len(snap['queues'])} queues"
                "  (Ctrl-C to quit)", style="bold")
    return Group(head, locks if snap["locks"] else Text(f"no locks ({where})"),
                 queues if snap["queues"] else Text(f"no queues ({where})"))


@click.command()
@click.argument("prefix", default="")
@click.option("--interval", type=click.FloatRange(min=0.2), default=1.0, show_default=True,
              metavar="S", help="Seconds between two refreshes.")
@click.option("--json", "as_json", is_flag=True, help="One snapshot as JSON, then exit.")
@connection_options
def top(conn: Connection, prefix: str, interval: float, as_json: bool) -> None:
    """Locks (holder, token, held for, waiters, longest wait), the sessions holding or
    waiting, and queues (depth, oldest task, tasks in and out per second) whose names
    start with PREFIX, refreshed in place until Ctrl-C."""
    with conn.connect() as coord:
        if as_json:
            click.echo(json.dumps(inspection.snapshot(coord, prefix), indent=2))
            return
        follow = _Follow()
        out = console()
        try:
            with Live(render(inspection.snapshot(coord, prefix), follow, time.monotonic()),
                      console=out, auto_refresh=False, screen=out.is_terminal) as live:
                while True:
                    time.sleep(interval)  # the refresh period itself
                    live.update(render(inspection.snapshot(coord, prefix), follow,
                                       time.monotonic()), refresh=True)
        except KeyboardInterrupt:
            return
