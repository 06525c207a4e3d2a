"""The benchmark's report: ratios first (measured in the same run), then the figures.

A lock cycle needs at least two consensus writes (create, delete) and a task three
(put, claim, ack), so the limits are the raw single-key write rate divided by 2 or 3.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

Doc = dict[str, Any]


def _rate(entry: Any, field: str = "rate") -> float:
    if not isinstance(entry, dict) or field not in entry:
        return math.nan
    return float(entry[field]["median"])


def _fmt(value: float, digits: int = 0) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _ratio(ours: float, theirs: float) -> str:
    if math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def _spread(entry: Any, field: str = "rate") -> str:
    if not isinstance(entry, dict):
        return "n/a"
    if "error" in entry:
        return "failed"
    if field not in entry:
        return "n/a"
    fig = entry[field]
    return f"{fig['median']:,.0f} ({fig['low']:,.0f}-{fig['high']:,.0f})"


def _ours(rows: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return next((label, row) for label, row in rows.items() if row.get("ours"))


def _peers(rows: dict[str, Any], reference: bool = False) -> dict[str, Any]:
    return {label: row for label, row in rows.items()
            if not row.get("ours") and bool(row.get("reference")) == reference}


def targets(backend: str, data: Doc) -> list[tuple[str, str, bool | None]]:
    """``(target, measured, met)`` for the issue's targets on one backend."""
    raw1, raw8 = _rate(data["raw"].get("1")), _rate(data["raw"].get("8"))
    _label, ours = _ours(data["locks"])
    peers = _peers(data["locks"])
    rows: list[tuple[str, str, bool | None]] = []
    main_peer = "kazoo Lock" if backend == "zookeeper" else "etcd-sdk-python Lock"
    want = 1.5 if backend == "zookeeper" else 1.3
    peer = peers.get(main_peer, {})
    ratio = _rate(ours.get("1")) / _rate(peer.get("1"))
    rows.append((f"uncontended cycle >= {want}x {main_peer} (on a follower)",
                 f"{ratio:.2f}x{_noise(ours.get('1'), peer.get('1'))}", _met(ratio, want)))
    on_leader = "1 on the leader"
    if on_leader in ours:
        ratio = _rate(ours.get(on_leader)) / _rate(peer.get(on_leader))
        rows.append((f"uncontended cycle vs {main_peer}, both on the leader (for reference)",
                     f"{ratio:.2f}x{_noise(ours.get(on_leader), peer.get(on_leader))}", None))
    limit = _rate(ours.get("1")) / (raw1 / 2)
    rows.append(("uncontended cycle >= 0.85 of the two-write limit", f"{limit:.2f}",
                 _met(limit, 0.85)))
    best = max((_rate(row.get("32")) for row in peers.values()), default=math.nan)
    ratio = _rate(ours.get("32")) / best
    rows.append(("32 contenders >= 1.5x the best peer", f"{ratio:.2f}x", _met(ratio, 1.5)))
    handoff = ours.get("32", {}).get("handoff_p99_ms", math.nan)
    write_p99 = data["raw"].get("1", {}).get("p99_ms", math.nan)
    ratio = handoff / write_p99
    rows.append(("hand-off p99 at 32 <= 3x single-write p99", f"{ratio:.2f}x", _met(3.0, ratio)))
    # A herd would wake every waiter per release: about 31 notifications per acquire.
    notified = ours.get("32", {}).get("notifications_per_acquire", math.nan)
    asked = ours.get("32", {}).get("requests_per_acquire", math.nan)
    rows.append(("no herd at 32: watch notifications per acquire <= 2",
                 f"{notified:.2f} ({asked:.1f} requests)", _met(2.0, notified)))
    _q, our_queue = _ours(data["queues"])
    if backend == "zookeeper":
        peer = _rate(data["queues"].get("kazoo LockingQueue", {}).get("8x8"), "takes")
        ratio = _rate(our_queue.get("8x8"), "takes") / peer
        rows.append(("queue get+ack 8x8 >= 5x kazoo LockingQueue", f"{ratio:.2f}x",
                     _met(ratio, 5.0)))
    limit = _rate(our_queue.get("8x8"), "takes") / (raw8 / 3)
    rows.append(("queue get+ack 8x8 >= 0.5 of the three-write limit (8 clients)",
                 f"{limit:.2f}", _met(limit, 0.5)))
    batched = _rate(our_queue.get("8x8 batched"), "takes")
    want = 2000.0 if backend == "etcd" else 1000.0
    rows.append((f"batched 8x8 end to end >= {want:,.0f} tasks/s", f"{batched:,.0f}",
                 _met(batched, want)))
    redis = next((row for row in data["queues"].values() if row.get("reference")), {})
    ratio = batched / _rate(redis.get("8x8 batched"), "takes")
    rows.append(("batched 8x8 >= 0.5x the Redis queue (unsafe) batched", f"{ratio:.2f}x",
                 _met(ratio, 0.5)))
    rows += _cart_targets(data) + _overhead_targets(data)
    depth = data["depth"]
    if "1000000" in depth and "10000" in depth:
        ratio = depth["1000000"].get("p99_ms", math.nan) / depth["10000"].get("p99_ms", math.nan)
        rows.append(("get p99 at 1,000,000 waiting <= 2x at 10,000", f"{ratio:.2f}x",
                     _met(2.0, ratio)))
    return rows


def _cart_targets(data: Doc) -> list[tuple[str, str, bool | None]]:
    """Issue 18: 32 buyers on one hot SKU against one client's raw writes."""
    cart_rows = data.get("carts")
    if not isinstance(cart_rows, dict) or "error" in cart_rows:
        return []
    hot = _rate(cart_rows.get("one hot SKU", {}).get("inventory"))
    ratio = hot / _rate(data["raw"].get("1"))
    return [("32 buyers on ONE hot SKU reserve >= 0.5 of one client's raw writes/s",
             f"{ratio:.2f} ({hot:,.0f}/s)", _met(ratio, 0.5))]


def _overhead_targets(data: Doc) -> list[tuple[str, str, bool | None]]:
    """Issue 19: our figures with every client measured, over the same without."""
    cost = data.get("metrics")
    if not isinstance(cost, dict) or "error" in cost:
        return []
    rows: list[tuple[str, str, bool | None]] = []
    for what, label in (("lock", "lock cycles/s, 1 contender"), ("queue", "queue get+ack/s, 1x1")):
        ratio = _rate(cost, f"{what} on") / _rate(cost, f"{what} off")
        rows.append((f"{label} with metrics and tracing on >= 0.95 of off", f"{ratio:.2f} "
                     f"({_spread(cost, f'{what} on')} vs {_spread(cost, f'{what} off')})",
                     _met(ratio, 0.95)))
    return rows


def _cart_table(cart_rows: Any) -> list[str]:
    if not isinstance(cart_rows, dict):
        return []
    if "error" in cart_rows:
        return ["", f"- cart reservations failed: {cart_rows['error']}"]
    out = ["", "| carts reserved/s, 32 buyers, 8 hot SKUs | inventory | a counter per line | "
           "a lock per SKU | inventory / counters | inventory / locks |",
           "|---|---|---|---|---|---|"]
    for size, row in cart_rows.items():
        if size == "one hot SKU":
            continue
        ours = _rate(row.get("inventory"))
        out.append(f"| carts of {size} | {_spread(row.get('inventory'))} | "
                   f"{_spread(row.get('counters'))} | {_spread(row.get('locks'))} | "
                   f"{_ratio(ours, _rate(row.get('counters')))} | "
                   f"{_ratio(ours, _rate(row.get('locks')))} |")
    hot = cart_rows.get("one hot SKU", {}).get("inventory")
    out.append(f"| 1 line, ONE hot SKU | {_spread(hot)} | | | | |")
    return out


def _aio_table(rows: Any) -> list[str]:
    """asyncio against threads (``bench/aio.py``): one coordinator, same run."""
    if not isinstance(rows, dict):
        return []
    if "error" in rows:
        return ["", f"- asyncio against threads not measured: {rows['error']}"]
    out = ["", "| one coordinator, same run, alternating | threads (sync API) | asyncio | "
           "asyncio / threads |", "|---|---|---|---|"]
    for n in ("32", "256"):
        row = rows.get(n, {})
        threads, tasks = row.get("threads", {}), row.get("asyncio", {})
        out += [f"| lock, {n} contenders: cycles/s | {_spread(threads)} | {_spread(tasks)} | "
                f"{_ratio(_rate(tasks), _rate(threads))} |",
                f"| lock, {n} contenders: hand-off p99 (ms) | "
                f"{_fmt(threads.get('handoff_p99_ms', math.nan), 1)} | "
                f"{_fmt(tasks.get('handoff_p99_ms', math.nan), 1)} | |",
                f"| lock, {n} contenders: threads, resident MB (highest) | "
                f"{threads.get('threads', '-')}, {_fmt(threads.get('rss_mb', math.nan))} | "
                f"{tasks.get('threads', '-')}, {_fmt(tasks.get('rss_mb', math.nan))} | |"]
    flow = rows.get("8x8", {})
    threads = flow.get("threads", {})
    for api in ("asyncio", "asyncio, 16 workers"):
        tasks = flow.get(api, {})
        out.append(f"| queue 8x8 get+ack/s ({api}) | {_spread(threads)} | {_spread(tasks)} | "
                   f"{_ratio(_rate(tasks), _rate(threads))} |")
    out.append(f"| queue 8x8: threads, resident MB (highest) | {threads.get('threads', '-')}, "
               f"{_fmt(threads.get('rss_mb', math.nan))} | {flow.get('asyncio', {}).get('threads', '-')}"
               f", {_fmt(flow.get('asyncio', {}).get('rss_mb', math.nan))} | |")
    return out


def _noise(ours: Any, theirs: Any) -> str:
    """`` (ranges overlap)`` when the two figures' min-max ranges overlap: their ratio
    is then within the noise of the run."""
    try:
        a, b = ours["rate"], theirs["rate"]
    except (KeyError, TypeError):
        return ""
    return " (ranges overlap)" if a["low"] <= b["high"] and b["low"] <= a["high"] else ""


def _met(value: float, bound: float) -> bool | None:
    return None if math.isnan(value) or math.isnan(bound) else value >= bound


def markdown(doc: Doc) -> str:
    meta = doc["meta"]
    out = [f"Command: `{meta['command']}` ({meta['date']}, {meta['machine']}, Python "
           f"{meta['python']}; {meta['reps']} repetitions of {meta['duration_s']:g} s per "
           f"figure, median (min-max); whole run {meta.get('total_s', 0):.0f} s).", ""]
    for backend, data in doc["results"].items():
        out += [f"### {backend}", "", "| target | measured | met |", "|---|---|---|"]
        out += [f"| {t} | {m} | {'yes' if ok else 'no' if ok is False else 'n/a'} |"
                for t, m, ok in targets(backend, data)]
        raw = data["raw"]
        out += ["", "Raw single-key writes/s (the limit): " + ", ".join(
            f"{c} client{'s' if c != '1' else ''} {_spread(raw.get(c))}" for c in ("1", "8", "32"))
            + f"; single-write p50/p99 {_fmt(raw.get('1', {}).get('p50_ms', math.nan), 2)}/"
            f"{_fmt(raw.get('1', {}).get('p99_ms', math.nan), 2)} ms.", ""]
        pinned = data.get("pinned")
        if pinned:
            out += [f"Every client on one follower ({pinned['follower']}) unless marked; "
                    f"the leader was {pinned['leader']}. Lock figures: repetitions "
                    "interleaved across the subjects.", ""]
        out += ["| lock | cycles/s, 1 | 1, on the leader | 8 contenders | 32 contenders | "
                "hand-off p50/p99 at 32 (ms) | server requests / acquire at 32 | watch "
                "notifications / acquire at 32 |",
                "|---|---|---|---|---|---|---|---|"]
        for label, row in data["locks"].items():
            at32 = row.get("32", {})
            out.append(
                f"| {label} | {_spread(row.get('1'))} | {_spread(row.get('1 on the leader'))} | "
                f"{_spread(row.get('8'))} | "
                f"{_spread(at32)} | {_fmt(at32.get('handoff_p50_ms', math.nan), 1)} / "
                f"{_fmt(at32.get('handoff_p99_ms', math.nan), 1)} | "
                f"{_fmt(at32.get('requests_per_acquire', math.nan), 1)} | "
                f"{_fmt(at32.get('notifications_per_acquire', math.nan), 2)} |")
        out += ["", "| queue | put/s 1x1 | get+ack/s 1x1 | put/s 8x8 | get+ack/s 8x8 | "
                "batched put tasks/s | 8x8 batched end to end (acked/s) |",
                "|---|---|---|---|---|---|---|"]
        for label, row in data["queues"].items():
            out.append(f"| {label} | {_spread(row.get('1x1'), 'puts')} | "
                       f"{_spread(row.get('1x1'), 'takes')} | {_spread(row.get('8x8'), 'puts')} | "
                       f"{_spread(row.get('8x8'), 'takes')} | {_spread(row.get('batch'))} | "
                       f"{_spread(row.get('8x8 batched'), 'takes')} |")
        tls = data.get("tls")
        if isinstance(tls, dict) and "error" not in tls:
            out += ["", "| ours, same run, alternating | plaintext | TLS + client cert + user | "
                    "TLS / plaintext |", "|---|---|---|---|"]
            for what, label in (("lock", "lock cycles/s, 1 contender"),
                                ("queue", "queue get+ack/s, 1x1")):
                out.append(f"| {label} | {_spread(tls, f'{what} plain')} | "
                           f"{_spread(tls, f'{what} secured')} | "
                           f"{_ratio(_rate(tls, f'{what} secured'), _rate(tls, f'{what} plain'))} |")
        elif isinstance(tls, dict):
            out += ["", f"- over TLS + auth not measured: {tls['error']}"]
        out += _cart_table(data.get("carts"))
        out += _aio_table(data.get("aio"))
        if data["depth"]:
            out += ["", "| waiting tasks | get p50 (ms) | get p99 (ms) | fill time (s) |",
                    "|---|---|---|---|"]
            for depth, row in data["depth"].items():
                out.append(f"| {int(depth):,} | {_fmt(row.get('p50_ms', math.nan), 2)} | "
                           f"{_fmt(row.get('p99_ms', math.nan), 2)} | "
                           f"{_fmt(row.get('fill_s', math.nan), 0)} |")
        errors = [f"{label} not measured: {row['unavailable']}" for section in ("locks", "queues")
                  for label, row in data[section].items() if row.get("unavailable")]
        errors += [f"{label} {key} failed: {entry['error']}" for section in ("locks", "queues")
                  for label, row in data[section].items() for key, entry in row.items()
                  if isinstance(entry, dict) and "error" in entry]
        out += [""] + [f"- {error}" for error in errors] + ([""] if errors else [])
    return "\n".join(out) + "\n"


def plots(doc: Doc, out: Path) -> list[Path]:
    """Lock throughput vs contenders, hand-off latency percentiles, get latency vs depth."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    backends = list(doc["results"])
    fig, axes = plt.subplots(1, len(backends), figsize=(6 * len(backends), 4), squeeze=False)
    for ax, backend in zip(axes[0], backends):
        for label, row in doc["results"][backend]["locks"].items():
            xs = [n for n in (1, 8, 32) if not math.isnan(_rate(row.get(str(n))))]
            ax.plot(xs, [_rate(row.get(str(n))) for n in xs], marker="o", label=label,
                    linewidth=3 if row.get("ours") else 1.5)
        ax.set(title=f"{backend}: lock cycles/s", xlabel="contenders", xscale="log", yscale="log")
        ax.set_xticks([1, 8, 32], ["1", "8", "32"])
        ax.legend(fontsize=8)
    written.append(_save(fig, out / "locks_throughput.png"))
    fig, axes = plt.subplots(1, len(backends), figsize=(6 * len(backends), 4), squeeze=False)
    for ax, backend in zip(axes[0], backends):
        rows = doc["results"][backend]["locks"]
        labels = list(rows)
        p50 = [rows[lb].get("32", {}).get("handoff_p50_ms", math.nan) for lb in labels]
        p99 = [rows[lb].get("32", {}).get("handoff_p99_ms", math.nan) for lb in labels]
        xs = list(range(len(labels)))
        ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50")
        ax.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99")
        ax.set_xticks(list(xs), labels, rotation=20, fontsize=8)
        ax.set(title=f"{backend}: hand-off at 32 contenders (ms)", yscale="log")
        ax.legend()
    written.append(_save(fig, out / "locks_handoff.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for backend in backends:
        depth = doc["results"][backend]["depth"]
        xs = [int(d) for d in depth if "p99_ms" in depth[d]]
        if xs:
            ax.plot([max(x, 1) for x in xs], [depth[str(x)]["p99_ms"] for x in xs], marker="o",
                    label=f"{backend} p99")
            ax.plot([max(x, 1) for x in xs], [depth[str(x)]["p50_ms"] for x in xs], marker=".",
                    linestyle="--", label=f"{backend} p50")
    ax.set(title="queue get latency vs waiting tasks (ms)", xlabel="waiting tasks",
           xscale="log")
    ax.legend()
    written.append(_save(fig, out / "queue_depth.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
