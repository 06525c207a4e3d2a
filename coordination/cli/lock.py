"""``coordination lock NAME -- COMMAND ...``: run a command while holding a lock, like
``flock(1)`` or ``etcdctl lock``."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import threading
from typing import Any

import click

from ..errors import CoordinationError, LockLost, NotHeld
from ..names import validate_name
from . import Connection, connection_options
from .metrics import metrics_options, serve

#: Default exit code when the lock is not acquired within --timeout (as flock(1)).
EXIT_CONFLICT = 1
EXIT_LOST = 1
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="S",
              help="Give up after S seconds (default: wait as long as it takes).")
@click.option("--conflict-exit-code", type=click.IntRange(0, 255), default=EXIT_CONFLICT,
              show_default=True, metavar="N",
              help="Exit code when the lock is not acquired within --timeout.")
@metrics_options
@connection_options
def lock(conn: Connection, name: str, command: tuple[str, ...], timeout: float | None,
         conflict_exit_code: int, metrics: tuple[int | None, str]) -> int:
    """Run COMMAND while holding the lock NAME; exit with COMMAND's exit code.

    Put `--` before COMMAND. COMMAND gets FENCING_TOKEN (this hold's fencing token) and
    COORDINATION_LOCK (the name) in its environment. Exit codes: COMMAND's own (128+N
    if a signal N ended it); 1 (or --conflict-exit-code) if the lock was not acquired
    within --timeout; 1 if the lock was lost while COMMAND ran (its session expired:
    COMMAND is sent SIGTERM, since others may hold the lock now); 126/127 if COMMAND
    cannot be run. SIGTERM and SIGHUP are passed on to COMMAND; Ctrl-C reaches it
    directly from the terminal.
    """
    validate_name(name, "lock name")  # before connecting: a typo fails at once
    with conn.connect() as coord:
        stop_serving = serve(coord, metrics)
        identifier = f"{socket.gethostname()} pid {os.getpid()}: {shlex.join(command)}"[:240]
        held = coord.lock(name, identifier=identifier)
        try:
            if not held.acquire(timeout=timeout):
                click.echo(f"error: lock {name!r} not acquired within {timeout:g}s", err=True)
                return conflict_exit_code
            try:
                return _run_holding(held, name, list(command))
            finally:
                with contextlib.suppress(LockLost, NotHeld, CoordinationError):
                    held.release()
        finally:
            stop_serving()


def _run_holding(held: Any, name: str, command: list[str]) -> int:
    env = dict(os.environ, FENCING_TOKEN=str(held.token), COORDINATION_LOCK=name)
    try:
        proc = subprocess.Popen(command, env=env)
    except FileNotFoundError:
        click.echo(f"error: command not found: {command[0]}", err=True)
        return EXIT_NOT_FOUND
    except PermissionError:
        click.echo(f"error: command not executable: {command[0]}", err=True)
        return EXIT_NOT_EXECUTABLE
    except OSError as exc:
        click.echo(f"error: cannot run {command[0]}: {exc}", err=True)
        return EXIT_NOT_EXECUTABLE
    lost = threading.Event()

    def on_lost(_lock: Any) -> None:
        lost.set()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    held.on_lost(on_lost)
    forward = {sig: signal.signal(sig, lambda signum, _frame: _send(proc, signum))
               for sig in (signal.SIGTERM, signal.SIGHUP)}
    forward[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = proc.wait()
    finally:
        for sig, previous in forward.items():
            signal.signal(sig, previous)
    if lost.is_set() or not held.held:
        click.echo(f"error: lock {name!r} was lost while the command ran (session expired); "
                   "the command was sent SIGTERM", err=True)
        return EXIT_LOST
    return code if code >= 0 else 128 - code


def _send(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signum)
