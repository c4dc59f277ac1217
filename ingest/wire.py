"""The contract's fast path: msgspec decodes a plainly valid scan from msgpack (or JSON)
straight into a typed struct, checking types, lengths and ranges in C as it goes.

It answers "is this a plainly valid scan, and what are its fields?" about five times faster
than unpacking a dict and checking it in Python. Anything it refuses, or finds unusual
(an ISO time, a control character, a stray field), goes to `contract.parse_scan`, which
decides and gives the reason: the fast path never accepts what `parse_scan` rejects, nor
returns other values (property tests in tests/unit/ingest hold the two together).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeAlias

import msgspec

from ingest.contract import MAX_ID_LEN, MAX_SCANNED_AT_MS, MIN_SCANNED_AT_MS, ScanEvent

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]
_Ms = Annotated[int, msgspec.Meta(ge=MIN_SCANNED_AT_MS, le=MAX_SCANNED_AT_MS)]


class WireScan(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A scan as it travels, epoch-ms times only (the type checks are msgspec's, strict:
    no bool for an int, no float for an int, no bytes for a string)."""

    event_id: _Id
    person_id: _Id
    premises_id: _Id
    scanned_at: _Ms
    kind: Literal["checkin", "checkout"] = "checkin"
    gateway_id: Annotated[str, msgspec.Meta(max_length=MAX_ID_LEN)] = ""
    received_at: _Ms | None = None
    schema: Literal[1] = 1

    def printable(self) -> bool:
        """The one check msgspec has no constraint for (a regex would cost more; one call
        on the joined ids costs less than four)."""
        return (self.event_id + self.person_id + self.premises_id + self.gateway_id).isprintable()


class WireBody(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A batch as a map, `{"scans": [...]}` (the gateway's JSON body, one of its msgpack
    forms)."""

    scans: list[WireScan]


AnyScan: TypeAlias = ScanEvent | WireScan
"""Either form of a valid scan: both have the contract's fields, in the same order."""

_decode_msgpack: Final = msgspec.msgpack.Decoder(WireScan).decode
_decode_msgpack_body: Final = msgspec.msgpack.Decoder(list[WireScan] | WireBody).decode
_decode_json_body: Final = msgspec.json.Decoder(WireBody).decode

encode_scan: Final = msgspec.msgpack.Encoder().encode
"""The msgpack wire map of an `AnyScan` (a `ScanEvent` dataclass or a `WireScan`): the same
bytes as `codec.encode_msgpack`, without building a dict (tests/unit/ingest/test_wire.py)."""


def fast_scan(data: bytes, latest_ms: int) -> WireScan | None:
    """The scan in `data` (one msgpack map) when it is plainly valid and not later than
    `latest_ms` (the processing time plus the allowed skew), else None: `parse_scan` decides.
    """
    try:
        scan = _decode_msgpack(data)
    except Exception:  # DecodeError, ValidationError, UnicodeDecodeError...: the slow path says
        return None
    if (
        scan.scanned_at > latest_ms
        or not (scan.event_id + scan.person_id + scan.premises_id + scan.gateway_id).isprintable()
    ):
        return None
    return scan


def fast_body(data: bytes, *, json: bool, latest_ms: int) -> list[WireScan] | None:
    """The scans of a gateway request body when the body has one of its forms (JSON
    `{"scans": [...]}`; msgpack an array of scans or `{"scans": [...]}`) and every scan in
    it is plainly valid, else None: the caller then decodes the body as before, says what
    is wrong with it or with each scan, and still takes the valid ones."""
    try:
        if json:
            scans = _decode_json_body(data).scans
        else:
            obj = _decode_msgpack_body(data)
            scans = obj if isinstance(obj, list) else obj.scans
    except Exception:  # whatever is wrong, the item-by-item path finds and names it
        return None
    return _all_plain(scans, latest_ms)


def _all_plain(scans: list[WireScan], latest_ms: int) -> list[WireScan] | None:
    for scan in scans:
        if scan.scanned_at > latest_ms or not scan.printable():
            return None
    return scans


# -- frames on scans.raw -------------------------------------------------------------------
# The HTTP gateway publishes a request's scans as frames: one Kafka record per partition
# holding up to RAW_FRAME_MAX_SCANS scans of that partition, a msgpack array of their wire
# maps (each element the bytes a single-scan record would carry). The client libraries and
# the broker pay per record, not per byte (bench/RESULTS.md). Records of one scan, what
# `ScanPublisher` and other Kafka gateways send, stay valid: the worker reads both.

RAW_FRAME_MAX_SCANS: Final = 1000
RAW_FRAME_MAX_BYTES: Final = 512 * 1024
_ARRAY_STARTS: Final = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])
_MAP_STARTS: Final = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
_decode_elements = msgspec.msgpack.Decoder(list[msgspec.Raw]).decode


def raw_frames(values: list[bytes]) -> list[tuple[int, bytes]]:
    """Encoded scans as frames: (how many scans, frame bytes), in order."""
    out: list[tuple[int, bytes]] = []
    start = 0
    while start < len(values):
        end = start
        size = 0
        while end < len(values) and end - start < RAW_FRAME_MAX_SCANS:
            size += len(values[end])
            if size > RAW_FRAME_MAX_BYTES and end > start:
                break
            end += 1
        n = end - start
        if n < 16:
            header = bytes([0x90 | n])
        elif n < 1 << 16:
            header = b"\xdc" + n.to_bytes(2, "big")
        else:
            header = b"\xdd" + n.to_bytes(4, "big")
        out.append((n, header + b"".join(values[start:end])))
        start = end
    return out


def split_raw_frame(value: bytes) -> list[bytes] | None:
    """The elements of a frame (each as its own bytes), or None when `value` is not a
    msgpack array of maps (a record of one scan, or garbage for the contract to name as a
    whole)."""
    if not value or value[0] not in _ARRAY_STARTS:
        return None
    try:
        elements = [bytes(element) for element in _decode_elements(value)]
    except Exception:  # DecodeError, and RecursionError for deeply nested garbage
        return None
    maps = _MAP_STARTS
    if not elements or not all(e[0] in maps for e in elements):
        return None
    return elements
