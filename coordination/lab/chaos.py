"""The soak: random faults against a real local cluster, with every checker.

    python -m coordination.lab.chaos --backend etcd --duration 600 --seed 7

Rounds alternate between the lock workload (buyers decrementing a fenced inventory) and
the queue workload (producers and consumers); each round injects one to three faults
drawn from the seeded schedule. Prints the schedule, the faults injected and each
checker's verdict; on a violation prints the seed and the failing part of the history
and exits with status 1.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from . import nemesis, peercut
from .cluster import LocalCluster
from .scenario import run_lock_scenario, run_queue_scenario

LOCK_FAULTS = {**nemesis.SERVER_FAULTS, **nemesis.NETWORK_FAULTS, **nemesis.LOCK_CLIENT_FAULTS}
QUEUE_FAULTS = {**nemesis.SERVER_FAULTS, **nemesis.NETWORK_FAULTS,
                "worker-kill": nemesis.worker_kill}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coordination.lab.chaos", description=__doc__)
    parser.add_argument("--backend", choices=["etcd", "zookeeper"], default="etcd")
    parser.add_argument("--duration", type=float, default=600, help="seconds (default 600)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--ttl", type=float, default=2.0, help="session TTL of the workers")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"chaos soak: backend={args.backend} duration={args.duration:g}s seed={seed}",
          flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="coordination-chaos-"))
    failures = rounds = 0
    started = time.monotonic()
    skipped = set() if peercut.unavailable() is None else set(nemesis.PEER_CUTS)
    if skipped:
        print(f"not scheduled: {', '.join(sorted(skipped))} ({peercut.unavailable()})")
    if args.backend != "etcd":
        skipped |= nemesis.ETCD_ONLY
        print(f"not scheduled: {', '.join(sorted(nemesis.ETCD_ONLY))} (etcd only)")
    with LocalCluster(args.backend, nodes=3, workdir=workdir / "cluster",
                      cgroups=True) as cluster:
        while time.monotonic() - started < args.duration:
            rounds += 1
            kind = "lock" if rounds % 2 else "queue"
            table = LOCK_FAULTS if kind == "lock" else QUEUE_FAULTS
            names = rng.sample(sorted(set(table) - skipped), k=rng.randint(1, 3))
            print(f"round {rounds} ({kind}): schedule {', '.join(names)}", flush=True)
            run = run_lock_scenario if kind == "lock" else run_queue_scenario
            round_dir = workdir / f"round{rounds}"
            verdict = run(cluster, "+".join(names), [table[n] for n in names], round_dir,
                          ttl=args.ttl, seed=rng.randrange(1 << 30))
            print(verdict.report(), flush=True)
            if not verdict.ok:
                failures += 1
                print(f"VIOLATION with seed {seed} in round {rounds}; histories in {round_dir}",
                      flush=True)
            cluster.wait_healthy()
    print(f"{rounds} rounds, {failures} with violations, seed {seed}; work dir {workdir}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
