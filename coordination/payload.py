"""Payload rules shared by the recipes that store user bytes (queue tasks, election
candidates): ``bytes``-like or ``str`` (UTF-8), at most a size the backends accept."""

from __future__ import annotations

from .errors import InvalidPayload, PayloadTooLarge


def encode_payload(value: object, limit: int, what: str = "payload") -> bytes:
    """``value`` as bytes; ``InvalidPayload`` for other types, ``PayloadTooLarge`` above
    ``limit`` bytes (checked before anything is sent)."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidPayload(f"{what} must be bytes or str, got {type(value).__name__}")
    data = bytes(value)
    if len(data) > limit:
        raise PayloadTooLarge(f"{what} of {len(data)} bytes exceeds {limit} bytes")
    return data
