"""Child process for multi-process semaphore tests.

``semaphore_worker.py URL NAME PERMITS COUNT OUTFILE``: take a permit of NAME COUNT
times, appending ``pid token start end`` (CLOCK_MONOTONIC, shared by all processes on
Linux) for every hold to OUTFILE. With COUNT 0: take one permit, print its token, hold
it forever.
"""

from __future__ import annotations

import os
import random
import sys
import time

import coordination


def main() -> None:
    url, name, permits, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with coordination.connect(url) as coord:
        semaphore = coord.semaphore(name, permits=permits)
        if count == 0:
            permit = semaphore.acquire(timeout=30)
            print(permit.token, flush=True)
            while True:
                time.sleep(60)
        with open(sys.argv[5], "a", buffering=1) as out:
            for _ in range(count):
                with semaphore.acquire(timeout=60) as permit:
                    start = time.monotonic()
                    time.sleep(random.uniform(0.002, 0.015))
                    end = time.monotonic()
                out.write(f"{os.getpid()} {permit.token} {start:.9f} {end:.9f}\n")


if __name__ == "__main__":
    main()
