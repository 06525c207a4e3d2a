"""What bounds queue get+ack with 8 producers x 8 consumers: the three commits a task
takes (put, claim, ack), as the queue writes them, by 8 clients, with nothing else (no
listing, no lost races, no upkeep), against raw single-key writes by 8 clients on the
same cluster, repetitions alternating. ``python -m bench.floor --backend etcd``.

The ratio to the three-write limit that these commits alone reach is the most the queue
flow can reach on that cluster: a task cannot take fewer than these three commits.
``--batch 30`` runs them 30 tasks a commit, as the batched flow (``put_many``,
``get_many``, ``ack_many``) writes them: the most tasks/s that flow can reach.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable

import click

import coordination
from coordination.backends.kv import Absent, Check, Create, Delete, Op, Present, Update, Version
from coordination.lab.cluster import LocalCluster

from .measure import run_threads
from .scenarios import raw_writes
from .subjects import Servers

#: A record as ``put`` writes it (a short payload), and as ``ack`` leaves it.
_RECORD = b'{"id":"%s","p":0,"k":null,"a":0,"s":%d,"due":0}\norder'
_TOMBSTONE = b'{"id":"%s","p":0,"k":null,"a":0,"s":%d,"due":0,"state":"done","n":"0a1b2c3d4e5f"}\n'


def _task_loop(coord: coordination.Coordinator, name: str, batch: int
               ) -> Callable[[Callable[[], bool]], None]:
    """A loop putting, claiming and acking ``batch`` tasks of its own at a time with the
    queue's commits (1: ``put``, ``get``, ``ack``; more: ``put_many``, ``get_many``,
    ``ack_many``, whose claim is one commit of nested ones, a task each)."""
    kv, session = coord.driver.kv, coord.driver.session()
    root = kv.root("queues", name)

    def run(going: Callable[[], bool]) -> None:
        while going():
            now = time.time_ns()
            tasks = [(uuid.uuid4().hex, now) for _ in range(batch)]
            keys = [(f"{root}/t/{task_id}", f"{root}/c/{task_id}", f"{root}/f/{task_id}",
                     f"{root}/r/100/{now // 10**11:010d}/{now // 10**8:013d}/{now:020d}.{task_id}",
                     f"{root}/x/{now // 10**9:011d}/{now:020d}.{task_id}")
                    for task_id, now in tasks]
            kv.commit([Absent(record) for record, *_ in keys],
                      [op for (task_id, now), (record, _c, _f, ready, _x) in zip(tasks, keys)
                       for op in (Create(record, _RECORD % (task_id.encode(), now)),
                                  Create(ready, task_id.encode(), depth=4))])
            claims: list[tuple[list[Check], list[Op]]] = [
                ([Absent(claim), Present(ready), Present(record)],
                 [Delete(ready, depth=4), Create(flight),
                  Create(claim, b"lease:nonce", ephemeral=True)])
                for record, claim, flight, ready, _x in keys]
            if batch == 1:
                claimed = kv.commit_and_get(*claims[0], [keys[0][0], keys[0][1]], session)
                assert claimed is not None
                _stamp, (read, held) = claimed
                assert read is not None and held is not None
                versions = [(read.version, held.version)]
            else:
                applied = kv.commit_each(claims, [[record, claim] for record, claim, *_ in keys],
                                         session)
                versions = []
                for outcome in applied:
                    assert outcome is not None
                    read, held = outcome[1]
                    assert read is not None and held is not None
                    versions.append((read.version, held.version))
            kv.commit([check for (record, claim, *_), (record_version, claim_version)
                       in zip(keys, versions)
                       for check in (Version(record, record_version), Version(claim, claim_version))],
                      [op for (task_id, now), (record, claim, flight, _r, done) in zip(tasks, keys)
                       for op in (Delete(claim), Delete(flight),
                                  Update(record, _TOMBSTONE % (task_id.encode(), now)),
                                  Create(done, depth=2))], session)
    return run


def three_commits(servers: Servers, clients: int, duration: float, batch: int = 1) -> float:
    """Tasks/s of ``clients`` clients each running the three commits in a loop, for
    ``batch`` tasks at a time."""
    coords = [coordination.connect(servers.url) for _ in range(clients)]
    try:
        loops = [_task_loop(coord, f"floor{i}", batch) for i, coord in enumerate(coords)]
        counted = [0] * clients

        def counting(i: int) -> Callable[[Callable[[], bool]], None]:
            def run(going: Callable[[], bool]) -> None:
                def step() -> bool:
                    counted[i] += 1
                    return going()
                loops[i](step)
            return run

        elapsed = run_threads([counting(i) for i in range(clients)], duration)
        # each loop's last check starts no round
        return (sum(counted) - clients) * batch / elapsed
    finally:
        for coord in coords:
            coord.close()


@click.command()
@click.option("--backend", type=click.Choice(["zookeeper", "etcd"]), required=True)
@click.option("--duration", default=3.0, show_default=True, help="Seconds per repetition.")
@click.option("--reps", default=3, show_default=True)
@click.option("--batch", default=1, show_default=True,
              help="Tasks a commit (30: the batched flow's claims and acks).")
def main(backend: str, duration: float, reps: int, batch: int) -> None:
    with LocalCluster(backend, nodes=3) as cluster:
        leader = cluster.wait_for_leader()
        follower = next(i for i in range(3) if i != leader)
        servers = Servers(backend, f"{cluster.url}/bench", cluster.endpoints).pinned(follower)
        raws, tasks = [], []
        for _rep in range(reps):
            raws.append(raw_writes(servers, 8, duration, 1)["rate"]["median"])
            tasks.append(three_commits(servers, 8, duration, batch))
        limit = statistics.median(raws) / 3
        print(f"{backend}: raw single-key writes/s, 8 clients: "
              f"{', '.join(f'{r:,.0f}' for r in raws)}; three-write limit {limit:,.0f} tasks/s")
        print(f"{backend}: put + claim + ack alone, {batch} a commit, 8 clients: "
              f"{', '.join(f'{t:,.0f}' for t in tasks)} tasks/s = "
              f"{statistics.median(tasks) / limit:.2f} of the three-write limit")


if __name__ == "__main__":
    main()
