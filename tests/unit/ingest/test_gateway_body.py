"""Bounded body decoding (`ingest.gateway.body`): gzip in linear time with a member cap and
the output limit held while decoding; the batch limit before anything is built (msgpack
headers, the JSON value bound); elements decoded one at a time, large ones shallowly."""

from __future__ import annotations

import gzip
import json
import os
import tracemalloc
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from ingest.gateway.app import validate_batch
from ingest.gateway.body import (
    GZIP_MAX_FEED,
    ITEM_DECODE_BYTES,
    ITEM_MAX_ENTRIES,
    JSON_VALUES_PER_SCAN,
    Gunzip,
    MsgpackItems,
    check_json_size,
    decode_json_batch,
    gunzip,
    json_values_bound,
)
from ingest.http import HttpError

NOW = 1_700_000_000_000
EMPTY_MEMBER = gzip.compress(b"")
MILLION_EMPTY_MAPS = b"\xdd\x00\x0f\x42\x40" + b"\x80" * 1_000_000


def scan(i: int = 0, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": f"evt-{i}",
        "person_id": f"person-{i}",
        "premises_id": "NT-0001",
        "scanned_at": NOW - 60_000,
        **overrides,
    }


def peak_bytes(call: Callable[[], object]) -> int:
    """Peak of Python allocations while `call` runs (its exception, if any, swallowed)."""
    tracemalloc.start()
    try:
        call()
    except (HttpError, ValueError):
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def refusal(call: Callable[[], object]) -> HttpError:
    with pytest.raises(HttpError) as info:
        call()
    return info.value


# -- gzip --------------------------------------------------------------------------------


def test_many_empty_members_cost_linear_bytes_fed_to_zlib() -> None:
    members = 20_000
    body = EMPTY_MEMBER * members
    decoder = Gunzip(limit=1024, max_members=members)
    assert decoder(body) == b""
    assert decoder.members == members
    # Feeding each member the rest of the body (what zlib's unused_data then copies) would
    # be members**2 / 2 * 20 bytes, four billion here; a doubling window stays linear.
    assert decoder.fed <= 4 * len(body) + 256


def test_large_and_small_members_round_trip_with_linear_cost() -> None:
    big = os.urandom(3 * GZIP_MAX_FEED)  # incompressible: a member longer than the window
    parts = [b"first ", big, b"", b"x" * 100_000, b"last"]
    body = b"".join(gzip.compress(p) for p in parts)
    decoder = Gunzip(limit=len(b"".join(parts)), max_members=len(parts))
    assert decoder(body) == b"".join(parts)
    assert decoder.members == len(parts)
    assert decoder.fed <= 2 * len(body) + len(parts) * 256


def test_member_cap_is_400_before_decoding_the_rest() -> None:
    decoder = Gunzip(limit=1 << 20, max_members=16)
    error = refusal(lambda: decoder(EMPTY_MEMBER * 1_000_000))
    assert (error.status, error.code) == (400, "too_many_gzip_members")
    assert decoder.members == 16 and decoder.fed <= 17 * 64


def test_output_limit_holds_while_decoding_and_every_kept_byte_is_reserved() -> None:
    reserved: list[int] = []
    bomb = gzip.compress(b"\0" * 50_000_000)
    decoder = Gunzip(limit=1_000_000, max_members=1, reserve=reserved.append)
    error = refusal(lambda: decoder(bomb))
    assert (error.status, error.code) == (413, "body_too_large")
    assert sum(reserved) <= 1_000_000
    kept: list[int] = []
    data = os.urandom(300_000)
    assert Gunzip(len(data), 1, kept.append)(gzip.compress(data)) == data
    assert sum(kept) == len(data)


def test_a_refused_reservation_stops_decoding() -> None:
    def reserve(n: int) -> None:
        raise HttpError(503, "in_flight_bytes", "full")

    error = refusal(lambda: Gunzip(1 << 20, 4, reserve)(gzip.compress(b"x" * 1000)))
    assert error.status == 503


@pytest.mark.parametrize(
    "body",
    [
        b"not gzip at all",
        gzip.compress(b'{"scans": []}')[:-6],  # truncated
        gzip.compress(b"{}") + b"\0\0\0\0",  # padding after the last member
        gzip.compress(b"{}") + b"garbage",
    ],
)
def test_bad_gzip_is_400(body: bytes) -> None:
    error = refusal(lambda: gunzip(body, 1 << 20, 16))
    assert (error.status, error.code) == (400, "bad_gzip")


def test_empty_body_stays_empty() -> None:
    assert gunzip(b"", 1024, 1) == b""


# -- JSON --------------------------------------------------------------------------------


def test_json_value_bound_is_never_below_the_values_held() -> None:
    for obj in ([], {}, [1, [2, {"a": [3, 4]}]], {"scans": [scan(i) for i in range(5)]}, "x"):
        text = json.dumps(obj).encode()
        held = _count_values(obj)
        assert json_values_bound(text) >= held


def _count_values(obj: object) -> int:
    if isinstance(obj, list):
        return 1 + sum(_count_values(v) for v in obj)
    if isinstance(obj, dict):
        return 1 + sum(1 + _count_values(v) for v in obj.values())
    return 1


def test_a_million_empty_json_maps_are_refused_without_building_them() -> None:
    body = b'{"scans": [' + b",".join([b"{}"] * 1_000_000) + b"]}"
    error = refusal(lambda: decode_json_batch(body, 10_000))
    assert (error.status, error.code) == (413, "batch_too_large")
    # one pass that copies the body at most (building the maps would be 70 MB)
    assert peak_bytes(lambda: decode_json_batch(body, 10_000)) < len(body) + (1 << 20)


def test_a_json_body_too_small_to_break_the_bound_is_not_counted() -> None:
    cap = 10 * JSON_VALUES_PER_SCAN + 8
    check_json_size(b"[" * (2 * cap - 1), 10)  # could not hold more than cap values
    error = refusal(lambda: check_json_size(b"[" * (2 * cap + 2), 10))
    assert error.code == "batch_too_large"


def test_deep_json_nesting_is_refused_by_the_bound() -> None:
    error = refusal(lambda: check_json_size(b"[" * 2_000_000, 10_000))
    assert error.code == "batch_too_large"


def test_a_full_batch_of_scans_with_every_field_passes_the_bound() -> None:
    full = scan(0, kind="checkout", gateway_id="gw:1", received_at=NOW, schema=1)
    full["scanned_at"] = "2023-11-14T22:03:20.123+07:00"
    items = [{**full, "event_id": f"urn:evt:{i},a"} for i in range(1000)]
    check_json_size(json.dumps({"scans": items}).encode(), 1000)
    assert 2 * json_values_bound(json.dumps(full).encode()) <= JSON_VALUES_PER_SCAN


# -- msgpack -----------------------------------------------------------------------------


@pytest.mark.parametrize("as_map", [False, True])
def test_a_million_empty_maps_are_refused_from_the_header(as_map: bool) -> None:
    body = MILLION_EMPTY_MAPS
    if as_map:
        body = b"\x81\xa5scans" + body
    error = refusal(lambda: MsgpackItems(body, 10_000))
    assert (error.status, error.code, error.detail) == (
        413,
        "batch_too_large",
        "1000000 scans > 10000 per request",
    )
    assert peak_bytes(lambda: MsgpackItems(body, 10_000)) < 256 * 1024


def test_a_header_claiming_billions_on_five_bytes_is_refused() -> None:
    error = refusal(lambda: MsgpackItems(b"\xdd\xff\xff\xff\xff", 10_000))
    assert error.code == "batch_too_large"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (msgpack.packb(7), "not_a_batch"),
        (b"\xc1", "undecodable"),
        (b"", "undecodable"),
        (msgpack.packb({"scans": [], "extra": 1}), "not_a_batch"),
        (msgpack.packb({"extra": []}), "not_a_batch"),
        (msgpack.packb({1: []}), "not_a_batch"),
        (msgpack.packb({}), "not_a_batch"),
        (msgpack.packb({"scans": {}}), "not_a_batch"),
        (msgpack.packb([{}, {}])[:-1], "undecodable"),  # truncated
        (msgpack.packb([{}]) + b"\x00", "undecodable"),  # bytes after the batch
        (b"\x91" * 5000 + b"\x80", "undecodable"),  # deeper than msgpack's stack
    ],
)
def test_malformed_msgpack_bodies(body: bytes, code: str) -> None:
    def decode() -> None:
        MsgpackItems(body, 10_000).check()

    error = refusal(decode)
    assert (error.status, error.code) == (400, code)


def test_elements_are_decoded_one_at_a_time_with_their_raw_bytes() -> None:
    elements = [scan(0), "not a map", scan(2, kind="bogus"), {"a": [1] * 100}]
    raws = [msgpack.packb(e) for e in elements] + [b"\x81\xa1a\xa2\xff\xfe"]  # not UTF-8
    items = MsgpackItems(b"\x95" + b"".join(raws), 10)
    items.check()
    assert len(items) == 5
    assert [items.raw(i) for i in range(5)] == raws
    assert [items.item(i) for i in range(4)] == elements
    with pytest.raises(ValueError, match="undecodable"):
        items.item(4)


def test_a_large_map_is_read_up_to_its_first_unknown_key() -> None:
    pad = b"\xdb" + (ITEM_DECODE_BYTES).to_bytes(4, "big") + b"p" * ITEM_DECODE_BYTES
    many = 1_000_000
    element = b"\xdf" + many.to_bytes(4, "big") + b"\xa8event_id\xa1e\xa5extra" + pad
    items = MsgpackItems(b"\x91" + element + b"\xa1k\x00" * (many - 2), 10)
    assert items.item(0) == {"event_id": "e", "extra": "p" * ITEM_DECODE_BYTES}
    repeated = b"\xa4kind\xa7checkin" * (ITEM_MAX_ENTRIES + 1)
    element = b"\xde" + (ITEM_MAX_ENTRIES + 2).to_bytes(2, "big") + repeated + b"\xa1x" + pad
    items = MsgpackItems(b"\x91" + element, 10)
    with pytest.raises(ValueError, match="undecodable"):
        items.item(0)  # known keys repeated past the cap


def test_a_nested_bomb_inside_one_element_is_never_built() -> None:
    inner = b"\xdd" + (2_000_000).to_bytes(4, "big") + b"\x80" * 2_000_000
    bombs = [
        b"\x91" + inner,  # an element that is a huge array
        b"\x81\xa8event_id" + inner,  # a map whose value is one
        b"\x82\xa8event_id\xa1e\xa5extra" + b"\x91" * 100 + inner,  # nested deeper
    ]
    for element in bombs:
        body = b"\x91" + element
        items = MsgpackItems(body, 10)

        def validate(items: MsgpackItems = items) -> None:
            validate_batch(items, gateway_id="gw", received_at=NOW, max_skew_ms=0)

        # the unpacker's window grows to the element while skipping it: its bytes, once
        assert peak_bytes(validate) < len(body) + (1 << 20)
    items = MsgpackItems(b"\x91" + bombs[1], 10)
    events, rejected, dead = validate_batch(items, gateway_id="gw", received_at=NOW, max_skew_ms=0)
    assert events == [] and [r["reason"] for r in rejected] == ["wrong_type"]
    assert dead[0].raw == bombs[1][: 64 * 1024] and "raw cut from" in dead[0].detail


def test_a_large_element_read_shallowly_gets_the_same_verdict() -> None:
    big_id = "x" * (2 * ITEM_DECODE_BYTES)
    cases = [
        scan(0, person_id=big_id),  # id_too_long
        scan(0, extra=big_id),  # unknown_field
        {**scan(0), "kind": [1000] * 50_000},  # wrong_type
        big_id,  # not_a_map
        [big_id],  # not_a_map
    ]
    for element in cases:
        raw = msgpack.packb(element)
        assert len(raw) > ITEM_DECODE_BYTES
        lazy = MsgpackItems(msgpack.packb([element]), 10)
        _, got, _ = validate_batch(lazy, gateway_id="gw", received_at=NOW, max_skew_ms=0)
        _, want, _ = validate_batch([element], gateway_id="gw", received_at=NOW, max_skew_ms=0)
        assert [(r["reason"], r["field"]) for r in got] == [
            (r["reason"], r["field"]) for r in want
        ], element if isinstance(element, dict) else type(element)


def test_large_element_with_a_non_string_key_is_undecodable() -> None:
    element = b"\x82\x01\x02\xa5extra\xdb" + (200_000).to_bytes(4, "big") + b"y" * 200_000
    lazy = MsgpackItems(b"\x91" + element, 10)
    _, rejected, dead = validate_batch(lazy, gateway_id="gw", received_at=NOW, max_skew_ms=0)
    assert [r["reason"] for r in rejected] == ["undecodable"]
    assert len(dead) == 1
