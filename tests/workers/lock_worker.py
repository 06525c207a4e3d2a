"""Child process for multi-process lock tests.

``lock_worker.py URL NAME COUNT OUTFILE``: acquire and release NAME COUNT times,
appending ``pid token start end`` (CLOCK_MONOTONIC, shared by all processes on Linux)
for every hold to OUTFILE. With COUNT 0: acquire once, print the token, hold forever.
"""

from __future__ import annotations

import os
import random
import sys
import time

import coordination


def main() -> None:
    url, name, count, outfile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with coordination.connect(url) as coord:
        lock = coord.lock(name)
        if count == 0:
            assert lock.acquire(timeout=30)
            print(lock.token, flush=True)
            while True:
                time.sleep(60)
        with open(outfile, "a", buffering=1) as out:
            for _ in range(count):
                with lock:
                    start = time.monotonic()
                    time.sleep(random.uniform(0, 0.003))
                    end = time.monotonic()
                    token = lock.token
                out.write(f"{os.getpid()} {token} {start:.9f} {end:.9f}\n")


if __name__ == "__main__":
    main()
