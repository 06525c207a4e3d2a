"""The ``coordination`` command, run as a subprocess (``python -m coordination``) against
real clusters: cluster up/status/kill/restart/down, lock, queue, inspect, one-line
errors, and the flash-sale demo with chaos on both backends."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import coordination
from coordination.lab.cluster import LocalCluster, pid_alive

from .helpers import wait_for

pytestmark = pytest.mark.integration

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(tmp_path: Path, python_env: dict[str, str]) -> Run:
    """``cli(*args, timeout=60)``: run the command in an empty directory (so no
    ./coordination.toml is found) without $COORDINATION_CONFIG."""
    env = {k: v for k, v in python_env.items() if k != "COORDINATION_CONFIG"}
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    def run(*args: str, timeout: float = 60, input: str | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "coordination", *args], cwd=workdir,
            env={**env, **(extra_env or {})}, capture_output=True, text=True, timeout=timeout,
            input=input,
        )

    return run


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert a failure with exactly one line on stderr and no traceback; that line."""
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def test_help_and_version(cli: Run) -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for command in ("cluster", "demo", "lock", "queue", "worker", "inspect", "top"):
        assert command in proc.stdout
    assert cli("--version").stdout.strip().endswith(coordination.__version__)


# --- cluster ---------------------------------------------------------------------------------


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    """Where `cluster up` puts its cluster; stopped by pid afterwards if still there."""
    path = tmp_path / "cluster"
    yield path
    if (path / "cluster.json").exists():
        LocalCluster.attach(path).stop()


def test_cluster_up_status_kill_restart_down(
    backend: str, cli: Run, cluster_dir: Path, tmp_path: Path
) -> None:
    up = cli("cluster", "up", "--backend", backend, "--dir", str(cluster_dir), timeout=120)
    assert up.returncode == 0, up.stderr
    url = up.stdout.strip()
    assert re.fullmatch(rf"{backend}://(127\.0\.0\.1:\d+,){{2}}127\.0\.0\.1:\d+/default", url)
    config = tmp_path / "cwd" / "coordination.toml"
    assert f'backend = "{backend}"' in config.read_text()

    def status() -> dict:
        proc = cli("cluster", "status", "--json")  # finds the cluster through the config
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    nodes = status()["nodes"]
    assert [n["state"] for n in nodes] == ["running"] * 3
    pids = [n["pid"] for n in nodes]
    assert all(pid_alive(pid) for pid in pids)
    wait_for(lambda: sum(n["leader"] for n in status()["nodes"]) == 1, 30, 0.2, "one leader")

    # The config it wrote works for the other commands.
    assert cli("queue", "put", "jobs", "hello").returncode == 0

    killed = cli("cluster", "kill", "1")
    assert killed.returncode == 0 and f"pid {pids[1]}" in killed.stdout
    wait_for(lambda: not pid_alive(pids[1]), 10, message="node 1 gone")
    assert [n["state"] for n in status()["nodes"]] == ["running", "down", "running"]
    table = cli("cluster", "status", "--dir", str(cluster_dir))
    assert table.returncode == 0 and "down" in table.stdout and "running" in table.stdout

    restarted = cli("cluster", "restart", "1", timeout=90)
    assert restarted.returncode == 0, restarted.stderr
    nodes = status()["nodes"]
    assert nodes[1]["state"] == "running" and nodes[1]["pid"] != pids[1]
    assert nodes[1]["serving"]
    pids[1] = nodes[1]["pid"]
    wait_for(lambda: all(n["serving"] for n in status()["nodes"]), 30, 0.2, "all serving")

    assert cli("cluster", "pause", "2").returncode == 0
    assert status()["nodes"][2]["state"] == "paused"
    assert cli("cluster", "resume", "2").returncode == 0
    assert status()["nodes"][2]["state"] == "running"

    assert one_line_error(cli("cluster", "kill", "7")).startswith("error: no node 7")
    again = cli("cluster", "up", "--backend", backend, "--dir", str(cluster_dir))
    assert again.returncode == 0 and again.stdout.strip() == url  # already running: same URL

    down = cli("cluster", "down")
    assert down.returncode == 0, down.stderr
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 15, message="servers stopped")
    assert not config.exists() and not cluster_dir.exists()
    assert one_line_error(cli("cluster", "status")).startswith("error: no local cluster")


# --- lock ------------------------------------------------------------------------------------


PRINT_TOKEN = "import os, sys; print(os.environ['FENCING_TOKEN']); sys.exit(int(sys.argv[1]))"


SCRAPE = """
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read()
print(text.decode())
"""


def test_lock_and_worker_serve_metrics_while_they_run(
        cli: Run, url: str, tmp_path: Path, connect, python_env: dict[str, str]) -> None:
    """--metrics-port: the command run under the lock scrapes the lock's own endpoint;
    the worker's endpoint shows the tasks it handled and the queue's depth."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    held = cli("lock", "jobs/nightly", "--url", url, "--metrics-port", str(port), "--",
               sys.executable, "-c", SCRAPE, str(port))
    assert held.returncode == 0, held.stderr
    assert 'coordination_lock_wait_seconds_count{lock="jobs/nightly",outcome="acquired"} 1.0' \
        in held.stdout
    queue = connect().queue("orders")
    queue.put_many([b"a", b"b"])
    (tmp_path / "handlers.py").write_text("def ok(task):\n    pass\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordination", "worker", "orders", "--handler", "handlers:ok",
         "--url", url, "--metrics-port", str(port)], cwd=tmp_path, env=python_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def scraped() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return ""
        wait_for(lambda: 'event="acked",queue="orders"} 2.0' in scraped(), timeout=60)
        # The depth is read at most every 5 s: the first read may be from before.
        wait_for(lambda: 'coordination_queue_depth{queue="orders",state="pending"} 0.0'
                 in scraped(), timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_lock_runs_command_with_fencing_token_and_its_exit_code(
    cli: Run, url: str, connect: Callable[..., coordination.Coordinator]
) -> None:
    first = cli("lock", "jobs/nightly", "--url", url, "--", sys.executable, "-c", PRINT_TOKEN, "7")
    assert first.returncode == 7, first.stderr
    second = cli("--url", url, "lock", "jobs/nightly", "--timeout", "5", "--",
                 sys.executable, "-c", PRINT_TOKEN, "0")
    assert second.returncode == 0, second.stderr
    assert int(second.stdout) > int(first.stdout)  # released after the first command

    holder = connect().lock("jobs/nightly")
    assert holder.acquire(timeout=5)
    try:
        timed_out = cli("lock", "jobs/nightly", "--url", url, "--timeout", "0.5", "--", "true")
        assert timed_out.returncode == 1
        assert one_line_error(timed_out) == "error: lock 'jobs/nightly' not acquired within 0.5s"
        custom = cli("lock", "jobs/nightly", "--url", url, "--timeout", "0",
                     "--conflict-exit-code", "75", "--", "true")
        assert custom.returncode == 75
    finally:
        holder.release()
    missing = cli("lock", "jobs/nightly", "--url", url, "--", "no-such-command-xyz")
    assert missing.returncode == 127 and "not found" in missing.stderr


# --- queue -----------------------------------------------------------------------------------


def test_queue_put_get_stats_dead_requeue(cli: Run, url: str) -> None:
    def ok(*args: str) -> str:
        proc = cli(*args, "--url", url)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def stats() -> dict:
        return json.loads(ok("queue", "stats", "orders", "--json"))

    assert ok("queue", "put", "orders", "first", "--key", "o-1", "--id", "o-1.created").strip() \
        == "o-1.created"
    ok("queue", "put", "orders", "urgent", "--priority", "10")
    ok("queue", "put", "orders", "later", "--delay", "600")
    ok("queue", "put", "orders", "second", "--key", "o-1")
    assert stats() == {"name": "orders", "pending": 2, "delayed": 1, "blocked": 1,
                       "in_flight": 0, "dead": 0}
    assert "pending" in ok("queue", "stats", "orders")  # the table

    urgent = json.loads(ok("queue", "get", "orders", "--ack", "--json"))
    assert urgent["data"] == "urgent" and urgent["priority"] == 10 and urgent["acked"]
    for attempt in range(5):  # without --ack: put back, attempts + 1; dead after 5
        proc = cli("queue", "get", "orders", "--url", url)
        assert proc.returncode == 0 and proc.stdout == "first\n", proc.stderr
        assert f"attempts={attempt}" in proc.stderr
    assert stats()["dead"] == 1
    dead = json.loads(ok("queue", "dead", "orders", "--json"))
    assert [(t["id"], t["attempts"]) for t in dead] == [("o-1.created", 5)]
    assert "o-1.created" in ok("queue", "dead", "orders")

    assert ok("queue", "requeue", "orders", "o-1.created").strip() == "requeued o-1.created"
    assert stats()["dead"] == 0
    assert json.loads(ok("queue", "get", "orders", "--ack", "--json"))["data"] == "first"
    assert json.loads(ok("queue", "get", "orders", "--ack", "--json"))["data"] == "second"
    empty = cli("queue", "get", "orders", "--timeout", "0.2", "--url", url)
    assert one_line_error(empty) == "error: no task in queue 'orders' within 0.2s"
    unknown = one_line_error(cli("queue", "requeue", "orders", "nope", "--url", url))
    assert unknown == "error: no dead task 'nope' in queue 'orders'"
    piped = cli("queue", "put", "piped", "-", "--url", url, input="from stdin")
    assert piped.returncode == 0
    assert json.loads(ok("queue", "get", "piped", "--ack", "--json"))["data"] == "from stdin"


def test_queue_peek_and_purge(cli: Run, url: str) -> None:
    for data in ("a", "b", "c"):
        assert cli("queue", "put", "jobs", data, "--url", url).returncode == 0
    peeked = json.loads(cli("queue", "peek", "jobs", "-n", "2", "--json", "--url", url).stdout)
    assert [task["data"] for task in peeked] == ["a", "b"]
    assert "  a" in cli("queue", "peek", "jobs", "--url", url).stdout
    refused = cli("queue", "purge", "jobs", "--url", url)
    assert "removes about 3 tasks" in one_line_error(refused)
    purged = cli("queue", "purge", "jobs", "--yes", "--url", url)
    assert purged.returncode == 0 and purged.stdout.strip() == "removed 3 tasks"
    assert json.loads(cli("queue", "peek", "jobs", "--json", "--url", url).stdout) == []


# --- inspect ---------------------------------------------------------------------------------


def test_inspect_shows_locks_and_queues(
    cli: Run, url: str, connect: Callable[..., coordination.Coordinator], backend: str,
    tmp_path: Path,
) -> None:
    holder = connect().lock("shop/sku-1", identifier="checkout-7")
    assert holder.acquire(timeout=5)
    waiter_coord = connect()
    waiting = threading.Event()

    def wait_for_lock() -> None:
        lock = waiter_coord.lock("shop/sku-1")
        waiting.set()
        if lock.acquire(timeout=30):
            lock.release()

    thread = threading.Thread(target=wait_for_lock)
    thread.start()
    try:
        queue = connect().queue("shop/orders")
        queue.put_many(["a", "b", "c"])
        queue.put("d", delay=600)
        claimed = queue.get(timeout=5)
        assert claimed is not None

        def snapshot() -> dict:
            proc = cli("inspect", "--json", "--url", url)
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout)

        waiting.wait(5)
        snap = wait_for(lambda: (s := snapshot())["locks"] and s["locks"][0]["waiters"] == 1 and s,
                        15, 0.2, "the waiter to show")
        assert snap["backend"] == backend
        (lock,) = snap["locks"]
        waiting_tokens, sessions = lock.pop("waiting"), lock.pop("sessions")
        assert lock == {"name": "shop/sku-1", "holder": "checkout-7", "token": holder.token,
                        "waiters": 1, "path": holder.path}
        assert len(waiting_tokens) == 1 and waiting_tokens[0] > holder.token
        assert len(sessions) == 2  # the holder's and the waiter's
        (orders,) = snap["queues"]
        assert 0 <= orders.pop("oldest_age") < 60  # the next task to hand out, put just now
        assert orders.pop("acked_last_5s") == 0
        assert orders == {"name": "shop/orders", "pending": 2, "delayed": 1, "blocked": 0,
                          "in_flight": 1, "dead": 0}
        table = cli("inspect", "shop/", "--url", url)
        assert table.returncode == 0
        assert "shop/sku-1" in table.stdout and "checkout-7" in table.stdout
        assert "shop/orders" in table.stdout
        other = json.loads(cli("inspect", "other/", "--json", "--url", url).stdout)
        assert other["locks"] == [] and other["queues"] == []
        # $COORDINATION_CONFIG names a config file (here: the same cluster and namespace).
        backend_, rest = url.split("://", 1)
        endpoints, namespace = rest.split("?", 1)[0].split("/", 1)
        config = tmp_path / "env.toml"
        config.write_text(f'backend = "{backend_}"\nnamespace = "{namespace}"\n[{backend_}]\n'
                          f"endpoints = {json.dumps(endpoints.split(','))}\n")
        via_env = cli("inspect", "--json", extra_env={"COORDINATION_CONFIG": str(config)})
        assert via_env.returncode == 0, via_env.stderr
        assert json.loads(via_env.stdout)["locks"][0]["name"] == "shop/sku-1"
        claimed.ack()
    finally:
        holder.release()
        thread.join(timeout=30)


# --- errors ----------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("args, message", [
    (["inspect", "--url", "foo://127.0.0.1:1/x"], "unknown scheme"),
    (["inspect", "--url", "not a url"], "malformed URL"),
    (["queue", "stats", "q", "--url", "etcd://127.0.0.1:{port}/x?connect_timeout=1"],
     "etcd did not answer"),
    (["lock", "x", "--url", "zookeeper://127.0.0.1:{port}/x?connect_timeout=1", "--", "true"],
     "no ZooKeeper server"),
    (["inspect", "--config", "missing.toml"], "not found"),
    (["inspect"], "no configuration"),
    (["lock", "/bad", "--url", "etcd://127.0.0.1:{port}/x", "--", "true"], "must not start"),
    (["queue", "put", "a//b", "x", "--url", "etcd://127.0.0.1:{port}/x"], "empty segment"),
    (["cluster", "status"], "no local cluster"),
    (["worker", "q", "--handler", "no_such_module:handle", "--url", "etcd://127.0.0.1:{port}/x"],
     "cannot import handler module 'no_such_module': ModuleNotFoundError"),
    (["worker", "q", "--handler", "json:no_such_function", "--url", "etcd://127.0.0.1:{port}/x"],
     "module 'json' has no 'no_such_function'"),
    (["worker", "q", "--handler", "json", "--url", "etcd://127.0.0.1:{port}/x"],
     "--handler must be module:function"),
])
def test_errors_are_one_line_without_traceback(cli: Run, args: list[str], message: str | None) -> None:
    port = _closed_port()
    proc = cli(*(arg.format(port=port) for arg in args))
    line = one_line_error(proc)
    assert proc.returncode == 1
    if message is not None:
        assert message in line


def test_usage_errors_exit_2(cli: Run) -> None:
    proc = cli("queue", "put", "only-a-name")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


# --- the demo --------------------------------------------------------------------------------


def _ports(text: str) -> list[int]:
    match = re.search(r"cluster up at \w+://([\d.:,]+)/", text)
    assert match, text
    return [int(endpoint.rsplit(":", 1)[1]) for endpoint in match.group(1).split(",")]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_flash_sale_demo_with_chaos_on_its_own_cluster(backend: str, cli: Run) -> None:
    """The fenced store: per-SKU locks and a store that checks their tokens. On
    ZooKeeper only (the cart test runs the demo with chaos on both backends; locks have
    their own tests on both)."""
    if backend != "zookeeper":
        pytest.skip("the fenced demo runs on ZooKeeper; carts run on both")
    proc = cli("demo", "flash-sale", "--backend", backend, "--stock", "40", "--skus", "2",
               "--buyers", "4", "--workers", "2", "--duration", "5", "--stock-store", "fenced",
               timeout=300)
    out = proc.stdout
    print(out, proc.stderr)  # shown if the test fails
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in out + proc.stderr
    assert "OK: all 7 invariants held" in out and "BROKEN" not in out
    for invariant in ("units sold = orders completed", "stock never below zero", "no order lost",
                      "no order processed twice", "no step out of order",
                      "no illegal transition", "faults survived"):
        assert re.search(rf"{re.escape(invariant)}\s*│\s*held", out), invariant
    assert "40 sold, 40 orders completed" in out
    faults = re.search(r"(\d+) faults: ", out)
    assert faults and int(faults.group(1)) >= 1, out
    assert "(the leader)" in out  # the first fault kills the leader node
    assert re.search(r"lock wait\s*│\s*p50 [\d.]+ / p90", out)
    # Its own cluster is stopped at the end.
    assert not any(_listening(port) for port in _ports(out))


def test_flash_sale_demo_with_chaos_and_carts(backend: str, cli: Run) -> None:
    """The default stock store: carts reserved in the inventory recipe (confirmed,
    released or abandoned), orders moved through their state machine records."""
    proc = cli("demo", "flash-sale", "--backend", backend, "--stock", "40", "--skus", "3",
               "--buyers", "4", "--workers", "2", "--duration", "5", timeout=300)
    out = proc.stdout
    print(out, proc.stderr)  # shown if the test fails
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in out + proc.stderr
    assert "OK: all 8 invariants held" in out and "BROKEN" not in out
    for invariant in ("units sold = orders completed", "no SKU oversold", "no order lost",
                      "no order processed twice", "no step out of order",
                      "no illegal transition", "every hold ended once", "faults survived"):
        assert re.search(rf"{re.escape(invariant)}\s*│\s*held", out), invariant
    flat = re.sub(r"[\s│┃]+", " ", out)  # the table's cells unwrapped
    carts = re.search(r"40 sold in (\d+) carts, (\d+) orders completed", flat)
    assert carts and carts.group(1) == carts.group(2), out
    assert re.search(r"sku-1 0/0/\d+, sku-2 0/0/\d+, sku-3 0/0/\d+", flat)  # sold, none held
    holds = re.search(r"(\d+) holds: (\d+) confirmed, (\d+) released, (\d+) expired", flat)
    assert holds and int(holds.group(2)) == int(carts.group(1)), out
    assert re.search(rf"{carts.group(1)} of {carts.group(1)} order records went created -> "
                     "paid -> shipped", flat)
    faults = re.search(r"(\d+) faults: ", out)
    assert faults and int(faults.group(1)) >= 1, out
    assert "(the leader)" in out
    assert re.search(r"checkout\s*│\s*p50 [\d.]+ / p90", out)
    assert "lock wait" not in out and "stale write" not in out
    assert not any(_listening(port) for port in _ports(out))


def test_flash_sale_demo_on_a_configured_cluster(cli: Run, url: str, tmp_path: Path) -> None:
    config = tmp_path / "shop.toml"
    backend, rest = url.split("://", 1)
    endpoints = rest.split("/", 1)[0].split(",")
    config.write_text(f'backend = "{backend}"\nnamespace = "sale"\n[{backend}]\n'
                      f"endpoints = {json.dumps(endpoints)}\n")
    proc = cli("demo", "flash-sale", "--config", str(config), "--stock", "12", "--skus", "3",
               "--buyers", "3", "--workers", "2", "--duration", "0", "--no-chaos",
               "--stock-store", "counter", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "starting a local" not in proc.stdout  # it used the configured cluster
    assert "12 sold, 12 orders completed" in proc.stdout
    assert "stock/sku-1=0, stock/sku-2=0, stock/sku-3=0" in proc.stdout  # the counters
    assert re.search(r"counter add\s*│\s*p50 [\d.]+ / p90", proc.stdout)
    assert "OK: all 7 invariants held" in proc.stdout


def test_flash_sale_demo_with_async_buyers(cli: Run, url: str) -> None:
    """``--async``: the buyers check out carts on ``coordination.aio``; the same verdict."""
    proc = cli("demo", "flash-sale", "--url", url.split("?")[0] + "-async", "--stock", "12",
               "--skus", "3", "--buyers", "3", "--workers", "2", "--duration", "0",
               "--no-chaos", "--async", timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in out + proc.stderr
    assert "OK: all 8 invariants held" in out
    flat = re.sub(r"[\s│┃]+", " ", out)
    carts = re.search(r"12 sold in (\d+) carts, (\d+) orders completed", flat)
    assert carts and carts.group(1) == carts.group(2), out
    bad = cli("demo", "flash-sale", "--url", url, "--async", "--stock-store", "counter",
              timeout=60)
    assert bad.returncode != 0 and "cart" in bad.stdout + bad.stderr


def test_module_and_console_script_agree() -> None:
    from coordination.cli import cli as group

    assert set(group.commands) == {"cluster", "demo", "lock", "queue", "worker", "inspect", "top"}
    assert os.path.exists(Path(coordination.__file__).parent / "__main__.py")


def test_cluster_up_secure(cli: Run, cluster_dir: Path, tmp_path: Path) -> None:
    """`cluster up --secure`: a TLS cluster with users; the config file it writes is the
    app user's (TLS files and a password_file) and works for the other commands; no
    output shows the password."""
    up = cli("cluster", "up", "--backend", "etcd", "--secure", "--dir", str(cluster_dir),
             timeout=120)
    assert up.returncode == 0, up.stderr
    url = up.stdout.strip()
    assert url.startswith("etcd://app@") and "/app?" in url and "tls=true" in url
    config = (tmp_path / "cwd" / "coordination.toml").read_text()
    assert "tls = true" in config and "password_file" in config
    password = (cluster_dir / "tls" / "app.password").read_text().strip()
    outputs = [up.stdout + up.stderr, config]
    for args in (("queue", "put", "jobs", "hello"), ("queue", "stats", "jobs", "--json"),
                 ("lock", "nightly", "--", "true"), ("inspect",), ("cluster", "status"),
                 ("queue", "stats", "jobs", "--url", url)):
        proc = cli(*args)
        assert proc.returncode == 0, (args, proc.stderr)
        outputs.append(proc.stdout + proc.stderr)
    assert json.loads(outputs[3])["pending"] == 1
    bad = cli("queue", "stats", "jobs", "--url", url.replace("app@", "other@"))
    outputs.append(one_line_error(bad))  # the app's password file, as user other
    assert not [out for out in outputs if password in out]
    assert cli("cluster", "down").returncode == 0


def test_flash_sale_demo_on_a_secured_cluster(cli: Run) -> None:
    """`--secure`: the sale runs as the app user over TLS, chaos included, and every
    invariant holds; the servers are gone afterwards."""
    proc = cli("demo", "flash-sale", "--secure", "--stock", "30", "--skus", "2",
               "--buyers", "3", "--workers", "2", "--duration", "4", timeout=300)
    out = proc.stdout
    print(out, proc.stderr)  # shown if the test fails
    assert proc.returncode == 0, out + proc.stderr
    assert "(TLS, user app)" in out and "OK: all 8 invariants held" in out
    assert not any(_listening(port) for port in _ports(out))
