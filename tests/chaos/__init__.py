"""Chaos scenarios: real clusters, real faults."""

from __future__ import annotations

import pytest

from coordination.lab import nemesis, peercut


def skip_unless_possible(fault: str, backend: str) -> None:
    """Skip, with the reason, a peer-link cut where this machine cannot make one, and a
    fault that is a no-op on ``backend``."""
    if fault in nemesis.PEER_CUTS and peercut.unavailable():
        pytest.skip(peercut.unavailable())
    if fault in nemesis.ETCD_ONLY and backend != "etcd":
        pytest.skip(f"{fault}: nothing to do on {backend}")
