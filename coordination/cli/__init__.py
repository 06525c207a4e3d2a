"""The ``coordination`` command (also ``python -m coordination``).

    coordination cluster up|status|kill|restart|down   a local 3-node cluster
    coordination demo flash-sale                       the flash-sale demo with chaos
    coordination lock NAME -- COMMAND ...              run a command holding a lock
    coordination queue put|get|stats|peek|dead|requeue|purge
                                                       work queues
    coordination worker QUEUE --handler MOD:FUNC       run a handler over a queue's tasks
    coordination inspect [PREFIX]                      locks and queues of a namespace
    coordination top [PREFIX]                          the same, refreshed in place

Every command takes ``--config FILE`` and ``--url URL`` (after the command, or before
it, right after ``coordination``) and otherwise reads ``$COORDINATION_CONFIG`` or
``./coordination.toml``, like :func:`coordination.connect`.

Exit codes: 0 success; 1 an error (one line on stderr: bad URL or config, unreachable
cluster, unknown task, ...) or nothing to do (a lock not acquired within ``--timeout``,
no task within ``--timeout``); 2 a usage error; 130 interrupted (``worker``: tasks were
given back unfinished). ``lock`` exits with the command's own code, ``demo flash-sale``
with 1 if any invariant broke.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..config import Config
from ..errors import CoordinationError

F = TypeVar("F", bound=Callable[..., Any])

#: Exit code of an error that is not a usage error (see the module docstring).
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class Failure(click.ClickException):
    """A one-line error message and exit code 1."""

    exit_code = EXIT_ERROR

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a KeyError's without its quotes)."""
    text = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    text = text.strip() or type(exc).__name__
    return text.splitlines()[0]


class Connection:
    """The ``--config``/``--url`` pair of a command (falling back to the group's)."""

    def __init__(self, url: str | None, config: str | None) -> None:
        self.url = url
        self.config = config

    def resolve(self) -> Config:
        """The configuration, by the rule of :func:`coordination.connect`."""
        return Config.resolve(self.url, self.config)

    def given(self) -> bool:
        """True if a URL or config file was named (option or environment) or
        ./coordination.toml exists."""
        try:
            self.resolve()
        except CoordinationError as exc:
            return "no configuration" not in str(exc)
        return True

    def connect(self, **overrides: Any) -> Any:
        from ..client import connect

        return connect(self.url, config=self.config, **overrides)


def connection_options(fn: F) -> F:
    """Add ``--config`` and ``--url`` to a command; it receives ``conn: Connection``."""

    @click.option("--url", "url", metavar="URL", default=None,
                  help="Cluster URL, e.g. etcd://127.0.0.1:2379/shop (or zookeeper://...).")
    @click.option("--config", "config", metavar="FILE", default=None,
                  type=click.Path(dir_okay=False),
                  help="TOML config file (default: $COORDINATION_CONFIG, else ./coordination.toml).")
    @functools.wraps(fn)
    def wrapper(*args: Any, url: str | None, config: str | None, **kwargs: Any) -> Any:
        root = click.get_current_context().find_root().obj or {}
        url = url if url is not None else root.get("url")
        config = config if config is not None else root.get("config")
        if url is not None and config is not None:
            raise Failure("give either --url or --config, not both")
        return fn(*args, conn=Connection(url, config), **kwargs)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--url", metavar="URL", default=None, help="Cluster URL for every subcommand.")
@click.option("--config", metavar="FILE", default=None, type=click.Path(dir_okay=False),
              help="TOML config file for every subcommand.")
@click.option("-v", "--verbose", is_flag=True, help="Log warnings of the client libraries.")
@click.version_option(package_name="coordination", prog_name="coordination")
@click.pass_context
def cli(ctx: click.Context, url: str | None, config: str | None, verbose: bool) -> None:
    """Distributed locks and work queues on ZooKeeper or etcd, from the shell."""
    ctx.obj = {"url": url, "config": config, "verbose": verbose}
    _setup_logging(verbose)


def _setup_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if verbose:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.WARNING)
    else:
        handler = logging.NullHandler()  # no "Connection dropped" lines from kazoo
    root.addHandler(handler)


def _register() -> None:
    from . import cluster, demo, inspect, lock, queue, top, worker

    cli.add_command(cluster.cluster)
    cli.add_command(demo.demo)
    cli.add_command(lock.lock)
    cli.add_command(queue.queue)
    cli.add_command(worker.worker)
    cli.add_command(inspect.inspect)
    cli.add_command(top.top)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the command line; the exit code (the console script exits with it)."""
    try:
        result = cli.main(args=argv, prog_name="coordination", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except CoordinationError as exc:
        click.echo(f"error: {first_line(exc)}", err=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_ERROR
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
