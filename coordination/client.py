"""The entry point: :func:`connect` returns a :class:`Coordinator` for one cluster."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from .backends.base import Backend
from .config import Config
from .errors import ConfigError
from .events import EventListener, TaskHooks
from .recipes.counter import Counter
from .recipes.election import Election
from .recipes.inventory import Inventory
from .recipes.lock import Lock
from .recipes.multilock import MultiLock
from .recipes.queue import Queue
from .recipes.queue.codec import Codec
from .recipes.rwlock import RWLock
from .recipes.semaphore import Semaphore
from .recipes.statemachine import StateRecord
from .session import Listener, SessionState


def _open_backend(config: Config) -> Backend:
    """Import the backend's client library only when it is used."""
    try:
        if config.backend == "zookeeper":
            from .backends.zookeeper import ZooKeeperBackend

            return ZooKeeperBackend(config)
        from .backends.etcd import EtcdBackend

        return EtcdBackend(config)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"the {config.backend} backend needs its extra: pip install "
            f"'coordination[{config.backend}]' ({exc})"
        ) from None


class Coordinator:
    """A connection to one ZooKeeper ensemble or etcd cluster, within one namespace.

    Thread-safe. Recipes created from it share its session (ZooKeeper session / etcd
    lease). ``close()`` ends the session, which releases everything it held.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._backend = _open_backend(config)

    def __repr__(self) -> str:
        return f"<Coordinator {self.config.url} {self.session_state.value}>"

    @property
    def backend(self) -> str:
        """``"zookeeper"`` or ``"etcd"``."""
        return self.config.backend

    @property
    def namespace(self) -> str:
        return self.config.namespace

    @property
    def driver(self) -> Backend:
        """The backend driver (:class:`~coordination.backends.base.Backend`) under the
        recipes: for tools such as :mod:`coordination.inspect` and for tests. Recipes
        are the API; the driver's contract is that of ``base.py``."""
        return self._backend

    @property
    def session_state(self) -> SessionState:
        if self._backend.closed:
            return SessionState.CLOSED
        return self._backend.session().state

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(state)`` on every session state change."""
        self._backend.add_listener(listener)

    def add_event_listener(self, listener: EventListener) -> None:
        """Call ``listener(event)`` for everything this coordinator's recipes and
        connection tell: lock waits and holds, queue deliveries and settlements,
        conflicts, retries, session changes (see :mod:`coordination.events`). Quick and
        non-blocking, please: it runs in the thread where the event happened."""
        self._backend.events.add(listener)

    def remove_event_listener(self, listener: EventListener) -> None:
        self._backend.events.remove(listener)

    def add_task_hooks(self, hooks: TaskHooks) -> None:
        """Run ``hooks`` around every put, worker-loop handler and settlement of this
        coordinator's queues (see :class:`coordination.events.TaskHooks`; used by
        ``coordination.tracing``)."""
        self._backend.events.add_hooks(hooks)

    def lock(
        self,
        name: str,
        timeout: float | None = None,
        *,
        raw_prefix: bool = False,
        identifier: str | bytes = b"",
        node_style: str | None = None,
        reentrant: bool = False,
    ) -> Lock:
        """A fair, fenced lock. ``timeout`` is the default for ``with``.

        ``raw_prefix=True`` takes ``name`` verbatim as the etcd key prefix or ZooKeeper
        path used by foreign clients (``etcdctl lock NAME``, Go ``concurrency.Mutex``,
        kazoo ``Lock(path)``), outside the namespace. ``node_style="curator"`` names
        ZooKeeper nodes like Curator's ``InterProcessMutex`` (default: kazoo's naming; the
        other backend has one naming, and takes no ``node_style``). ``reentrant=True``: the
        holding thread may acquire again and must release as many times.
        """
        self._backend.check_open()
        return Lock(
            self._backend, name, timeout, raw_prefix=raw_prefix, identifier=identifier,
            node_style=node_style, reentrant=reentrant,
        )

    def multi_lock(self, names: Iterable[str], timeout: float | None = None) -> MultiLock:
        """All the locks of ``names`` or none, taken in one global order so that
        multi-locks over overlapping names never deadlock; ``held.tokens[name]`` is each
        name's fencing token. The same locks as ``lock(name)``. ``timeout`` is the
        default for ``with``."""
        self._backend.check_open()
        return MultiLock(lambda name: Lock(self._backend, name), names, timeout)

    def inventory(self, name: str) -> Inventory:
        """Stock with all-or-none reservations that expire by themselves (see
        :mod:`coordination.recipes.inventory`)."""
        self._backend.check_open()
        return Inventory(self._backend, name)

    def record(self, name: str, transitions: Mapping[str, Iterable[str]],
               history: int = 10) -> StateRecord:
        """A record that moves only along ``transitions`` (state -> allowed next states),
        each move a compare-and-set with a fencing token (see
        :mod:`coordination.recipes.statemachine`)."""
        self._backend.check_open()
        return StateRecord(self._backend, name, transitions, history)

    def counter(self, name: str) -> Counter:
        """A linearizable integer, 0 until written (see :mod:`coordination.recipes.counter`)."""
        self._backend.check_open()
        return Counter(self._backend, name)

    def rwlock(self, name: str, *, raw_prefix: bool = False) -> RWLock:
        """A fair read-write lock: ``with rw.read(timeout=5):`` / ``with rw.write(...)``.
        ``raw_prefix=True``: the verbatim ZooKeeper path of kazoo's ReadLock/WriteLock."""
        self._backend.check_open()
        return RWLock(self._backend, name, raw_prefix=raw_prefix)

    def semaphore(self, name: str, permits: int) -> Semaphore:
        """At most ``permits`` holders at once; every client of ``name`` must pass the
        same ``permits`` (else ``PermitsMismatch``)."""
        self._backend.check_open()
        return Semaphore(self._backend, name, permits)

    def election(self, name: str, *, raw_prefix: bool = False) -> Election:
        """Leader election: ``campaign(value)``, ``leader()``, ``resign()``, ``observe``."""
        self._backend.check_open()
        return Election(self._backend, name, raw_prefix=raw_prefix)

    def queue(self, name: str, max_attempts: int = 5, codec: str | Codec = "bytes",
              time_limit: float | None = None) -> Queue:
        """An at-least-once work queue (see :mod:`coordination.recipes.queue`);
        ``codec="json"`` stores JSON values and gives them back as ``task.data``;
        ``time_limit``: seconds a claim may be held before any consumer takes the task
        back (default: as long as the worker's session lives)."""
        self._backend.check_open()
        return Queue(self._backend, name, max_attempts=max_attempts, codec=codec,
                     time_limit=time_limit)

    def close(self) -> None:
        """End the session (releasing its locks at once). Idempotent."""
        self._backend.close()

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    url: str | None = None, *, config: str | os.PathLike[str] | None = None, **overrides: Any
) -> Coordinator:
    """Connect to the cluster named by ``url``, else by the TOML file ``config``, else
    by ``$COORDINATION_CONFIG``, else by ``./coordination.toml``.

    ``overrides`` replace settings (``session_ttl``, ``namespace``, ...). Raises
    ``ConfigError`` for a bad configuration and ``BackendUnavailable`` if no server
    answers within ``connect_timeout``.
    """
    return Coordinator(Config.resolve(url, config, **overrides))
