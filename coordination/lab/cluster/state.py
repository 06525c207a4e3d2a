"""The state file of a detached cluster, ``WORKDIR/cluster.json``: its format on disk.

It records what another process needs to re-attach to running servers (backend,
settings, the cluster's token and each node's ports, pid and paused flag), never a
password. ``write_state`` replaces it atomically; ``read_state`` checks that it is one
of ours before anything is taken from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: Name of the state file that detach()/save_state() write into the workdir.
STATE_FILE = "cluster.json"
#: Bumped when the format changes: attach() refuses other versions.
STATE_VERSION = 1


def write_state(workdir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` and this format's version as ``workdir/cluster.json``, atomically
    (a reader sees the old file or the new one); its path."""
    path = workdir / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": STATE_VERSION, **state}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_state(workdir: str | os.PathLike[str]) -> dict[str, Any]:
    """The state in ``workdir/cluster.json``, checked to be of this version and to have a
    ``backend``, an integer ``tick_ms`` (converted) and a list of ``nodes``.

    ``FileNotFoundError`` if there is no state file, ``ValueError`` if it is not one of
    ours.
    """
    path = Path(workdir) / STATE_FILE
    try:
        state = json.loads(path.read_text())
        backend, tick_ms, nodes = state["backend"], int(state["tick_ms"]), state["nodes"]
        if state.get("version") != STATE_VERSION or not isinstance(nodes, list):
            raise ValueError("unsupported state version")
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a LocalCluster state file: {exc}") from None
    return {**state, "backend": backend, "tick_ms": tick_ms, "nodes": nodes}
