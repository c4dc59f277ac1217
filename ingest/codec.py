"""msgpack and JSON codecs for scan events. Both carry the same wire map."""

from __future__ import annotations

import json
from typing import Any

import msgpack

from ingest.contract import DEFAULT_MAX_SKEW_MS, ScanEvent, ScanRejected, parse_scan


def encode_msgpack(event: ScanEvent) -> bytes:
    return msgpack.packb(event.to_wire(), use_bin_type=True)  # type: ignore[no-any-return]


def encode_json(event: ScanEvent) -> bytes:
    return json.dumps(event.to_wire(), ensure_ascii=False, separators=(",", ":")).encode()


def unpack_msgpack(data: bytes) -> Any:
    """Bytes to Python objects, or `ScanRejected('undecodable')`; never anything else."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, timestamp=0)
    except Exception as exc:  # msgpack raises a family of unrelated types on bad input
        raise ScanRejected("undecodable", None, f"msgpack: {type(exc).__name__}") from None


def unpack_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ScanRejected("undecodable", None, f"json: {type(exc).__name__}") from None


def decode_msgpack(
    data: bytes, *, now: int | None = None, max_skew_ms: int = DEFAULT_MAX_SKEW_MS
) -> ScanEvent:
    return parse_scan(unpack_msgpack(data), now=now, max_skew_ms=max_skew_ms)


def decode_json(
    data: bytes, *, now: int | None = None, max_skew_ms: int = DEFAULT_MAX_SKEW_MS
) -> ScanEvent:
    return parse_scan(unpack_json(data), now=now, max_skew_ms=max_skew_ms)
