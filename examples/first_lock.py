"""A first example: a tiny flash sale on a local 3-node cluster that it starts itself.

Four buyer processes race for 40 units of one SKU. Each purchase takes the SKU's lock
and writes the new stock to a fenced store that rejects any write whose fencing token is
not larger than the last one it accepted. At the end: no unit oversold, every write
accepted in token order.

    python examples/first_lock.py [--backend etcd|zookeeper]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path

import coordination
from coordination.lab.cluster import LocalCluster

STOCK = 40
BUYERS = 4


class FencedStock:
    """The protected resource: a file that only accepts writes with a larger token."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, int]:
        return json.loads(self.path.read_text())

    def write(self, stock: int, token: int) -> None:
        state = self.read()
        if token <= state["token"]:
            raise RuntimeError(f"stale token {token} <= {state['token']}: write rejected")
        self.path.write_text(json.dumps({"stock": stock, "token": token}))


def buyer(url: str, store_path: str, results: multiprocessing.Queue) -> None:
    store, bought = FencedStock(Path(store_path)), 0
    with coordination.connect(url) as coord:
        lock = coord.lock("inventory/sku-42")
        while True:
            with lock:
                stock = store.read()["stock"]
                if stock == 0:
                    break
                store.write(stock - 1, lock.token)  # the token goes with every write
                bought += 1
    results.put((os.getpid(), bought))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["etcd", "zookeeper"], default="etcd")
    args = parser.parse_args()
    print(f"starting a local 3-node {args.backend} cluster ...", flush=True)
    with LocalCluster(args.backend, nodes=3) as cluster:
        url = f"{cluster.url}/demo"
        print(f"cluster up at {url}")
        store_path = Path(cluster.workdir) / "stock.json"
        store_path.write_text(json.dumps({"stock": STOCK, "token": -1}))
        results: multiprocessing.Queue = multiprocessing.Queue()
        started = time.monotonic()
        procs = [
            multiprocessing.Process(target=buyer, args=(url, str(store_path), results))
            for _ in range(BUYERS)
        ]
        for proc in procs:
            proc.start()
        sales = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join()
        elapsed = time.monotonic() - started
        final = FencedStock(store_path).read()
    sold = sum(bought for _pid, bought in sales)
    for pid, bought in sorted(sales):
        print(f"  buyer {pid}: {bought} units")
    ok = sold == STOCK and final["stock"] == 0
    print(f"sold {sold} of {STOCK} units in {elapsed:.1f}s; stock left {final['stock']}; "
          f"last fencing token {final['token']}")
    print("OK: nothing oversold, every write fenced" if ok else "FAILED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
