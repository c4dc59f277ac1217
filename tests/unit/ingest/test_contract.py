"""Example tests for the scan-event contract v1: every rejection reason, with its field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ingest.codec import decode_json, decode_msgpack
from ingest.contract import (
    DEFAULT_MAX_SKEW_MS,
    MAX_ID_LEN,
    MIN_SCANNED_AT_MS,
    ScanEvent,
    ScanRejected,
    parse_scan,
)

NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z, fixed so tests never depend on the clock
# Beyond str(int)'s 4300-digit limit: formatting it raises ValueError, so it gets a named id.
HUGE = pytest.param(10**5000, id="10**5000")
NEG_HUGE = pytest.param(-(10**5000), id="-10**5000")


def wire(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "evt-1",
        "person_id": "person-1",
        "premises_id": "HN-BD-0001",
        "scanned_at": 1_637_370_000_000,
        "kind": "checkin",
        "schema": 1,
    }
    base.update(overrides)
    return base


def rejected(obj: object, **kwargs: Any) -> ScanRejected:
    with pytest.raises(ScanRejected) as info:
        parse_scan(obj, now=NOW, **kwargs)
    return info.value


def assert_rejected(obj: object, reason: str, field: str | None) -> ScanRejected:
    exc = rejected(obj)
    assert (exc.reason, exc.field) == (reason, field), exc
    return exc


def test_valid_scan_parses() -> None:
    event = parse_scan(wire(), now=NOW)
    assert event == ScanEvent(
        event_id="evt-1",
        person_id="person-1",
        premises_id="HN-BD-0001",
        scanned_at=1_637_370_000_000,
        kind="checkin",
        gateway_id="",
        received_at=None,
        schema=1,
    )


def test_kind_defaults_to_checkin() -> None:
    obj = wire()
    del obj["kind"]
    assert parse_scan(obj, now=NOW).kind == "checkin"


def test_schema_defaults_to_v1() -> None:
    obj = wire()
    del obj["schema"]
    assert parse_scan(obj, now=NOW).schema == 1


def test_checkout_kind() -> None:
    assert parse_scan(wire(kind="checkout"), now=NOW).kind == "checkout"


# --- missing fields ---------------------------------------------------------------


@pytest.mark.parametrize("field", ["event_id", "person_id", "premises_id", "scanned_at"])
def test_missing_required_field(field: str) -> None:
    obj = wire()
    del obj[field]
    assert_rejected(obj, "missing_field", field)


# --- wrong types ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["event_id", "person_id", "premises_id", "gateway_id"])
@pytest.mark.parametrize("value", [1, 1.5, None, True, b"bytes", ["a"], {"a": 1}])
def test_id_wrong_type(field: str, value: object) -> None:
    assert_rejected(wire(**{field: value}), "wrong_type", field)


@pytest.mark.parametrize("value", [True, False])
def test_bool_scanned_at_is_wrong_type(value: bool) -> None:
    assert_rejected(wire(scanned_at=value), "wrong_type", "scanned_at")


@pytest.mark.parametrize("value", [1_637_370_000_000.0, float("nan"), None, b"1", [1], {}])
def test_scanned_at_wrong_type(value: object) -> None:
    assert_rejected(wire(scanned_at=value), "wrong_type", "scanned_at")


@pytest.mark.parametrize("value", [True, 1.5, b"1", [1]])
def test_received_at_wrong_type(value: object) -> None:
    assert_rejected(wire(received_at=value), "wrong_type", "received_at")


@pytest.mark.parametrize("value", [1, None, True, ["checkin"]])
def test_kind_wrong_type(value: object) -> None:
    assert_rejected(wire(kind=value), "wrong_type", "kind")


@pytest.mark.parametrize("value", ["1", 1.0, True, None])
def test_schema_wrong_type(value: object) -> None:
    assert_rejected(wire(schema=value), "wrong_type", "schema")


# --- ids ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["event_id", "person_id", "premises_id"])
def test_empty_id(field: str) -> None:
    assert_rejected(wire(**{field: ""}), "empty_id", field)


def test_empty_gateway_id_is_allowed() -> None:
    assert parse_scan(wire(gateway_id=""), now=NOW).gateway_id == ""


@pytest.mark.parametrize("field", ["event_id", "person_id", "premises_id", "gateway_id"])
def test_id_too_long(field: str) -> None:
    assert_rejected(wire(**{field: "a" * (MAX_ID_LEN + 1)}), "id_too_long", field)


def test_id_of_max_length_accepted() -> None:
    assert parse_scan(wire(event_id="é" * MAX_ID_LEN), now=NOW).event_id == "é" * MAX_ID_LEN


@pytest.mark.parametrize("field", ["event_id", "person_id", "premises_id", "gateway_id"])
@pytest.mark.parametrize(
    "bad", ["a\x00b", "a\nb", "\tab", "ab\x7f", "a\u200bb", "a\ud800", "a\u00a0b"]
)
def test_control_chars(field: str, bad: str) -> None:
    assert_rejected(wire(**{field: bad}), "bad_id_chars", field)


def test_vietnamese_ids_accepted() -> None:
    event = parse_scan(wire(person_id="Nguyễn Thị Minh Khai", premises_id="Chợ Bến Thành"), now=NOW)
    assert event.person_id == "Nguyễn Thị Minh Khai"
    assert event.premises_id == "Chợ Bến Thành"


# --- timestamps -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("iso", "ms"),
    [
        ("2021-11-20T08:00:00+07:00", 1_637_370_000_000),
        ("2021-11-20T01:00:00Z", 1_637_370_000_000),
        ("2021-11-20T01:00:00+00:00", 1_637_370_000_000),
        ("2021-11-19T20:00:00-05:00", 1_637_370_000_000),
        ("2021-11-20T08:00:00.123+07:00", 1_637_370_000_123),
        ("2021-11-20T08:00:00.999999+07:00", 1_637_370_000_999),
        ("2021-11-20T08:00:00.001+07:00", 1_637_370_000_001),
        ("2021-11-20 08:00:00+07:00", 1_637_370_000_000),
    ],
)
def test_iso_with_offset_to_exact_epoch_ms(iso: str, ms: int) -> None:
    assert parse_scan(wire(scanned_at=iso), now=NOW).scanned_at == ms


def test_epoch_ms_kept_exactly() -> None:
    assert parse_scan(wire(scanned_at=1_637_370_000_123), now=NOW).scanned_at == 1_637_370_000_123


@pytest.mark.parametrize(
    "iso",
    [
        "",
        "yesterday",
        "2021-13-01T00:00:00+07:00",
        "2021-11-31T00:00:00+07:00",
        "2021-11-20T24:00:00+07:00",
        "2021-11-20T08:00:00+24:00",
        " 2021-11-20T08:00:00+07:00",
        "2021-11-20T08:00:00+07:00 ",
        "2021-11-20T08:00:00+07:00\n",
        "2021-11-20T08:00:00+07:00\x00",
        "2021-11-20x08:00:00+07:00",
        "\uff12\uff10\uff12\uff11-11-20T08:00:00+07:00",  # fullwidth digits
        "2021-11-20T08:00:00+07:00\ud800",
        "1637370000000",
    ],
)
def test_unparseable_iso(iso: str) -> None:
    assert_rejected(wire(scanned_at=iso), "bad_timestamp", "scanned_at")


@pytest.mark.parametrize("iso", ["2021-11-20T08:00:00", "2021-11-20", "2021-11-20T08:00:00.123"])
def test_naive_iso_rejected(iso: str) -> None:
    exc = assert_rejected(wire(scanned_at=iso), "bad_timestamp", "scanned_at")
    assert "offset" in exc.detail


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        MIN_SCANNED_AT_MS - 1,
        4_102_444_800_001,
        2**64,
        -(2**63),
        HUGE,
        NEG_HUGE,
        "2019-12-31T23:59:59.999Z",
        "2100-01-01T00:00:00.001Z",
        "0001-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59.999999-23:59",
    ],
)
def test_timestamp_out_of_range(value: object) -> None:
    exc = assert_rejected(wire(scanned_at=value), "bad_timestamp", "scanned_at")
    assert len(exc.detail) < 200


def test_range_bounds_inclusive() -> None:
    assert parse_scan(wire(scanned_at=MIN_SCANNED_AT_MS), now=NOW).scanned_at == MIN_SCANNED_AT_MS
    assert parse_scan(wire(scanned_at="2020-01-01T07:00:00+07:00"), now=NOW).scanned_at == (
        MIN_SCANNED_AT_MS
    )


def test_received_at_out_of_range() -> None:
    assert_rejected(wire(received_at=5), "bad_timestamp", "received_at")


def test_future_beyond_skew_rejected() -> None:
    assert_rejected(
        wire(scanned_at=NOW + DEFAULT_MAX_SKEW_MS + 1), "future_timestamp", "scanned_at"
    )


def test_just_within_skew_accepted() -> None:
    at = NOW + DEFAULT_MAX_SKEW_MS
    assert parse_scan(wire(scanned_at=at), now=NOW).scanned_at == at


def test_custom_skew() -> None:
    exc = rejected(wire(scanned_at=NOW + 1001), max_skew_ms=1000)
    assert (exc.reason, exc.field) == ("future_timestamp", "scanned_at")
    assert (
        parse_scan(wire(scanned_at=NOW + 1000), now=NOW, max_skew_ms=1000).scanned_at == NOW + 1000
    )


# --- kind, schema, unknown fields, shape ------------------------------------------------


@pytest.mark.parametrize("kind", ["", "CHECKIN", "check-in", "checkin ", "exit", "x" * 10_000])
def test_unknown_kind(kind: str) -> None:
    exc = assert_rejected(wire(kind=kind), "unknown_kind", "kind")
    assert len(exc.detail) < 200


@pytest.mark.parametrize("schema", [0, 2, -1, 2**64, HUGE])
def test_unknown_schema(schema: int) -> None:
    exc = assert_rejected(wire(schema=schema), "unknown_schema", "schema")
    assert len(exc.detail) < 200


def test_unknown_field() -> None:
    assert_rejected(wire(lat=21.0), "unknown_field", "lat")


@pytest.mark.parametrize(
    "key",
    [b"event_id", 1, HUGE, None, 1.5, ("a",), "x" * 1000, "evil\nkey\x1b[31m"],
)
def test_unknown_field_name_is_safe(key: object) -> None:
    """Whatever the key, the reported field is a short printable string."""
    obj: dict[Any, Any] = {**wire(), key: 1}
    exc = rejected(obj)
    assert exc.reason == "unknown_field"
    assert isinstance(exc.field, str)
    assert 0 < len(exc.field) <= MAX_ID_LEN
    assert exc.field.isprintable()


@pytest.mark.parametrize("obj", [None, [], "scan", b"scan", 42, 1.5, True, [("event_id", "e")]])
def test_not_a_map(obj: object) -> None:
    assert_rejected(obj, "not_a_map", None)


@pytest.mark.parametrize("decode", [decode_msgpack, decode_json], ids=["msgpack", "json"])
@pytest.mark.parametrize(
    "data", [b"", b"\xc1", b"\x81", b"\xff\xfe\xfd", b'{"event_id":', b"\x93\x01"]
)
def test_undecodable_bytes(decode: Callable[..., ScanEvent], data: bytes) -> None:
    with pytest.raises(ScanRejected) as info:
        decode(data, now=NOW)
    assert (info.value.reason, info.value.field) == ("undecodable", None)


def test_json_array_is_not_a_map() -> None:
    with pytest.raises(ScanRejected) as info:
        decode_json(b"[1, 2]", now=NOW)
    assert info.value.reason == "not_a_map"


def test_msgpack_non_str_key_is_undecodable() -> None:
    import msgpack

    with pytest.raises(ScanRejected) as info:
        decode_msgpack(msgpack.packb({1: 2}), now=NOW)
    assert info.value.reason == "undecodable"


# --- gateway stamping ------------------------------------------------------------------


def test_gateway_values_override_callers() -> None:
    obj = wire(gateway_id="spoofed", received_at=1_637_370_000_000)
    event = parse_scan(obj, now=NOW, gateway_id="gw-hanoi-1", received_at=NOW)
    assert event.gateway_id == "gw-hanoi-1"
    assert event.received_at == NOW


def test_gateway_override_ignores_invalid_caller_values() -> None:
    obj = wire(gateway_id=12, received_at="garbage")
    event = parse_scan(obj, now=NOW, gateway_id="gw-1", received_at=NOW)
    assert (event.gateway_id, event.received_at) == ("gw-1", NOW)


def test_caller_values_kept_without_override() -> None:
    event = parse_scan(wire(gateway_id="gw-2", received_at=1_637_370_000_500), now=NOW)
    assert (event.gateway_id, event.received_at) == ("gw-2", 1_637_370_000_500)


# --- rejection object -----------------------------------------------------------------


def test_rejection_is_a_value_error_with_dict() -> None:
    exc = assert_rejected(wire(event_id=""), "empty_id", "event_id")
    assert isinstance(exc, ValueError)
    assert exc.as_dict() == {"reason": "empty_id", "field": "event_id", "detail": ""}
    assert str(exc) == "empty_id (event_id)"
