"""The enriched-scan wire format, the parked-entry format and the processor settings."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from processors_testkit import NOW, premises
from pydantic import ValidationError

from ingest.contract import ScanEvent
from processors.records import (
    ENRICHED_FIELDS,
    FRAME_MAX_ROWS,
    EnrichedScan,
    RawRecord,
    decode_enriched,
    decode_frame,
    decode_wire_record,
    encode_enriched,
    encode_frames,
    encode_row,
    frame_rows,
)
from processors.settings import ProcessorSettings
from processors.state import ParkedScan, premises_entry, repeat_key

SCAN = EnrichedScan(
    event_id="e1",
    person_id="p1",
    premises_id="NT-000001",
    scanned_at=NOW - 60_000,
    kind="checkout",
    gateway_id="gw-1",
    received_at=NOW - 1000,
    schema=1,
    premises_name="Chợ Phan Rang",
    category="market",
    district="Phan Rang-Tháp Chàm",
    ward="Thanh Sơn",
    agency="Sở Công Thương",
    dwell_minutes=45,
    processed_at=NOW,
)


def test_round_trip_through_bytes_and_rows() -> None:
    data = encode_enriched(SCAN)
    assert decode_enriched(data) == SCAN
    assert EnrichedScan.decode(SCAN.encode()) == SCAN
    assert encode_row(SCAN.to_row()) == data
    assert EnrichedScan.from_row(SCAN.to_row()) == SCAN
    without_received = EnrichedScan.from_row((*SCAN.to_row()[:6], None, *SCAN.to_row()[7:]))
    assert decode_enriched(without_received.encode()).received_at is None


def test_the_wire_is_a_msgpack_map_in_field_order() -> None:
    wire = msgpack.unpackb(SCAN.encode())
    assert tuple(wire) == ENRICHED_FIELDS
    assert wire == SCAN.to_wire()
    assert wire["dwell_minutes"] == 45


def rows(n: int) -> list[Any]:
    return [(f"e{i}", *SCAN.to_row()[1:]) for i in range(n)]


@pytest.mark.parametrize("n", [1, 15, 16, 999, 1000, 1001, 65_536 + 5])
def test_frames_are_msgpack_arrays_of_the_wire_maps_in_order(n: int) -> None:
    frames = encode_frames(rows(n), max_bytes=1 << 30)
    assert [frame_rows(f) for f in frames] == [
        min(FRAME_MAX_ROWS, n - i) for i in range(0, n, FRAME_MAX_ROWS)
    ]
    assert [o["event_id"] for f in frames for o in msgpack.unpackb(f)] == [
        f"e{i}" for i in range(n)
    ]
    assert msgpack.unpackb(frames[0])[0] == msgpack.unpackb(encode_row(rows(1)[0]))
    assert decode_frame(frames[-1])[-1] == EnrichedScan.from_row(rows(n)[-1])
    assert len(decode_wire_record(frames[0])) == frame_rows(frames[0])


def test_a_frame_over_the_byte_limit_is_halved_until_it_fits() -> None:
    one = len(encode_frames(rows(1), max_bytes=1 << 30)[0])
    frames = encode_frames(rows(10), max_bytes=3 * one)
    assert all(len(f) <= 3 * one for f in frames)
    assert [frame_rows(f) for f in frames] == [2, 3, 2, 3]
    assert [s.event_id for f in frames for s in decode_frame(f)] == [f"e{i}" for i in range(10)]
    # one row over the limit still goes (Kafka's own limit then decides)
    assert [frame_rows(f) for f in encode_frames(rows(2), max_bytes=1)] == [1, 1]


def test_frame_rows_reads_the_array_header_and_counts_anything_else_as_one() -> None:
    assert frame_rows(msgpack.packb([{}] * 15)) == 15
    assert frame_rows(msgpack.packb([{}] * 300)) == 300  # array 16
    assert frame_rows(msgpack.packb([0] * 70_000)) == 70_000  # array 32
    assert frame_rows(SCAN.encode()) == 1  # a lone map
    assert [frame_rows(v) for v in (None, b"", b"\xc1", b"\xdc\x00", msgpack.packb([]))] == [1] * 5


def test_a_lone_map_decodes_as_a_frame_of_one() -> None:
    assert decode_frame(SCAN.encode()) == [SCAN]
    wire = decode_wire_record(SCAN.encode())  # a lone map: one struct, not a list
    assert EnrichedScan.from_row(tuple(getattr(wire, f) for f in ENRICHED_FIELDS)) == SCAN  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not msgpack"):
        decode_frame(b"\xc1")
    with pytest.raises(ValueError, match="kind"):
        decode_frame(msgpack.packb([dict(SCAN.to_wire(), kind="sideways")]))


def test_the_scan_without_its_enrichment() -> None:
    assert SCAN.scan == ScanEvent(
        event_id="e1",
        person_id="p1",
        premises_id="NT-000001",
        scanned_at=NOW - 60_000,
        kind="checkout",
        gateway_id="gw-1",
        received_at=NOW - 1000,
    )


def changed(**fields: Any) -> bytes:
    wire = SCAN.to_wire()
    wire.update(fields)
    return msgpack.packb({k: v for k, v in wire.items() if v is not ...})  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc1", "enriched scan is not msgpack: FormatError"),
        (msgpack.packb([1, 2]), "enriched scan is not a map: list"),
        (changed(ward=...), "enriched scan lacks ward"),
        (changed(extra=1), "enriched scan has unknown fields extra"),
        (changed(scanned_at="2023-11-14"), "enriched scan field scanned_at has a bad value"),
        (changed(dwell_minutes=True), "enriched scan field dwell_minutes has a bad value"),
        (changed(received_at=1.5), "enriched scan field received_at has a bad value"),
        (changed(kind="exit"), "enriched scan field kind has a bad value"),
        (changed(premises_name=None), "enriched scan field premises_name has a bad value"),
        (changed(schema=2), "enriched scan schema 2"),
    ],
)
def test_decode_rejects_malformed_records_with_value_error(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_enriched(data)


def test_raw_record_defaults() -> None:
    assert RawRecord(b"x") == RawRecord(b"x", "", -1, -1)


def test_state_value_formats() -> None:
    p = premises(category="school", version=7)
    assert premises_entry(p) == [
        "Cho Phan Rang",
        "school",
        "Phan Rang-Thap Cham",
        "Thanh Son",
        "So Cong Thuong",
        300,
        7,
    ]
    assert repeat_key("p1", "P1", "checkin") == "p1\x1fP1\x1fcheckin"
    parked = ParkedScan(
        b"raw", "scans.raw", 1, 2, NOW, NOW - 5, "e1", "p1", "P1", NOW - 9, "checkin", "", None
    )
    entry = msgpack.unpackb(msgpack.packb(parked.to_list()))  # as a Faust table gives it back
    assert ParkedScan.from_list("P1", entry) == parked


def test_settings_defaults_and_validation() -> None:
    s = ProcessorSettings()
    assert (s.dedup_horizon_ms, s.repeat_window_ms, s.park_timeout_ms, s.max_skew_ms) == (
        86_400_000,
        300_000,
        259_200_000,
        300_000,
    )
    # Nested in the app's environment-read settings, values arrive as strings.
    assert ProcessorSettings.model_validate({"dedup_horizon_ms": "1000"}).dedup_horizon_ms == 1000
    with pytest.raises(ValidationError):
        ProcessorSettings(dedup_horizon_ms=0)
    with pytest.raises(ValidationError):
        ProcessorSettings(repeat_window_ms=-1)
    with pytest.raises(ValidationError):
        ProcessorSettings.model_validate({"dedup_horizon": 5})  # a typo is an error
    with pytest.raises(ValidationError):
        s.dedup_horizon_ms = 5  # type: ignore[misc]
