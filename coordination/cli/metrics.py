"""``--metrics-port`` for the long-running commands (``worker``, ``lock``): Prometheus
metrics of their coordinator (:mod:`coordination.metrics`) on an HTTP endpoint."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..client import Coordinator
from ..recipes.queue import Queue
from . import Failure

F = TypeVar("F", bound=Callable[..., Any])


def metrics_options(fn: F) -> F:
    """Add ``--metrics-port`` and ``--metrics-addr``; the command receives
    ``metrics: tuple[int | None, str]``."""

    @click.option("--metrics-port", type=click.IntRange(1, 65535), default=None, metavar="PORT",
                  help="Serve Prometheus metrics at http://ADDR:PORT/metrics while running "
                       "(needs the 'prometheus' extra).")
    @click.option("--metrics-addr", default="127.0.0.1", show_default=True, metavar="ADDR",
                  help="Address of the metrics endpoint (0.0.0.0: every interface).")
    @functools.wraps(fn)
    def wrapper(*args: Any, metrics_port: int | None, metrics_addr: str, **kwargs: Any) -> Any:
        return fn(*args, metrics=(metrics_port, metrics_addr), **kwargs)

    return wrapper  # type: ignore[return-value]


def serve(coord: Coordinator, metrics: tuple[int | None, str], queue: Queue | None = None
          ) -> Callable[[], None]:
    """Measure ``coord`` (and ``queue``'s depth) and serve the metrics if a port was
    given; the function that stops the endpoint."""
    port, addr = metrics
    if port is None:
        return lambda: None
    try:
        from ..metrics import Metrics, expose
    except ImportError:
        raise Failure("--metrics-port needs prometheus_client: "
                      "pip install 'coordination[prometheus]'") from None
    measured = Metrics()
    measured.instrument(coord)
    if queue is not None:
        measured.watch_queue(queue)
    try:
        server = expose(port, addr)
    except OSError as exc:
        raise Failure(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}") from None
    return server.shutdown
