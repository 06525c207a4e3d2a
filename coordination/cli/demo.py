"""``coordination demo flash-sale``: the CLI glue and the live view of
:mod:`coordination.lab.demo.flash_sale` (where the demo itself lives)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..config import Config
from ..lab.cluster import BACKENDS, STATE_FILE, LocalCluster
from . import Connection, Failure, connection_options, first_line
from .cluster import STATE_ROOT, _endpoints, config_file, marked_dir

STORE_LABELS = {"cart": "carts with expiring holds", "counter": "atomic counters"}


@click.group()
def demo() -> None:
    """Demos on a real cluster."""


@demo.command("flash-sale")
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="Backend of the local cluster it starts when no configuration is given "
                   "[default: etcd].")
@click.option("--stock", type=click.IntRange(1, 100_000), default=500, show_default=True,
              help="Units for sale, spread over the SKUs.")
@click.option("--skus", type=click.IntRange(1, 100), default=4, show_default=True,
              help="Products (one lock each).")
@click.option("--buyers", type=click.IntRange(1, 64), default=16, show_default=True,
              help="Buyer processes.")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Order worker processes.")
@click.option("--chaos/--no-chaos", default=True, show_default=True,
              help="Kill and restart cluster nodes (leader included), SIGKILL and freeze "
                   "buyers and workers during the sale.")
@click.option("--duration", type=click.FloatRange(0, 3600), default=20.0, show_default=True,
              metavar="S", help="Pace the buyers to sell out in about S seconds (0: flat out).")
@click.option("--async", "use_async", is_flag=True,
              help="Run the buyers on the asyncio API (coordination.aio); cart stock only.")
@click.option("--stock-store", type=click.Choice(["cart", "counter", "fenced"]), default="cart",
              show_default=True,
              help="cart: buyers reserve carts of 1-3 SKUs in the inventory recipe and "
                   "confirm, release or abandon them (holds expire). counter: an atomic "
                   "counter per SKU (add -1, min 0; no lock). fenced: the SKU's lock and a "
                   "store that checks its fencing token.")
@click.option("--secure", is_flag=True,
              help="Start a secured local cluster (TLS, client certificates, users; see "
                   "`coordination cluster up --secure`) and sell as its app user.")
@connection_options
def flash_sale(conn: Connection, backend: str | None, stock: int, skus: int, buyers: int,
               workers: int, chaos: bool, duration: float, stock_store: str,
               use_async: bool, secure: bool) -> int:
    """An e-commerce flash sale under chaos, ending with a verdict on its invariants.

    Buyer processes race for the stock (by default reserving carts of 1-3 SKUs in the
    inventory recipe, then confirming, releasing or abandoning them; with --stock-store
    counter an atomic counter per SKU; with --stock-store fenced under per-SKU locks, in
    a fencing-token-checked store), order workers move each order's state machine
    through its steps (created, paid, shipped) from the work queue in order, and a
    chaos monkey kills nodes and processes meanwhile. --async: the buyers use the
    asyncio API (coordination.aio). Exit
    code 0 only if every invariant held. Without a configuration (--url, --config,
    $COORDINATION_CONFIG, ./coordination.toml) it starts a local 3-node cluster and
    stops it at the end; with one, node faults need the cluster to be one that
    `coordination cluster up` started here.
    """
    from ..lab.demo.flash_sale import FlashSale, Settings

    out = _console()
    own: LocalCluster | None = None
    local: LocalCluster | None = None
    if conn.given():
        if secure:
            raise Failure("--secure starts a secured cluster of its own; a configured "
                          "cluster is used with its own settings")
        config = conn.resolve()
        if backend is not None and backend != config.backend:
            raise Failure(f"--backend {backend} does not match the configured "
                          f"{config.backend} cluster")
        local = _local_cluster_of(conn, config)
        if chaos and local is None:
            out.print("note: the cluster was not started by `coordination cluster up` here, "
                      "so the chaos monkey kills processes only, not cluster nodes")
    else:
        backend = backend or "etcd"
        kind = "secured " if secure else ""
        out.print(f"starting a local 3-node {kind}{backend} cluster ...")
        try:
            own = LocalCluster(backend, nodes=3, secure=secure).start(timeout=90)
        except (RuntimeError, TimeoutError) as exc:
            raise Failure(first_line(exc)) from None
        local = own
        # Secured: as the app user, under the key prefix its role covers.
        config = Config.from_url(own.client_url("app", "app-demo") if secure else f"{own.url}/demo")
        out.print(f"cluster up at {config.url}" + (" (TLS, user app)" if secure else ""))
    url = config.connect_url()
    os.environ.update(config.secret_environment())  # for the buyers and workers we start
    try:
        settings = Settings(url=url, stock=stock, skus=skus, buyers=buyers, workers=workers,
                            chaos=chaos, duration=duration, stock_store=stock_store,
                            use_async=use_async)
    except ValueError as exc:
        raise Failure(str(exc)) from None
    view = _View(out, settings.stock)
    try:
        sale = FlashSale(settings, cluster=local, on_event=view.event, on_progress=view.progress)
        with view:
            report = sale.run_sale()
    finally:
        if own is not None:
            own.stop()
    view.verdict(report)
    return 0 if report.ok else 1


def _local_cluster_of(conn: Connection, config: Config) -> LocalCluster | None:
    """The cluster that `coordination cluster up` started (named in the config file it
    wrote, or under ./.coordination), if ``config`` points at exactly its endpoints:
    only then may the chaos monkey kill its nodes."""
    candidates = [marked_dir(config_file(conn))]
    candidates += sorted(state.parent for state in STATE_ROOT.glob(f"*/{STATE_FILE}"))
    for workdir in candidates:
        if workdir is not None and _endpoints(workdir) == set(config.endpoints):
            try:
                return LocalCluster.attach(workdir.resolve())
            except (OSError, ValueError):
                return None
    return None


def _console() -> Console:
    probe = Console()
    if probe.is_terminal:
        return Console(highlight=False)
    return Console(highlight=False, width=100)  # logs and pipes: wide enough for the table


class _View:
    """Live progress on a terminal; plain timestamped lines otherwise."""

    def __init__(self, console: Console, stock: int) -> None:
        self.console = console
        self.stock = stock
        self.started = time.monotonic()
        self.live: Live | None = None
        self.last: Any = None
        self._last_line = 0.0

    def __enter__(self) -> _View:
        if self.console.is_terminal:
            self.live = Live(Text("starting buyers and workers ..."), console=self.console,
                             refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def event(self, text: str) -> None:
        self.console.print(f"{self._stamp()} {text}", markup=False)

    def progress(self, p: Any) -> None:
        self.last = p
        if self.live is not None:
            self.live.update(self._panel(p))
        elif p.phase in ("sale", "draining") and time.monotonic() - self._last_line >= 2.0:
            self._last_line = time.monotonic()
            nodes = "; nodes " + " ".join(f"{i}:{state}" for i, state in enumerate(p.nodes))
            nodes = nodes if p.nodes else ""
            self.console.print(
                f"{self._stamp()} sold {p.sold}/{p.stock}, orders shipped {p.orders_done}, "
                f"faults {p.faults}{nodes}", markup=False)

    def _panel(self, p: Any) -> Group:
        head = Table.grid(padding=(0, 2))
        head.add_row(Text("flash sale", style="bold"),
                     ProgressBar(total=max(1, p.stock), completed=p.sold, width=40),
                     Text(f"{p.sold}/{p.stock} sold"), Text(f"{p.elapsed:5.1f}s  {p.phase}"))
        body = Table.grid(padding=(0, 3))
        body.add_row(f"orders shipped {p.orders_done}", f"steps done {p.steps_done}",
                     f"redeliveries {p.redeliveries}",
                     f"stale writes refused {p.fenced_off}" if p.stock_store == "fenced"
                     else f"stock: {STORE_LABELS[p.stock_store]}")
        nodes = Text("nodes ")
        for i, state in enumerate(p.nodes):
            style = {"leader": "bold green", "up": "green", "down": "bold red",
                     "paused": "yellow"}[state]
            nodes.append(f"{i}:{state} ", style=style)
        body.add_row(Text(f"faults injected {p.faults}", style="bold yellow" if p.faults else ""),
                     f"buyers {p.buyers_alive}", f"workers {p.workers_alive}", nodes)
        return Group(head, body)

    def verdict(self, report: Any) -> None:
        table = Table(title="verdict", title_justify="left", show_lines=False)
        table.add_column("invariant")
        table.add_column("result")
        table.add_column("detail", overflow="fold")
        for check in report.checks:
            table.add_row(check.name, Text("held", style="bold green") if check.ok
                          else Text("BROKEN", style="bold red"), check.detail)
        stats = Table(title="performance", title_justify="left", show_header=False)
        stats.add_column("what")
        stats.add_column("value", overflow="fold")
        for name, value in report.stats:
            stats.add_row(name, value)
        self.console.print(table)
        self.console.print(stats)
        broken = [c for c in report.checks if not c.ok]
        if broken:
            self.console.print(Text(
                f"FAILED: {len(broken)} of {len(report.checks)} invariants broken "
                f"(logs kept in {Path(report.run_dir)})", style="bold red"))
        else:
            self.console.print(Text(f"OK: all {len(report.checks)} invariants held",
                                    style="bold green"))
