"""How a queue turns what ``put`` is given into the stored payload, and the payload back
into ``task.data``: bytes as they are (the default), or JSON."""

from __future__ import annotations

import json
from typing import Any, Protocol

from ...errors import InvalidArgument, InvalidPayload


class Codec(Protocol):
    """A payload codec: ``encode`` may raise ``InvalidPayload``; ``decode`` of bytes that
    ``encode`` made gives back an equal value."""

    name: str

    def encode(self, value: Any) -> bytes | str: ...

    def decode(self, data: bytes) -> Any: ...


class BytesCodec:
    """Bytes (or str, stored as UTF-8) in, bytes out."""

    name = "bytes"

    def encode(self, value: Any) -> Any:
        return value  # checked by the payload rules

    def decode(self, data: bytes) -> bytes:
        return data


class JsonCodec:
    """Any JSON value in, the same value out (stored as compact UTF-8 JSON)."""

    name = "json"

    def encode(self, value: Any) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidPayload(f"payload is not JSON-serializable: {exc}") from None

    def decode(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError as exc:
            raise InvalidPayload(f"payload is not JSON: {exc}") from None


_NAMED: dict[str, Codec] = {"bytes": BytesCodec(), "json": JsonCodec()}


def codec_for(codec: str | Codec) -> Codec:
    """The codec named ``codec`` (``"bytes"``, ``"json"``), or ``codec`` itself if it has
    ``encode`` and ``decode``; else ``InvalidArgument``."""
    if isinstance(codec, str):
        if codec not in _NAMED:
            raise InvalidArgument(f"codec must be one of {sorted(_NAMED)} or an object with "
                                  f"encode/decode, got {codec!r}")
        return _NAMED[codec]
    if not (callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None))):
        raise InvalidArgument(f"codec must have encode() and decode(), got {codec!r}")
    return codec
