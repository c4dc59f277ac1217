"""The gateway's fast path (`ingest.wire.fast_body`, `encode_scan`) against the item-by-item
path: the same scans accepted, the same bytes on the raw topic, and never a body or a scan
accepted that the slow path would refuse."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.codec import encode_msgpack
from ingest.contract import (
    DEFAULT_MAX_SKEW_MS,
    FIELDS,
    MAX_SCANNED_AT_MS,
    MIN_SCANNED_AT_MS,
    ScanEvent,
)
from ingest.gateway.app import decode_batch, validate_batch
from ingest.http import HttpError
from ingest.wire import (
    RAW_FRAME_MAX_BYTES,
    RAW_FRAME_MAX_SCANS,
    WireScan,
    encode_scan,
    fast_body,
    raw_frames,
    split_raw_frame,
)

NOW = 1_700_000_000_000
LATEST = NOW + DEFAULT_MAX_SKEW_MS
JSON = "application/json"
MSGPACK = "application/msgpack"


def scan(i: int = 0, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": f"evt-{i}",
        "person_id": f"person-{i}",
        "premises_id": f"NT-{i % 7:04d}",
        "scanned_at": NOW - 60_000 - i,
        "kind": "checkout" if i % 3 == 0 else "checkin",
    }
    base.update(overrides)
    return base


def body(scans: object, content_type: str, *, as_map: bool = True) -> bytes:
    obj = {"scans": scans} if as_map else scans
    return json.dumps(obj).encode() if content_type == JSON else msgpack.packb(obj)


def slow(data: bytes, content_type: str) -> tuple[list[ScanEvent], list[dict[str, object]]]:
    events, rejected, _ = validate_batch(
        decode_batch(data, content_type, max_batch=10_000),
        gateway_id="gw-1",
        received_at=NOW,
        max_skew_ms=DEFAULT_MAX_SKEW_MS,
    )
    return events, rejected


def stamped(scans: list[WireScan]) -> list[WireScan]:
    for s in scans:
        s.gateway_id, s.received_at = "gw-1", NOW
    return scans


def msgpack_scan(event: ScanEvent) -> WireScan:
    scans = fast_body(msgpack.packb([event.to_wire()]), json=False, latest_ms=MAX_SCANNED_AT_MS)
    assert scans is not None and len(scans) == 1
    return scans[0]


# -- encode_scan -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        ScanEvent("e1", "p1", "NT-1", NOW),
        ScanEvent("Đà Lạt ✓", "p" * 64, "NT-1", NOW, "checkout", "gw-1", NOW + 5),
        ScanEvent("e", "p", "x", MIN_SCANNED_AT_MS, gateway_id="", received_at=MAX_SCANNED_AT_MS),
    ],
)
def test_encode_scan_gives_the_codec_bytes_for_both_forms(event: ScanEvent) -> None:
    want = encode_msgpack(event)
    assert encode_scan(event) == want
    assert encode_scan(msgpack_scan(event)) == want


# -- body forms --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "as_map"), [(JSON, True), (MSGPACK, True), (MSGPACK, False)]
)
def test_each_body_form_takes_the_fast_path_with_the_slow_paths_scans(
    content_type: str, as_map: bool
) -> None:
    data = body([scan(i) for i in range(20)], content_type, as_map=as_map)
    fast = fast_body(data, json=content_type == JSON, latest_ms=LATEST)
    assert fast is not None
    events, rejected = slow(data, content_type)
    assert rejected == []
    assert [encode_scan(s) for s in stamped(fast)] == [encode_msgpack(e) for e in events]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (json.dumps([scan()]).encode(), JSON),  # JSON needs the map form
        (json.dumps({"scans": [scan()], "extra": 1}).encode(), JSON),
        (json.dumps({"scans": None}).encode(), JSON),
        (json.dumps({"scans": [scan()]}).encode() + b" x", JSON),
        (b"\xef\xbb\xbf" + json.dumps({"scans": [scan()]}).encode(), JSON),  # BOM
        (msgpack.packb({"scans": [scan()], "extra": 1}), MSGPACK),
        (msgpack.packb([scan()]) + b"\x00", MSGPACK),
        (msgpack.packb({1: [scan()]}), MSGPACK),
        (msgpack.packb(7), MSGPACK),
    ],
)
def test_other_bodies_leave_the_fast_path(data: bytes, content_type: str) -> None:
    assert fast_body(data, json=content_type == JSON, latest_ms=LATEST) is None


@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
@pytest.mark.parametrize(
    "bad",
    [
        scan(9, kind="bogus"),
        scan(9, scanned_at=LATEST + 1),
        scan(9, scanned_at="2023-11-14T22:03:20Z"),  # valid, but the slow path's job
        scan(9, event_id="e\x00"),
        scan(9, extra=1),
        scan(9, schema=True),
        "not a map",
    ],
)
def test_one_unusual_item_sends_the_whole_body_to_the_slow_path(
    content_type: str, bad: object
) -> None:
    data = body([scan(0), bad, scan(2)], content_type)
    assert fast_body(data, json=content_type == JSON, latest_ms=LATEST) is None


def test_duplicate_keys_mean_the_last_value_on_both_paths() -> None:
    data = b'{"scans": [{"event_id": "a", "person_id": "p", "premises_id": "x", '
    data += b'"scanned_at": 1699999999000, "event_id": "b"}]}'
    fast = fast_body(data, json=True, latest_ms=LATEST)
    assert fast is not None and fast[0].event_id == "b"
    assert slow(data, JSON)[0][0].event_id == "b"


# -- never more than the slow path -------------------------------------------------------

GOOD_IDS = st.one_of(
    st.sampled_from(["e1", "Đà Lạt", "x" * 64, "ok ok"]),
    st.text(
        st.characters(categories=["L", "N", "P", "S"], include_characters=" "),
        min_size=1,
        max_size=64,
    ),
)
IDS = st.one_of(GOOD_IDS, st.sampled_from(["x" * 65, "", "a\nb", "\u200b"]), st.text(max_size=70))
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(MIN_SCANNED_AT_MS - 2, MAX_SCANNED_AT_MS + 2),
    st.integers(),
    st.floats(allow_nan=False),
    IDS,
    st.sampled_from(["checkin", "checkout", "2023-11-14T22:03:20Z"]),
)
FIELD_NAMES = st.sampled_from([*sorted(FIELDS), "extra"])


@st.composite
def items(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 19)) == 0:
        return draw(VALUES)
    obj: dict[str, Any] = scan(
        draw(st.integers(0, 50)),
        event_id=draw(st.one_of(GOOD_IDS, GOOD_IDS, IDS)),
        scanned_at=draw(st.integers(MIN_SCANNED_AT_MS, LATEST + 2)),
    )
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 1, 1, 2]))):
        name = draw(FIELD_NAMES)
        if draw(st.integers(0, 3)) == 0:
            obj.pop(name, None)
        else:
            obj[name] = draw(VALUES)
    return obj


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scans=st.lists(items(), max_size=4),
    content_type=st.sampled_from([JSON, MSGPACK]),
    as_map=st.booleans(),
)
def test_the_fast_path_never_accepts_what_the_slow_path_would_not(
    scans: list[object], content_type: str, as_map: bool
) -> None:
    try:
        data = body(scans, content_type, as_map=as_map)
    except (OverflowError, TypeError, ValueError):
        return  # not encodable, so never on the wire
    fast = fast_body(data, json=content_type == JSON, latest_ms=LATEST)
    if fast is None:
        return  # the slow path decides, whatever it decides
    try:
        events, rejected = slow(data, content_type)
    except HttpError as exc:
        pytest.fail(f"fast path took a body the slow path refuses: {exc.code}")
    assert rejected == []
    assert [encode_scan(s) for s in stamped(fast)] == [encode_msgpack(e) for e in events]


def test_raw_frames_cut_by_count_and_bytes_and_split_back() -> None:
    small = [msgpack.packb({"i": i}) for i in range(2 * RAW_FRAME_MAX_SCANS + 17)]
    frames = raw_frames(small)
    assert [n for n, _ in frames] == [RAW_FRAME_MAX_SCANS, RAW_FRAME_MAX_SCANS, 17]
    assert [e for _, f in frames for e in split_raw_frame(f) or []] == small
    assert msgpack.unpackb(frames[2][1]) == [{"i": i} for i in range(2000, 2017)]
    big = [msgpack.packb({"pad": "x" * (RAW_FRAME_MAX_BYTES // 3)}) for _ in range(7)]
    sized = raw_frames(big)
    assert [n for n, _ in sized] == [2, 2, 2, 1]
    assert all(len(f) <= RAW_FRAME_MAX_BYTES for _, f in sized)
    assert raw_frames([]) == []


@pytest.mark.parametrize(
    "value",
    [b"", b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([]), msgpack.packb([{"a": 1}, 2]),
     b"\x92\x81\xa1a"],
)  # fmt: skip
def test_only_an_array_of_maps_is_a_frame(value: bytes) -> None:
    assert split_raw_frame(value) is None


def test_deeply_nested_garbage_is_not_a_frame() -> None:
    assert split_raw_frame(b"\x91" * 200_000 + b"\x80") is None
