"""``coordination queue``: put, get, stats, peek, dead letters, requeue, purge."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..names import validate_name
from ..recipes.queue import MAX_PRIORITY, MIN_PRIORITY
from . import Connection, Failure, connection_options
from .output import console


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _task_dict(task: Any) -> dict[str, Any]:
    return {"id": task.id, "data": _text(task.raw), "priority": task.priority, "key": task.key,
            "attempts": task.attempts, "error": task.error, "token": task.token}


@click.group()
def queue() -> None:
    """Work queues: put and get tasks, look at counts and dead letters."""


@queue.command()
@click.argument("name")
@click.argument("data")
@click.option("--priority", type=click.IntRange(MIN_PRIORITY, MAX_PRIORITY), default=0,
              show_default=True, help="Higher first.")
@click.option("--delay", type=click.FloatRange(min=0), default=0.0, metavar="S",
              help="Hold the task back S seconds.")
@click.option("--key", default=None, help="Ordering key: tasks of one key go one at a time, in order.")
@click.option("--id", "task_id", default=None,
              help="Task id; a put with an id already in the queue stores nothing.")
@connection_options
def put(conn: Connection, name: str, data: str, priority: int, delay: float, key: str | None,
        task_id: str | None) -> None:
    """Put DATA (`-`: read it from stdin) on queue NAME; prints the task id."""
    validate_name(name, "queue name")
    payload: bytes | str = sys.stdin.buffer.read() if data == "-" else data
    with conn.connect() as coord:
        click.echo(coord.queue(name).put(payload, priority=priority, delay=delay, key=key,
                                         id=task_id))


@queue.command()
@click.argument("name")
@click.option("--ack", is_flag=True,
              help="Acknowledge the task (remove it for good). Without it, the task is put "
                   "back (nack: attempts + 1).")
@click.option("--timeout", type=click.FloatRange(min=0), default=0.0, show_default=True,
              metavar="S", help="Wait up to S seconds for a task.")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
@connection_options
def get(conn: Connection, name: str, ack: bool, timeout: float, as_json: bool) -> None:
    """Claim one task of queue NAME and print it (exit 1 if none within --timeout)."""
    validate_name(name, "queue name")
    with conn.connect() as coord:
        q = coord.queue(name)
        task = q.get(timeout=timeout)
        if task is None:
            raise Failure(f"no task in queue {name!r} within {timeout:g}s")
        info = _task_dict(task)
        if ack:
            task.ack()
        else:
            task.nack(error="looked at by `coordination queue get` without --ack")
        if as_json:
            click.echo(json.dumps({**info, "acked": ack}))
        else:
            details = [f"id={task.id}", f"attempts={task.attempts}", f"priority={task.priority}"]
            if task.key is not None:
                details.append(f"key={task.key}")
            details.append("acked" if ack else "put back")
            click.echo(" ".join(details), err=True)
            click.echo(info["data"])


@queue.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@connection_options
def stats(conn: Connection, name: str, as_json: bool) -> None:
    """Counts of queue NAME: pending, delayed, blocked (behind their key), in flight, dead."""
    validate_name(name, "queue name")
    with conn.connect() as coord:
        counts = coord.queue(name).stats()
    if as_json:
        click.echo(json.dumps({"name": name, **counts}))
        return
    from rich.table import Table

    table = Table(title=f"queue {name}", title_justify="left")
    for column in counts:
        table.add_column(column.replace("_", " "), justify="right")
    table.add_row(*(str(v) for v in counts.values()))
    console().print(table)


@queue.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@connection_options
def dead(conn: Connection, name: str, as_json: bool) -> None:
    """The dead letters of queue NAME, with their last error."""
    validate_name(name, "queue name")
    with conn.connect() as coord:
        tasks = coord.queue(name).dead_letters()
    if as_json:
        click.echo(json.dumps([_task_dict(task) for task in tasks]))
        return
    if not tasks:
        click.echo(f"no dead letters in queue {name}")
        return
    from rich.table import Table

    table = Table(title=f"dead letters of queue {name}", title_justify="left")
    for column in ("id", "attempts", "key", "error", "data"):
        table.add_column(column, overflow="fold")
    for task in tasks:
        data = _text(task.raw)
        table.add_row(task.id, str(task.attempts), task.key or "", task.error or "",
                      data if len(data) <= 60 else data[:57] + "...")
    console().print(table)


@queue.command()
@click.argument("name")
@click.argument("task_id", metavar="ID")
@connection_options
def requeue(conn: Connection, name: str, task_id: str) -> None:
    """Put dead task ID of queue NAME back, with fresh attempts."""
    validate_name(name, "queue name")
    with conn.connect() as coord:
        coord.queue(name).requeue_dead(task_id)
    click.echo(f"requeued {task_id}")


@queue.command()
@click.argument("name")
@click.option("-n", "count", type=click.IntRange(1, 10_000), default=10, show_default=True,
              help="At most this many tasks.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@connection_options
def peek(conn: Connection, name: str, count: int, as_json: bool) -> None:
    """The next ready tasks of queue NAME, in delivery order, without claiming them."""
    validate_name(name, "queue name")
    with conn.connect() as coord:
        tasks = coord.queue(name).peek(count)
    if as_json:
        click.echo(json.dumps([_task_dict(task) for task in tasks]))
        return
    for task in tasks:
        data = _text(task.raw)
        click.echo(f"{task.id}  priority={task.priority} attempts={task.attempts}"
                   f"{'' if task.key is None else ' key=' + task.key}  "
                   f"{data if len(data) <= 60 else data[:57] + '...'}")


@queue.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Really remove them (there is no undo).")
@connection_options
def purge(conn: Connection, name: str, yes: bool) -> None:
    """Remove every task of queue NAME that is not in flight: pending, delayed,
    blocked, dead. Tasks in flight are left to their workers."""
    validate_name(name, "queue name")
    with conn.connect() as coord:
        q = coord.queue(name)
        if not yes:
            stats = q.stats()
            waiting = stats["pending"] + stats["delayed"] + stats["blocked"] + stats["dead"]
            raise Failure(f"this removes about {waiting} tasks of queue {name!r} for good: "
                          "add --yes")
        click.echo(f"removed {q.purge()} tasks")
