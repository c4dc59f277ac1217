"""Pure batch building: decoding to columns, dead rows, tokens, and the cut rules."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from sinks_testkit import DLQ, ENRICHED, NOW, PREMISES, scan_value

from ingest.deadletter import DeadLetter, encode_dead_letter
from ingest.premises import Premises, encode_premises
from sinks.batch import (
    DEAD_LETTER_COLUMNS,
    PREMISES_COLUMNS,
    SCAN_COLUMNS,
    Batcher,
    Slice,
    build_chunk,
    insert_sql,
    scan_fields,
    token,
)


def sl(values: list[bytes | None], topic: str = ENRICHED, first: int = 10) -> Slice:
    return Slice(topic, 2, list(range(first, first + len(values))), values)


def test_scan_columns_are_the_enriched_fields_without_schema() -> None:
    assert SCAN_COLUMNS[:3] == ("event_id", "person_id", "premises_id")
    assert "schema" not in SCAN_COLUMNS
    assert len(SCAN_COLUMNS) == 14


def test_token_names_topic_partition_and_offsets() -> None:
    assert token("scans.enriched", 3, 100, 149) == "scans.enriched:3:100-149"
    assert sl([b"x", b"y"]).token == f"{ENRICHED}:2:10-11"


def test_fast_path_builds_columns_in_order() -> None:
    chunk = build_chunk("scans", sl([scan_value(1), scan_value(2)]), NOW)
    assert chunk.dead == [] and chunk.skipped == 0
    cols = chunk.columnar()
    assert len(cols) == len(SCAN_COLUMNS)
    by_name = dict(zip(SCAN_COLUMNS, cols, strict=True))
    assert by_name["event_id"] == ["e1", "e2"]
    assert by_name["scanned_at"] == [NOW - 1000, NOW - 2000]
    assert by_name["received_at"] == [NOW - 500, NOW - 500]
    assert by_name["kind"] == ["checkin", "checkin"]
    assert chunk.columnar() is not cols  # fresh lists: the driver rewrites them in place
    assert chunk.offsets == [10, 11]
    assert chunk.token == f"{ENRICHED}:2:10-11"


def test_a_bad_record_becomes_a_dead_row_and_costs_only_itself() -> None:
    values: list[bytes | None] = [
        scan_value(1),
        b"\xc1not msgpack",
        msgpack.packb([1, 2]),
        msgpack.packb({"event_id": "e9"}),
        None,
        scan_value(2),
    ]
    chunk = build_chunk("scans", sl(values), NOW)
    assert dict(zip(SCAN_COLUMNS, chunk.columnar(), strict=True))["event_id"] == ["e1", "e2"]
    assert chunk.offsets == [10, 15]
    dead = [dict(zip(DEAD_LETTER_COLUMNS, r, strict=True)) for r in chunk.dead]
    assert [(d["reason"], d["offset"]) for d in dead] == [
        ("undecodable", 11),
        ("invalid", 12),  # a frame of two things that are not scans: one letter each
        ("invalid", 12),
        ("invalid", 13),
        ("undecodable", 14),
    ]
    assert all(d["stage"] == "sink" and d["topic"] == ENRICHED for d in dead)
    assert all(d["partition"] == 2 and d["at"] == NOW for d in dead)
    assert dead[0]["raw"] == b"\xc1not msgpack"
    assert [d["raw"] for d in dead[1:3]] == [b"\x01", b"\x02"]  # each its own bytes
    assert dead[3]["event_id"] == "e9"  # read from the broken record when possible
    assert "lacks" in dead[3]["detail"]


def frame(*values: bytes) -> bytes:
    """A frame as the worker writes it: a msgpack array of scan maps."""
    return msgpack.packb([msgpack.unpackb(v) for v in values])


def test_frames_become_one_row_per_scan_with_their_record_offset() -> None:
    values: list[bytes | None] = [
        frame(scan_value(1), scan_value(2), scan_value(3)),
        scan_value(4),  # a lone map, as earlier workers wrote
        frame(scan_value(5)),
    ]
    chunk = build_chunk("scans", sl(values), NOW)
    assert chunk.scans is not None and chunk.dead == []
    assert dict(zip(SCAN_COLUMNS, chunk.columnar(), strict=True))["event_id"] == [
        "e1",
        "e2",
        "e3",
        "e4",
        "e5",
    ]
    assert chunk.offsets == [10, 10, 10, 11, 12]
    assert chunk.token == f"{ENRICHED}:2:10-12"
    # a row refused by ClickHouse is dead-lettered with its own bytes, not its frame's
    assert msgpack.unpackb(chunk.raw(1)) == msgpack.unpackb(scan_value(2))
    assert chunk.raw(3) == scan_value(4)
    first, second = chunk.halves()
    assert (first.offsets, second.offsets) == ([10, 10], [10, 11, 12])
    assert msgpack.unpackb(second.raw(0)) == msgpack.unpackb(scan_value(3))


def test_a_bad_scan_in_a_frame_costs_only_itself() -> None:
    bad = msgpack.packb(dict(msgpack.unpackb(scan_value(2)), kind="sideways"))
    values: list[bytes | None] = [frame(scan_value(1), bad, scan_value(3)), scan_value(4)]
    chunk = build_chunk("scans", sl(values), NOW)
    assert dict(zip(SCAN_COLUMNS, chunk.columnar(), strict=True))["event_id"] == ["e1", "e3", "e4"]
    assert chunk.offsets == [10, 10, 11]
    [dead] = [dict(zip(DEAD_LETTER_COLUMNS, r, strict=True)) for r in chunk.dead]
    assert (dead["reason"], dead["offset"], dead["event_id"]) == ("invalid", 10, "e2")
    assert msgpack.unpackb(dead["raw"]) == msgpack.unpackb(bad)
    assert "kind" in dead["detail"]


def test_bad_bytes_inside_a_frame_cost_only_their_scan() -> None:
    good1, good3 = scan_value(1), scan_value(3)
    broken = bytearray(frame(good1, scan_value(2), good3))
    broken[broken.find(b"e2")] = 0xFF  # not UTF-8: the frame as a whole does not unpack
    truncated = frame(scan_value(4), scan_value(5))[:-10]  # the second scan cut short
    chunk = build_chunk("scans", sl([bytes(broken), truncated, b"\x90"]), NOW)
    assert dict(zip(SCAN_COLUMNS, chunk.columnar(), strict=True))["event_id"] == [
        "e1",
        "e3",
        "e4",
    ]
    assert chunk.offsets == [10, 10, 11]
    dead = [dict(zip(DEAD_LETTER_COLUMNS, r, strict=True)) for r in chunk.dead]
    assert [(d["reason"], d["offset"]) for d in dead] == [
        ("undecodable", 10),  # the scan with the bad byte, alone, its own bytes
        ("undecodable", 11),  # the truncated rest of the second frame
        ("invalid", 12),  # an empty frame
    ]
    assert dead[0]["raw"] == bytes(broken)[len(b"\x93") + len(good1) : -len(good3)]


def test_an_empty_frame_is_a_dead_letter_on_the_fast_path_too() -> None:
    chunk = build_chunk("scans", sl([scan_value(1), b"\x90"]), NOW)
    assert chunk.offsets == [10]
    assert [(r[1], r[6]) for r in chunk.dead] == [("invalid", 11)]


def test_frames_are_cut_by_rows_at_record_boundaries() -> None:
    b = Batcher(batch_rows=5, batch_seconds=1.0, framed=frozenset({ENRICHED}))
    one = scan_value(1)
    values = [frame(one, one, one), frame(one, one, one), one, frame(one, one), one]
    b.add(ENRICHED, 0, list(range(5)), values, now=0.0)
    assert b.pending() == 10
    assert b.rows_per_record(ENRICHED, 0) == 2.0
    cut = b.cut(0.1, lambda _t, _p: False)
    # 3 + 3 reaches 5 at the second record; 1 + 2 reaches 3 only: it stays for the tail
    assert [(s.first, s.last, s.rows) for s in cut] == [(0, 1, 6)]
    assert b.pending() == 4
    assert [(s.first, s.last, s.rows) for s in b.cut(1.5, lambda _t, _p: True)] == [(2, 4, 4)]
    # a topic that is not framed counts records, whatever their bytes
    plain = Batcher(batch_rows=2, batch_seconds=1.0, framed=frozenset({ENRICHED}))
    plain.add(DLQ, 0, [0, 1, 2], [frame(one, one, one)] * 3, now=0.0)
    assert [(s.first, s.last, s.rows) for s in plain.cut(0.1, lambda _t, _p: False)] == [(0, 1, 2)]


def test_a_wrongly_typed_field_leaves_the_fast_path() -> None:
    bad = msgpack.unpackb(scan_value(3))
    bad["scanned_at"] = "yesterday"
    chunk = build_chunk("scans", sl([scan_value(1), msgpack.packb(bad)]), NOW)
    assert chunk.size == 1 and chunk.first_event_id() == "e1"
    assert [(r[1], r[6]) for r in chunk.dead] == [("invalid", 11)]
    assert "scanned_at" in chunk.dead[0][2]  # the detail names the field


def test_premises_rows_and_tombstones() -> None:
    p = Premises("NT-1", "Cho", "market", "Phan Rang", lat=11.5, version=7)
    chunk = build_chunk("premises", sl([encode_premises(p), None], PREMISES), NOW)
    assert chunk.skipped == 1 and chunk.dead == []
    row = dict(zip(PREMISES_COLUMNS, chunk.rows[0], strict=True))
    assert row["premises_id"] == "NT-1" and row["version"] == 7
    assert row["dwell_minutes"] == 45 and row["lat"] == 11.5 and row["lon"] is None


def test_dead_letters_from_the_topic_keep_their_origin() -> None:
    dl = DeadLetter("worker", "bad_timestamp", b"\x01raw", "why", "scans.raw", 3, 42, NOW, "e5")
    bad = msgpack.packb({"stage": "worker", "surprise": 1})
    chunk = build_chunk("dead_letters", sl([encode_dead_letter(dl), bad], DLQ), NOW)
    assert chunk.rows == [
        ("worker", "bad_timestamp", "why", b"\x01raw", "scans.raw", 3, 42, NOW, "e5", "", "", None)
    ]
    assert [(r[0], r[1]) for r in chunk.dead] == [("sink", "invalid")]


def test_dead_letters_carry_the_scans_premises_gateway_and_time_never_the_person() -> None:
    scan = {"event_id": "e7", "person_id": "P-secret", "premises_id": "QR-UNKNOWN-1",
            "scanned_at": "2021-11-16T08:00:00+07:00", "gateway_id": "gw-2"}  # fmt: skip
    dl = DeadLetter("worker", "unknown_premises", msgpack.packb(scan), "", "scans.raw", 0, 9, NOW)
    [row] = build_chunk("dead_letters", sl([encode_dead_letter(dl)], DLQ), NOW).rows
    fields = dict(zip(DEAD_LETTER_COLUMNS, row, strict=True))
    assert (fields["premises_id"], fields["gateway_id"]) == ("QR-UNKNOWN-1", "gw-2")
    assert fields["scanned_at"] == 1_637_024_400_000
    assert "P-secret" not in repr(row[-3:])
    for raw in (b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"scanned_at": True})):
        assert scan_fields(raw) == ("", "", None)
    assert scan_fields(msgpack.packb({"premises_id": "x" * 9000})) == ("", "", None)


def test_halves_derive_their_tokens() -> None:
    chunk = build_chunk("scans", sl([scan_value(i) for i in range(5)]), NOW)
    a, b = chunk.halves()
    assert (a.size, b.size) == (2, 3)
    assert a.first_event_id() == "e0" and b.first_event_id() == "e2"
    assert a.token == f"{chunk.token}:0-2" and b.token == f"{chunk.token}:2-5"
    assert b.offsets == [12, 13, 14] and b.values == chunk.values[2:]
    assert a.halves()[1].token == f"{chunk.token}:0-2:1-2"


def test_cut_exact_sizes_and_keeps_the_rest() -> None:
    b = Batcher(batch_rows=3, batch_seconds=1.0)
    b.add("t", 0, range(100, 108), [b"v"] * 8, now=0.0)
    slices = b.cut(now=0.0, caught_up=lambda _t, _p: False)
    assert [(s.first, s.last) for s in slices] == [(100, 102), (103, 105)]
    assert b.pending() == 2 and b.first_offset("t", 0) == 106


def test_a_tail_waits_for_time_and_for_the_partition_to_catch_up() -> None:
    b = Batcher(batch_rows=10, batch_seconds=1.0, max_wait_factor=5)
    b.add("t", 0, [1, 2], [b"a", b"b"], now=0.0)
    assert b.cut(0.5, lambda _t, _p: True) == []  # too young
    assert b.cut(1.0, lambda _t, _p: False) == []  # old enough, but a backlog follows
    [s] = b.cut(1.0, lambda _t, _p: True)
    assert (s.first, s.last, s.values) == (1, 2, [b"a", b"b"])
    b.add("t", 0, [3], [b"c"], now=2.0)
    assert b.cut(6.9, lambda _t, _p: False) == []
    assert [s.first for s in b.cut(7.0, lambda _t, _p: False)] == [3]  # max wait


def test_the_tail_age_is_that_of_its_own_oldest_record() -> None:
    b = Batcher(batch_rows=3, batch_seconds=1.0)
    b.add("t", 0, [1, 2, 3, 4], [b"a", b"b", b"c", b"d"], now=0.0)
    b.add("t", 0, [5], [b"e"], now=4.0)
    assert [s.first for s in b.cut(4.0, lambda _t, _p: False)] == [1]
    # record 4 has waited 4 s (not 0 s, as record 5 has): due once caught up
    assert [(s.first, s.last) for s in b.cut(4.0, lambda _t, _p: True)] == [(4, 5)]


def test_everything_and_drop() -> None:
    b = Batcher(batch_rows=10, batch_seconds=1.0)
    b.add("t", 0, [1], [b"a"], now=0.0)
    b.add("t", 1, [5], [b"b"], now=0.0)
    b.drop([("t", 1)])
    assert [(s.partition, s.first) for s in b.cut(0.0, everything=True)] == [(0, 1)]
    assert b.pending() == 0


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(1, 60),
    rows=st.integers(1, 7),
    polls=st.lists(st.integers(1, 9), min_size=1, max_size=30),
    start=st.integers(0, 50),
)
def test_under_backlog_the_cuts_depend_on_offsets_alone(
    total: int, rows: int, polls: list[int], start: int
) -> None:
    """However the records arrive in polls, a partition with a backlog is cut at the same
    offsets: a replay after a crash rebuilds the same chunks and tokens."""
    offsets = list(range(start, start + total))
    b = Batcher(batch_rows=rows, batch_seconds=1.0)
    got: list[tuple[int, int]] = []
    i = 0
    for n in polls:
        if i >= total:
            break
        b.add("t", 0, offsets[i : i + n], [b"v"] * len(offsets[i : i + n]), now=0.0)
        i += n
        got += [(s.first, s.last) for s in b.cut(0.5, lambda _t, _p: False)]
    full = min(i, total) // rows  # complete chunks among the records read
    expected = [(start + k * rows, start + (k + 1) * rows - 1) for k in range(full)]
    assert got == expected


def test_scans_travel_with_int_times_and_convert_in_clickhouse() -> None:
    sql = insert_sql("scans", SCAN_COLUMNS)
    assert sql.startswith("INSERT INTO `scans` (event_id, person_id, premises_id, scanned_at,")
    assert "fromUnixTimestamp64Milli(scanned_at, 'UTC')" in sql
    assert "input('event_id String, person_id String, premises_id String, scanned_at Int64," in sql
    assert "received_at Nullable(Int64)" in sql and "dwell_minutes UInt16" in sql
    assert insert_sql("premises", ("premises_id", "name")) == (
        "INSERT INTO `premises` (premises_id, name) VALUES"
    )
