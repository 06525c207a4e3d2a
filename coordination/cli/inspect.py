"""``coordination inspect [PREFIX]``: the locks and queues of a namespace."""

from __future__ import annotations

import json

import click

from .. import inspect as inspection
from . import Connection, connection_options
from .output import console


@click.command()
@click.argument("prefix", default="")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for machines.")
@connection_options
def inspect(conn: Connection, prefix: str, as_json: bool) -> None:
    """Locks (holder, fencing token, waiters) and queues (pending, in flight, dead) whose
    names start with PREFIX, in the configured namespace.

    On etcd a lock exists only while it is held or awaited; on ZooKeeper idle locks are
    listed too (their node keeps the token counter).
    """
    with conn.connect() as coord:
        snap = inspection.snapshot(coord, prefix)
    if as_json:
        click.echo(json.dumps(snap, indent=2))
        return
    from rich.table import Table

    out = console()
    where = f"{snap['backend']} namespace {snap['namespace']!r}" + (
        f", names starting with {prefix!r}" if prefix else "")
    locks = Table(title=f"locks ({where})", title_justify="left")
    for column, justify in (("name", "left"), ("holder", "left"), ("token", "right"),
                            ("waiters", "right")):
        locks.add_column(column, justify=justify)  # type: ignore[arg-type]
    for lock in snap["locks"]:
        locks.add_row(lock["name"], lock["holder"] or "-",
                      "-" if lock["token"] is None else str(lock["token"]), str(lock["waiters"]))
    queues = Table(title=f"queues ({where})", title_justify="left")
    queues.add_column("name")
    for column in ("pending", "delayed", "blocked", "in flight", "dead"):
        queues.add_column(column, justify="right")
    for q in snap["queues"]:
        queues.add_row(q["name"], *(str(q[k]) for k in ("pending", "delayed", "blocked",
                                                         "in_flight", "dead")))
    out.print(locks if snap["locks"] else f"no locks ({where})")
    out.print(queues if snap["queues"] else f"no queues ({where})")
