"""Child process for multi-process election tests.

``election_worker.py URL NAME VALUE hold``: campaign with VALUE, print ``leader TOKEN``
once elected, and lead until killed.

``election_worker.py URL NAME VALUE cycle COUNT OUTFILE``: COUNT times: campaign, lead
a few milliseconds, resign; append ``pid token start end`` (CLOCK_MONOTONIC) for every
leadership during which ``is_leader`` stayed True to OUTFILE.
"""

from __future__ import annotations

import os
import random
import sys
import time

import coordination


def main() -> None:
    url, name, value, mode = sys.argv[1:5]
    with coordination.connect(url) as coord:
        election = coord.election(name)
        if mode == "hold":
            assert election.campaign(value.encode())
            print("leader", election.token, flush=True)
            while True:
                time.sleep(60)
        count, outfile = int(sys.argv[5]), sys.argv[6]
        with open(outfile, "a", buffering=1) as out:
            for _ in range(count):
                assert election.campaign(value.encode(), timeout=60)
                start = time.monotonic()
                time.sleep(random.uniform(0.002, 0.01))
                end = time.monotonic()
                led, token = election.is_leader, election.token
                election.resign()
                if led:
                    out.write(f"{os.getpid()} {token} {start:.9f} {end:.9f}\n")


if __name__ == "__main__":
    main()
