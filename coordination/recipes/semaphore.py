"""A fair counting semaphore: the lock's contender loop with a ``permits`` rule.

Holders and waiters enqueue in one contender queue, in arrival order. An entry holds a
permit while fewer than ``permits`` entries precede it; otherwise it watches the
nearest ``permits`` entries before it (it can only get in once one of those is gone),
so a release wakes at most ``permits`` waiters, never the whole queue. Entries die with
their session: a crashed holder's permit returns within one session TTL.

Every client of a name must use the same ``permits``: the first one stores it
(``semaphores/NAME``), and a different value raises ``PermitsMismatch``.
"""

from __future__ import annotations

from ..backends.base import Backend
from ..backends.contenders import Rule
from ..backends.kv import Absent, Create, OutcomeUnknown, Update, Version
from ..errors import CoordinationError, InvalidArgument, LockTimeout, PermitsMismatch
from ..names import validate_name
from .lock import Lock, check_timeout


class Permit(Lock):
    """One hold of a semaphore, returned held by :meth:`Semaphore.acquire`.

    ``token`` is a fencing token, ``held`` turns False when the session is lost,
    ``release()`` (or leaving the ``with`` block) gives the permit back.
    """

    _recipe = "semaphores"
    _what = "semaphore"
    _kind = "lock"

    def __init__(self, backend: Backend, name: str, permits: int) -> None:
        super().__init__(backend, name)
        self._permits = permits

    def _rule(self) -> Rule:
        return Rule(permits=self._permits)

    def __enter__(self) -> Permit:
        return self  # acquired by Semaphore.acquire already


class Semaphore:
    """A named semaphore admitting at most ``permits`` holders at once."""

    def __init__(self, backend: Backend, name: str, permits: int) -> None:
        validate_name(name, "semaphore name")
        if isinstance(permits, bool) or not isinstance(permits, int) or permits < 1:
            raise InvalidArgument(f"permits must be an int >= 1, got {permits!r}")
        self.name = name
        self.permits = permits
        self._backend = backend
        self._agree()

    def __repr__(self) -> str:
        return f"<Semaphore {self.name!r} permits={self.permits}>"

    @property
    def path(self) -> str:
        """The server path (ZooKeeper) or key prefix (etcd) of the permit holders."""
        return self._backend.recipe_path("semaphores", self.name)

    def _agree(self) -> None:
        """Store our ``permits`` if the name is new; else check it is the stored one."""
        key = self._backend.kv.root("semaphores", self.name)
        mine = str(self.permits).encode()
        while True:
            entry = self._backend.kv.get(key)
            if entry is not None and entry.value:
                try:
                    stored = int(entry.value)
                except ValueError:
                    raise CoordinationError(
                        f"semaphore {self.name!r} has a corrupt permits record") from None
                if stored != self.permits:
                    raise PermitsMismatch(
                        f"semaphore {self.name!r} has {stored} permits, not {self.permits}")
                return
            # New name (ZooKeeper: or an empty parent node made by a contender).
            try:
                if entry is None:
                    self._backend.kv.commit([Absent(key)], [Create(key, mine)])
                else:
                    self._backend.kv.commit([Version(key, entry.version)], [Update(key, mine)])
            except OutcomeUnknown:
                pass  # read back and check, like a lost race

    def acquire(self, timeout: float | None = None, blocking: bool = True) -> Permit:
        """Wait for a permit, in arrival order; the held :class:`Permit` (release it,
        or use ``with sem.acquire(timeout=5) as permit:``). Raises ``LockTimeout``
        after ``timeout`` seconds (at once if not ``blocking``)."""
        timeout = check_timeout(timeout)
        permit = Permit(self._backend, self.name, self.permits)
        if not permit.acquire(timeout=timeout, blocking=blocking):
            raise LockTimeout(f"no permit of semaphore {self.name!r} within {timeout}s")
        return permit
