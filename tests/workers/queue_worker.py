"""Child process for multi-process queue tests.

``queue_worker.py URL QUEUE OUTFILE``: claim tasks forever; for each, append
``claimed ID TOKEN KEY DATA`` to OUTFILE, work a little, ack, then append ``acked ID``.
The test SIGKILLs it at random points.
"""

from __future__ import annotations

import random
import sys
import time

import coordination


def main() -> None:
    url, name, outfile = sys.argv[1], sys.argv[2], sys.argv[3]
    with coordination.connect(url) as coord, open(outfile, "a", buffering=1) as out:
        queue = coord.queue(name, max_attempts=50)
        while True:
            task = queue.get(timeout=30)
            if task is None:
                continue
            out.write(f"claimed {task.id} {task.token} {task.key} {task.data.decode()}\n")
            time.sleep(random.uniform(0, 0.01))
            task.ack()
            out.write(f"acked {task.id}\n")


if __name__ == "__main__":
    main()
