"""Child process for multi-process counter tests.

``counter_worker.py URL NAME THREADS ATTEMPTS``: THREADS threads each try ATTEMPTS
times ``add(-1, min=0)`` on the counter NAME. Prints ``ready`` once connected and
starts when a line arrives on stdin (so that all processes run at once); then prints
one JSON line: the values the successful adds returned, and how many were refused.
"""

from __future__ import annotations

import json
import sys
import threading

import coordination


def main() -> None:
    url, name, threads, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    returned: list[int] = []
    refused = [0]
    guard = threading.Lock()
    start = threading.Barrier(threads + 1)
    with coordination.connect(url) as coord:

        def run() -> None:
            counter = coord.counter(name)
            start.wait()
            for _ in range(attempts):
                try:
                    value = counter.add(-1, min=0)
                except coordination.errors.BoundExceeded:
                    with guard:
                        refused[0] += 1
                else:
                    with guard:
                        returned.append(value)

        workers = [threading.Thread(target=run) for _ in range(threads)]
        for worker in workers:
            worker.start()
        print("ready", flush=True)
        sys.stdin.readline()
        start.wait()
        for worker in workers:
            worker.join()
    print(json.dumps({"returned": returned, "refused": refused[0]}), flush=True)


if __name__ == "__main__":
    main()
