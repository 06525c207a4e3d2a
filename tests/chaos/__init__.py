"""Chaos scenarios: real clusters, real faults."""

from __future__ import annotations

import pytest

from coordination import peercut
from coordination.testing import nemesis


def skip_unless_possible(fault: str) -> None:
    """Skip, with the reason, a peer-link cut where this machine cannot make one."""
    if fault in nemesis.PEER_CUTS and peercut.unavailable():
        pytest.skip(peercut.unavailable())
