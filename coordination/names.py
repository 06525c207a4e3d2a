"""Name rules shared by every recipe, and the mapping of names to server paths.

A name is a ``/``-separated path of one or more non-empty segments: at most 256
characters, no leading or trailing ``/``, no empty segment, no ``..``, no control or
surrogate characters (ZooKeeper rejects those). Invalid names raise
:class:`~coordination.errors.InvalidName` before anything is sent to a server.
"""

from __future__ import annotations

import unicodedata

from .errors import InvalidName

MAX_NAME_LENGTH = 256


def validate_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it follows the rules above; raise ``InvalidName`` otherwise."""
    if not isinstance(name, str):
        raise InvalidName(f"{what} must be a str, got {type(name).__name__}")
    if not name:
        raise InvalidName(f"{what} must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"{what} is longer than {MAX_NAME_LENGTH} characters")
    if name.startswith("/") or name.endswith("/"):
        raise InvalidName(f"{what} {name!r} must not start or end with '/'")
    if "//" in name:
        raise InvalidName(f"{what} {name!r} has an empty segment")
    if ".." in name or any(seg == "." for seg in name.split("/")):
        raise InvalidName(f"{what} {name!r} must not contain '..' or '.' segments")
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") or ch in "\ufeff\ufff0\uffff":
            raise InvalidName(f"{what} {name!r} contains a control or unusable character")
    return name


def validate_raw_path(path: object, what: str = "raw prefix") -> str:
    """Validate a foreign client's verbatim key prefix / znode path (``raw_prefix=True``).

    Only the rules every server needs are applied: a non-empty str without control
    characters or ``..``; a trailing ``/`` is dropped.
    """
    if not isinstance(path, str):
        raise InvalidName(f"{what} must be a str, got {type(path).__name__}")
    stripped = path.rstrip("/")
    if not stripped or len(stripped) > 1024:
        raise InvalidName(f"{what} {path!r} must have 1 to 1024 characters")
    if ".." in stripped or "//" in stripped:
        raise InvalidName(f"{what} {path!r} must not contain '..' or '//'")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in stripped):
        raise InvalidName(f"{what} {path!r} contains a control character")
    return stripped
