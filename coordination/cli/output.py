"""Shared output helpers of the command line (rich consoles)."""

from __future__ import annotations

from rich.console import Console


def console(stderr: bool = False) -> Console:
    """A rich console; plain text (no colours, no live display) when not a terminal.

    ``highlight=False``: numbers and paths are printed as given, not re-coloured.
    """
    return Console(stderr=stderr, highlight=False, soft_wrap=False)
