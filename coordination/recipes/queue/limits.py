"""The numbers that shape a queue: the bounds ``put`` enforces and the timings and
bucket widths the recipe runs with.

The other modules read them at call time (``limits.DEDUPE_WINDOW``), never copy them,
so that a test can change one with ``monkeypatch.setattr(limits, ...)``.
"""

from __future__ import annotations

MIN_PRIORITY, MAX_PRIORITY = -100, 100
#: Safe payload size: below ZooKeeper's 1 MiB packet and etcd's 1.5 MiB request limit.
MAX_PAYLOAD = 900 * 1024
#: How long an acked task's id is remembered: a put with that id meanwhile stores nothing.
DEDUPE_WINDOW = 300.0
#: While tasks are ready, a consumer promotes due delayed tasks and reaps lost claims at
#: most this often (seconds); an idle consumer does it before every wait.
MAINTAIN_EVERY = 0.1
#: Tasks claimed or acked in one commit (4 operations each: etcd allows 128 a
#: transaction).
BATCH = 30
#: Ready and delayed keys sit in two levels of time buckets (100 s, then 0.1 s), so no
#: ZooKeeper listing nears its 1 MB packet limit, even with a million waiting tasks.
OUTER_NS, INNER_NS = 10**11, 10**8
