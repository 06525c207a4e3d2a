"""Watches armed for a waiter, and the wait on them: a backend arms (``watch_deleted``,
``KeyValue.watch``) and returns a :class:`Watching`; a thread waits with
:func:`wait_armed`, an event loop with ``coordination.aio``."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from ..session import Waker


def _nothing() -> None:
    pass


@dataclasses.dataclass(frozen=True)
class Watching:
    """Watches armed to set a waker. ``gone``: what they would wait for happened
    already (nothing is armed: look again at once). ``recheck``: seconds after which a
    wait should end and look again even if not woken (etcd: a watch stream to a paused
    server stays silent; a watch that could not be armed), None for never. ``cancel()``
    stops the watches; call it once done waiting, always."""

    gone: bool
    recheck: float | None = None
    cancel: Callable[[], None] = _nothing

    def limit(self, timeout: float | None) -> float | None:
        """How long to wait for a wake, given the caller's ``timeout``."""
        if self.recheck is None or timeout is None:
            return self.recheck if timeout is None else timeout
        return min(timeout, self.recheck)

    def silent(self, timeout: float | None) -> bool:
        """What a wait that ran ``limit(timeout)`` unwoken returns: True (look again)
        if ``recheck`` cut it, False if ``timeout`` passed."""
        return self.recheck is not None and (timeout is None or timeout > self.recheck)


def wait_armed(arm: Callable[[Waker], Watching], timeout: float | None,
               woken: threading.Event | None = None) -> bool:
    """Arm watches with ``arm(woken)`` and wait in this thread until woken (True), or
    ``timeout`` seconds pass (False; True if cut short to look again). ``woken``: an
    event others may set too (a stop), else a new one."""
    woken = woken or threading.Event()
    watching = arm(woken)
    try:
        return watching.gone or woken.wait(watching.limit(timeout)) or watching.silent(timeout)
    finally:
        watching.cancel()
