"""The queue's bell: one key that every change which may make a task ready writes, so
that idle consumers wait on it rather than poll the indexes."""

from __future__ import annotations

from ...backends.kv import Absent, Create, Entry, KeyValue, OutcomeUnknown, Update
from ..steps import WaitChanged


class Bell:
    def __init__(self, kv: KeyValue, key: str) -> None:
        self._kv = kv
        self._key = key
        self._made = False

    def ring(self) -> Update:
        """The op that rings the bell, for the commit that may make a task ready. The
        first call creates the key if need be (an update of a missing key would fail
        the commit)."""
        if not self._made:
            if self._kv.get(self._key) is None:
                try:
                    self._kv.commit([Absent(self._key)], [Create(self._key, b"")])
                except OutcomeUnknown:
                    pass
            self._made = True
        return Update(self._key, b"")

    def read(self) -> Entry | None:
        """The bell as it is now: ``wait`` on it returns at the next ring."""
        return self._kv.get(self._key)

    def waiting(self, seen: Entry | None, timeout: float) -> WaitChanged:
        """The step that waits for the first ring since ``seen`` was read, or for
        ``timeout`` seconds."""
        return WaitChanged(self._kv, self._key, seen, timeout)
