"""``coordination cluster``: a real local ZooKeeper or etcd cluster that outlives the
command (its servers run detached; their pids and ports are in ``DIR/cluster.json``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import click

from ..config import DEFAULT_FILE, ENV_VAR
from ..lab.cluster import BACKENDS, STATE_FILE, LocalCluster
from . import Connection, Failure, connection_options, first_line
from .output import console

STATE_ROOT = Path(".coordination")
#: First line of a config file written by `cluster up`; `cluster down` removes only those.
MARKER = "# Written by `coordination cluster up` for the local cluster in "


def default_dir(backend: str) -> Path:
    return STATE_ROOT / f"cluster-{backend}"


def config_file(conn: Connection | None) -> Path | None:
    """The config file that ``conn`` reads (None for a URL)."""
    if conn is not None and conn.url is not None:
        return None
    name = (conn.config if conn is not None else None) or os.environ.get(ENV_VAR) or DEFAULT_FILE
    return Path(name)


def marked_dir(path: Path | None) -> Path | None:
    """The cluster directory named in a config file that `cluster up` wrote."""
    if path is None:
        return None
    try:
        first = path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    if not first.startswith(MARKER):
        return None
    workdir = Path(first[len(MARKER):])
    return workdir if (workdir / STATE_FILE).is_file() else None


def find_state_dir(conn: Connection | None, backend: str | None) -> Path | None:
    """The workdir of a cluster started by `cluster up`: the one named in the config
    file (if `cluster up` wrote it), else the one under ./.coordination whose endpoints
    are those of the configuration, else the only one (of ``backend``) there. None if
    there is none."""
    marked = marked_dir(config_file(conn))
    if marked is not None and (backend is None or _state(marked).get("backend") == backend):
        return marked
    candidates = sorted(path.parent for path in STATE_ROOT.glob(f"*/{STATE_FILE}"))
    if backend is not None:
        candidates = [d for d in candidates if _state(d).get("backend") == backend]
    if conn is not None and conn.given():
        config = conn.resolve()
        for workdir in candidates:
            if _endpoints(workdir) == set(config.endpoints):
                return workdir.resolve()
        if conn.url or conn.config:
            return None  # named explicitly: that one or none
    return candidates[0].resolve() if len(candidates) == 1 else None


def _state(workdir: Path) -> dict[str, Any]:
    try:
        data = json.loads((workdir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _endpoints(workdir: Path) -> set[str]:
    return {f"127.0.0.1:{node.get('client_port')}" for node in _state(workdir).get("nodes", [])}


def _attach(dir_: str | None, backend: str | None, conn: Connection) -> LocalCluster:
    if dir_ is not None:
        workdir = Path(dir_).resolve()
    else:
        found = find_state_dir(conn, backend)
        if found is None:
            raise Failure("no local cluster found here (start one with `coordination cluster "
                          "up`, or pass --dir DIR)")
        workdir = found
    try:
        return LocalCluster.attach(workdir)
    except FileNotFoundError:
        raise Failure(f"no cluster state in {workdir} (start one with `coordination cluster "
                      "up`)") from None
    except ValueError as exc:
        raise Failure(first_line(exc)) from None


def _note(text: str) -> None:
    click.echo(text, err=True)


def _url(cluster: LocalCluster, namespace: str) -> str:
    if cluster.secure:  # the app user's; its password stays in a file
        return cluster.client_url("app", namespace)
    return f"{cluster.url}/{namespace}"


def write_config(path: Path, cluster: LocalCluster, namespace: str) -> None:
    header = (f"{MARKER}{cluster.workdir}\n"
              "# `coordination cluster down` stops that cluster and removes this file.\n")
    if cluster.secure:  # TLS files and the app user's password_file, never the password
        body = cluster.write_config(path, identity="app", namespace=namespace).read_text()
        path.write_text(header + "".join(line + "\n" for line in body.splitlines()
                                         if not line.startswith("#")))
        return
    hosts = "hosts" if cluster.backend == "zookeeper" else "endpoints"
    endpoints = ", ".join(f'"{e}"' for e in cluster.endpoints)
    path.write_text(
        header
        + f'backend = "{cluster.backend}"\n'
        f'namespace = "{namespace}"\n'
        f"[{cluster.backend}]\n"
        f"{hosts} = [{endpoints}]\n"
    )


def _ours(path: Path, workdir: Path | None = None) -> bool:
    try:
        first = path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return False
    if not first.startswith(MARKER):
        return False
    return workdir is None or first[len(MARKER):] == str(workdir)


@click.group()
def cluster() -> None:
    """A real local 3-node cluster for development (runs in the background)."""


_backend_option = click.option(
    "--backend", type=click.Choice(BACKENDS), default=None,
    help="Which cluster (when ./.coordination holds more than one).")
_dir_option = click.option(
    "--dir", "dir_", metavar="DIR", default=None,
    help="The cluster's directory (default: found under ./.coordination).")


@cluster.command()
@click.option("--backend", type=click.Choice(BACKENDS), default="etcd", show_default=True)
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True)
@click.option("--dir", "dir_", metavar="DIR", default=None,
              help="Where node data, logs and the state file go "
                   "[default: ./.coordination/cluster-BACKEND].")
@click.option("--namespace", default=None,
              help="Namespace written into the config file [default: default; app with "
                   "--secure].")
@click.option("--secure", is_flag=True,
              help="TLS on every port, client certificates and users (the config file is "
                   "the app user's, whose role covers the namespaces app*).")
@connection_options
def up(conn: Connection, backend: str, nodes: int, dir_: str | None, namespace: str | None,
       secure: bool) -> None:
    """Start a local cluster in the background and write a config file for it.

    Prints the cluster's URL on stdout. --config FILE names the config file to write
    (default: $COORDINATION_CONFIG, else ./coordination.toml); a file that `cluster up`
    did not write is never overwritten. Running it again while the cluster runs only
    prints the URL; after a reboot it restarts the recorded cluster from its data.
    With --secure the certificates and password files are in DIR/tls.
    """
    namespace = namespace or ("app" if secure else "default")
    if secure and not namespace.startswith("app"):
        raise Failure(f"with --secure the namespace must start with 'app' (the app user's "
                      f"key prefix), not {namespace!r}")
    if conn.url is not None:
        raise Failure("`cluster up` starts a cluster; --url does not apply (use --config FILE "
                      "to choose the config file it writes)")
    workdir = Path(dir_ if dir_ is not None else default_dir(backend)).resolve()
    config_path = config_file(conn) or Path(DEFAULT_FILE)
    if config_path.exists() and not _ours(config_path):
        raise Failure(f"{config_path} exists and was not written by `coordination cluster up`; "
                      "remove it or pass --config OTHER.toml")
    try:
        if (workdir / STATE_FILE).exists():
            running = LocalCluster.attach(workdir)
            if running.backend != backend or running.secure != secure:
                raise Failure(f"{workdir} holds a {'secure ' if running.secure else ''}"
                              f"{running.backend} cluster, not a {'secure ' if secure else ''}"
                              f"{backend} one")
            if any(running.is_running(i) for i in range(running.size)):
                _note(f"a {running.backend} cluster is already running in {workdir}")
            else:
                _note(f"restarting the {running.backend} cluster recorded in {workdir} ...")
                running.stop_all_and_restart(timeout=90)
            local = running
        else:
            _note(f"starting a local {nodes}-node {backend} cluster in {workdir} ...")
            workdir.mkdir(parents=True, exist_ok=True)
            for old in workdir.glob("node*"):  # data of an earlier cluster would not fit
                shutil.rmtree(old, ignore_errors=True)
            local = LocalCluster(backend, nodes=nodes, workdir=workdir, secure=secure).start(
                timeout=90)
            local.detach()
    except (RuntimeError, TimeoutError, ValueError) as exc:
        raise Failure(f"{first_line(exc)} (server logs: {workdir}/node*/server.log)") from None
    write_config(config_path, local, namespace)
    _note(f"cluster up; wrote {config_path} (every command run here now uses it; "
              f"or set ${ENV_VAR}); stop it with `coordination cluster down`")
    click.echo(_url(local, namespace))


@cluster.command()
@_backend_option
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@connection_options
def status(conn: Connection, backend: str | None, dir_: str | None, as_json: bool) -> None:
    """Nodes of the local cluster: pid, running/paused/down, leader, health."""
    local = _attach(dir_, backend, conn)
    rows = local.status()
    if as_json:
        click.echo(json.dumps({"backend": local.backend, "dir": str(local.workdir),
                               "url": local.url, "nodes": rows}, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{local.backend} cluster in {local.workdir}", title_justify="left")
    for column in ("node", "pid", "endpoint", "state", "leader", "health"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["index"]), str(row["pid"] or "-"), row["endpoint"], row["state"],
                      "leader" if row["leader"] else "",
                      "serving" if row["serving"] else "not serving")
    out = console()
    out.print(table)
    out.print(f"url: {local.url}")


def _node_command(verb: str) -> Any:
    @_backend_option
    @_dir_option
    @click.argument("node", type=int)
    @connection_options
    def command(conn: Connection, node: int, backend: str | None, dir_: str | None) -> None:
        local = _attach(dir_, backend, conn)
        if not 0 <= node < local.size:
            raise Failure(f"no node {node}: the cluster has nodes 0..{local.size - 1}")
        try:
            if verb == "kill":
                pid = local.pid(node)
                local.kill(node)
                click.echo(f"killed node {node}" + (f" (pid {pid})" if pid else " (was not running)"))
            elif verb == "restart":
                local.restart(node, wait=True, timeout=60)
                click.echo(f"restarted node {node} (pid {local.pid(node)})")
            elif verb == "pause":
                local.pause(node)
                click.echo(f"paused node {node} (SIGSTOP; `coordination cluster resume {node}`)")
            else:
                local.resume(node)
                click.echo(f"resumed node {node}")
        except (RuntimeError, TimeoutError) as exc:
            raise Failure(first_line(exc)) from None

    return command


cluster.command("kill", help="SIGKILL node N (it stays down until `cluster restart N`).")(
    _node_command("kill"))
cluster.command("restart", help="(Re)start node N from its data and wait until it serves.")(
    _node_command("restart"))
cluster.command("pause", help="Freeze node N (SIGSTOP), e.g. to simulate a hung server.")(
    _node_command("pause"))
cluster.command("resume", help="Unfreeze node N after `cluster pause N`.")(
    _node_command("resume"))


@cluster.command()
@_backend_option
@_dir_option
@click.option("--keep-data", is_flag=True, help="Keep the node directories (data and logs).")
@connection_options
def down(conn: Connection, backend: str | None, dir_: str | None, keep_data: bool) -> None:
    """Stop the local cluster (by pid) and remove its directory and config file."""
    local = _attach(dir_, backend, conn)
    workdir = local.workdir
    assert workdir is not None
    local.stop()
    removed = []
    config_path = config_file(conn)
    if config_path is not None and _ours(config_path, workdir):
        config_path.unlink()
        removed.append(str(config_path))
    if not keep_data:
        for node_dir in workdir.glob("node*"):
            shutil.rmtree(node_dir, ignore_errors=True)
        (workdir / STATE_FILE).unlink(missing_ok=True)
        try:
            workdir.rmdir()
            if workdir.parent.name == STATE_ROOT.name:
                workdir.parent.rmdir()
        except OSError:
            pass  # not empty: something else lives there
        removed.append(str(workdir))
    click.echo(f"stopped the {local.backend} cluster" +
               (f"; removed {', '.join(removed)}" if removed else ""))
