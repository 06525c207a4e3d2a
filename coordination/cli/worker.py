"""``coordination worker QUEUE --handler module:function``: run a handler over a queue's
tasks until SIGTERM/SIGINT, with a live status line (see ``Queue.consume``)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from ..names import validate_name
from ..recipes.queue import Retry, Worker
from ..recipes.queue import worker as worker_module
from . import EXIT_INTERRUPTED, Connection, Failure, connection_options
from .metrics import metrics_options, serve
from .output import console


def load_handler(spec: str) -> Callable[[Any], Any]:
    """The callable named ``module:attribute`` (dots allowed in both parts); the
    current directory is searched first, as ``python -m`` does."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise Failure(f"--handler must be module:function, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # the user's module failed to import: say which and why
        raise Failure(f"cannot import handler module {module_name!r}: "
                      f"{type(exc).__name__}: {exc}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise Failure(f"module {module_name!r} has no {attribute!r}") from None
    if not callable(target):
        raise Failure(f"{spec} is not callable")
    return target


def _log_worker_events(out: Console) -> None:
    """The worker's own lines (stopping, lost claims, unreachable servers) on ``out``,
    above the live status line."""
    from rich.logging import RichHandler

    log = logging.getLogger(worker_module.__name__)
    log.setLevel(logging.INFO)
    log.addHandler(RichHandler(console=out, show_path=False, markup=False))


def status_line(worker: Worker, started: float) -> str:
    """``processed N (R/s) · in flight N · retried N · dead N · lost N``."""
    stats = worker.stats
    rate = stats.processed / max(time.monotonic() - started, 1e-9)
    line = (f"{worker.queue.name}: processed {stats.processed} ({rate:.1f}/s) · in flight "
            f"{stats.in_flight} · retried {stats.retried} · dead {stats.dead} · lost {stats.lost}")
    if stats.abandoned:
        line += f" · given back {stats.abandoned}"
    return line + (" · stopping" if worker.stopping else "")


@click.command()
@click.argument("name")
@click.option("--handler", "handler_spec", required=True, metavar="MODULE:FUNCTION",
              help="Called with each task; it is acked when this returns, nacked when it raises.")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="Handler threads.")
@click.option("--batch", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Tasks a thread claims at once (their successes are acked together).")
@click.option("--grace", type=click.FloatRange(min=0), default=30.0, show_default=True,
              metavar="S", help="At SIGTERM/SIGINT, wait up to S seconds for running handlers.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="S", help="Take a task back from a handler that runs longer than S seconds.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None,
              help="Dead-letter a task after this many failures (default: the queue's).")
@click.option("--backoff", type=(click.FloatRange(min=0), click.FloatRange(min=0)),
              default=(1.0, 300.0), show_default=True, metavar="BASE MAX",
              help="Retry after BASE * 2**attempts seconds, at most MAX (with jitter).")
@metrics_options
@connection_options
def worker(conn: Connection, name: str, handler_spec: str, concurrency: int, batch: int,
           grace: float,
           time_limit: float | None, max_attempts: int | None,
           backoff: tuple[float, float], metrics: tuple[int | None, str]) -> int:
    """Run a handler over the tasks of queue NAME until SIGTERM or SIGINT.

    The first signal stops claiming and gives running handlers --grace seconds; a
    second gives their tasks back at once. Exit 0 after a stop in which every running
    task was settled, 130 if some were given back."""
    validate_name(name, "queue name")
    handler = load_handler(handler_spec)
    retry = Retry(base=backoff[0], max=backoff[1], max_attempts=max_attempts)
    from rich.live import Live

    out = console(stderr=True)
    _log_worker_events(out)
    with conn.connect() as coord:
        queue = coord.queue(name, time_limit=time_limit)
        stop_serving = serve(coord, metrics, queue)
        loop = queue.worker(handler, concurrency=concurrency, retry=retry, grace=grace,
                            batch=batch)
        started = time.monotonic()
        try:
            with Live(get_renderable=lambda: status_line(loop, started), console=out,
                      refresh_per_second=2, transient=False):
                stats = loop.run()
        finally:
            stop_serving()
    return EXIT_INTERRUPTED if stats.abandoned else 0
