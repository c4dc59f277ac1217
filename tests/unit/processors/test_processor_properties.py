"""Property tests for the processors core: the accounting identity and at-most-once output
on random streams, the fast decode path against the contract, and the invariances the
docstrings promise (expire changes no result; a released premises gives what a known one
would have)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processors_testkit import (
    DAY,
    HOUR,
    MINUTE,
    NOW,
    SECOND,
    assert_balanced,
    make_core,
    pack,
    premises,
    wire,
)

from ingest.contract import (
    DEFAULT_MAX_SKEW_MS,
    FIELDS,
    MAX_SCANNED_AT_MS,
    MIN_SCANNED_AT_MS,
    ScanRejected,
    parse_scan,
)
from ingest.wire import fast_scan
from processors.core import ProcessorCore, Result
from processors.records import EnrichedRow, RawRecord

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PERSONS = ["p0", "p1", "p2", "p3"]
KNOWN = ["K0", "K1", "K2"]
UNKNOWN = ["U0", "U1", "U2"]


# -- random streams -------------------------------------------------------------------------


@dataclass(frozen=True)
class New:
    person: int
    premises: str
    kind: str
    scanned_minutes_ago: int  # negative: from the future, beyond the skew below -5
    received_ago: int | None  # received_at = now - this many ms, or processing time


@dataclass(frozen=True)
class Dup:  # resend an earlier record, byte for byte
    back: int


@dataclass(frozen=True)
class Tap:  # a new event_id for the same person, premises and kind, a few seconds apart
    back: int
    delta_s: int


@dataclass(frozen=True)
class Junk:
    value: bytes | None


@dataclass(frozen=True)
class Invalid:
    field: str
    value: Any


SPEC = st.one_of(
    st.builds(
        New,
        person=st.integers(0, len(PERSONS) - 1),
        premises=st.sampled_from(KNOWN + UNKNOWN),
        kind=st.sampled_from(["checkin", "checkout"]),
        scanned_minutes_ago=st.integers(-10, 3 * 24 * 60),
        received_ago=st.one_of(st.none(), st.integers(0, 10 * MINUTE)),
    ),
    st.builds(Dup, back=st.integers(0, 50)),
    st.builds(Dup, back=st.integers(0, 50)),
    st.builds(Tap, back=st.integers(0, 50), delta_s=st.integers(-600, 600)),
    st.builds(Junk, value=st.one_of(st.none(), st.binary(max_size=12))),
    st.builds(
        Invalid,
        field=st.sampled_from(["kind", "event_id", "scanned_at", "extra"]),
        value=st.sampled_from(["exit", "", 7, None, "2021-13-01T00:00:00Z"]),
    ),
)


@dataclass(frozen=True)
class Batch:
    specs: list[Any]
    step_ms: int


@dataclass(frozen=True)
class Register:
    premises_id: str
    step_ms: int


@dataclass(frozen=True)
class Expire:
    step_ms: int


OPS = st.lists(
    st.one_of(
        st.builds(Batch, specs=st.lists(SPEC, max_size=25), step_ms=st.integers(0, 3 * HOUR)),
        st.builds(Register, premises_id=st.sampled_from(UNKNOWN), step_ms=st.integers(0, HOUR)),
        st.builds(Expire, step_ms=st.integers(0, 3 * HOUR)),
    ),
    max_size=25,
)


class Stream:
    """Turns specs into records, deterministically, remembering what it sent."""

    def __init__(self) -> None:
        self.sent: list[bytes | None] = []
        self.valid: list[dict[str, Any]] = []
        self.offset = 0
        self.serial = 0

    def _event_id(self) -> str:
        self.serial += 1
        return f"ev-{self.serial}"

    def record(self, spec: Any, now: int) -> RawRecord:
        value: bytes | None
        if isinstance(spec, New):
            received = None if spec.received_ago is None else now - spec.received_ago
            obj = wire(
                self._event_id(),
                person_id=PERSONS[spec.person],
                premises_id=spec.premises,
                kind=spec.kind,
                scanned_at=now - spec.scanned_minutes_ago * MINUTE,
                received_at=received,
            )
            self.valid.append(obj)
            value = pack(obj)
        elif isinstance(spec, Dup) and self.sent:
            value = self.sent[-1 - spec.back % len(self.sent)]
        elif isinstance(spec, Tap) and self.valid:
            base = self.valid[-1 - spec.back % len(self.valid)]
            obj = dict(
                base,
                event_id=self._event_id(),
                scanned_at=base["scanned_at"] + spec.delta_s * SECOND,
                received_at=None,
            )
            self.valid.append(obj)
            value = pack(obj)
        elif isinstance(spec, Invalid):
            obj = wire(self._event_id(), premises_id=KNOWN[0])
            obj[spec.field] = spec.value
            value = pack(obj)
        elif isinstance(spec, Junk):
            value = spec.value
        else:  # a Dup or Tap before anything was sent
            value = pack(wire(self._event_id(), premises_id=KNOWN[0]))
        self.sent.append(value)
        self.offset += 1
        return RawRecord(value, "scans.raw", 0, self.offset)


def run(core: ProcessorCore, ops: list[Any]) -> tuple[int, list[Result]]:
    stream = Stream()
    now = NOW
    fed = 0
    results = []
    for op in ops:
        now += op.step_ms
        if isinstance(op, Batch):
            records = [stream.record(spec, now) for spec in op.specs]
            fed += len(records)
            result = core.process(records, now)
        elif isinstance(op, Register):
            result = core.upsert_premises(premises(op.premises_id), now)
        else:
            result = core.expire(now)
        assert_balanced(core, result)
        results.append(result)
    return fed, results


@PROPS
@given(ops=OPS)
def test_every_record_is_accounted_for_and_no_event_is_output_twice(ops: list[Any]) -> None:
    # A dedup horizon longer than any stream here: no copy may come out twice. A park
    # timeout shorter than many streams: parked scans expire too.
    core = make_core(*map(premises, KNOWN), dedup_horizon_ms=30 * DAY, park_timeout_ms=4 * HOUR)
    fed, results = run(core, ops)
    c = core.counts
    assert c.received == fed
    assert fed == c.enriched + c.duplicates + c.repeats + c.dead + c.parked
    out = [row[0] for r in results for row in r.rows]
    assert len(out) == len(set(out)) == c.enriched
    expired = {
        d.event_id for r in results for d in r.dead_letters if d.reason == "unknown_premises"
    }
    assert not expired & set(out)
    assert all(d.stage == "worker" for r in results for d in r.dead_letters)
    assert sum(len(r.dead_letters) for r in results) == c.dead


@PROPS
@given(ops=OPS)
def test_expire_passes_change_no_result(ops: list[Any]) -> None:
    """With arrivals at processing time and every premises known, running `expire` between
    calls (dedup and repeat memory dropped past the 24 h horizon) changes nothing."""
    known = [*KNOWN, *UNKNOWN]
    plain, expiring = make_core(*map(premises, known)), make_core(*map(premises, known))
    plain_ops = [op for op in ops if not isinstance(op, Register)]
    _, expected = run(plain, plain_ops)
    with_expire = []
    for op in plain_ops:
        with_expire.append(op)
        if isinstance(op, Batch):
            with_expire.append(Expire(0))
    _, got = run(expiring, with_expire)
    assert [r.rows for r in got if r.counts.received or r.rows] == [
        r.rows for r in expected if r.counts.received or r.rows
    ]
    assert expiring.counts == plain.counts


def without_processed_at(rows: list[EnrichedRow]) -> list[tuple[object, ...]]:
    return [row[:-1] for row in rows]


@PROPS
@given(ops=OPS)
def test_a_released_premises_gives_what_a_known_one_would_have(ops: list[Any]) -> None:
    """Parked scans, released when their premises arrives, come out exactly (but for
    processed_at) as they would have had the premises been known all along."""
    big = {"dedup_horizon_ms": 30 * DAY, "park_timeout_ms": 30 * DAY}
    batches = [op for op in ops if isinstance(op, Batch)]
    known = make_core(*map(premises, KNOWN + UNKNOWN), **big)
    late = make_core(*map(premises, KNOWN), **big)
    _, from_known = run(known, batches)
    _, from_late = run(late, [*batches, Register("U0", 0), Register("U1", 0), Register("U2", 0)])
    for pid in UNKNOWN:
        expected = [row for r in from_known for row in r.rows if row[2] == pid]
        got = [row for r in from_late for row in r.rows if row[2] == pid]
        assert without_processed_at(got) == without_processed_at(expected)
    assert (late.counts.enriched, late.counts.repeats, late.counts.duplicates) == (
        known.counts.enriched,
        known.counts.repeats,
        known.counts.duplicates,
    )
    assert late.counts.parked == 0


# -- the fast decode path agrees with the contract ------------------------------------------

LATEST = NOW + DEFAULT_MAX_SKEW_MS
EDGE_INT_VALUES = [
    MIN_SCANNED_AT_MS - 1,
    MIN_SCANNED_AT_MS,
    MAX_SCANNED_AT_MS,
    MAX_SCANNED_AT_MS + 1,
    LATEST - 1,
    LATEST,
    LATEST + 1,
    0,
    1,
    2,
    -1,
    2**64,
]
EDGE_INTS = st.sampled_from(EDGE_INT_VALUES)
# Strings around every boundary of an id: empty, 64/65 characters, non-printable.
IDS = st.one_of(
    st.text(max_size=66),
    st.text(min_size=63, max_size=66),
    st.sampled_from(["", "x" * 64, "x" * 65, "e\x00", "\u00a0", "a\u2028", "Đà Lạt"]),
)
SMALL = st.sampled_from([None, True, False, 0, 1, 2, -1, 1.0, "1", "", b"x"])
VALUES = st.one_of(
    SMALL,
    SMALL,
    EDGE_INTS,
    st.integers(MIN_SCANNED_AT_MS - DAY, LATEST + DAY),
    st.floats(allow_nan=False),
    st.sampled_from(["checkin", "checkout", "Checkin", "checkin\x00"]),
    st.sampled_from(["2023-11-14T22:03:20Z", "2023-11-14T22:03:20", "2099-12-31T23:59:59+00:00"]),
    IDS,
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
)
KEYS = st.one_of(st.sampled_from(sorted(FIELDS)), st.text(max_size=3), st.binary(max_size=2))
VALID_IDS = st.one_of(
    st.text(st.characters(categories=["L", "M", "N", "P", "S", "Zs"]), min_size=1, max_size=64),
    st.sampled_from(["x" * 64, "Đà Lạt", "a"]),
)


_ID_EDGES = ["", "x" * 64, "x" * 65, "e\x00", "\u2028", "\u00a0", 7, None, b"id", True]
_TIME_EDGES = [
    *EDGE_INT_VALUES,
    *[True, False, 1.5, None, "2023-11-14T22:03:20Z", "2023-11-14T22:03:20"],
]
# For each field, values around its boundaries: valid, invalid, or valid only the slow way.
EDGES: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(
        ["event_id", "person_id", "premises_id", "gateway_id"], st.sampled_from(_ID_EDGES)
    ),
    "scanned_at": st.sampled_from(_TIME_EDGES),
    "received_at": st.sampled_from(_TIME_EDGES),
    "kind": st.sampled_from(["checkin", "checkout", "Checkin", "", None, 1, b"checkin"]),
    "schema": st.sampled_from([1, 2, 0, -1, True, False, 1.0, "1", None]),
    "extra": VALUES,
}


@st.composite
def scan_maps(draw: st.DrawFn) -> object:
    """A valid scan with a field or two dropped or set to a value at its edge; sometimes
    anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(VALUES, st.dictionaries(KEYS, VALUES, max_size=9)))
    obj: dict[Any, Any] = wire(
        draw(VALID_IDS),
        person_id=draw(VALID_IDS),
        premises_id=draw(VALID_IDS),
        gateway_id=draw(st.one_of(st.just(""), VALID_IDS)),
        scanned_at=draw(st.integers(MIN_SCANNED_AT_MS, LATEST)),
        kind=draw(st.sampled_from(["checkin", "checkout"])),
        received_at=draw(st.one_of(st.none(), st.integers(MIN_SCANNED_AT_MS, MAX_SCANNED_AT_MS))),
    )
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        key = draw(st.sampled_from(sorted(EDGES)))
        if draw(st.integers(0, 4)) == 0:
            obj.pop(key, None)
        else:
            obj[key] = draw(EDGES[key])
    return obj


@settings(max_examples=1000, deadline=None)
@given(obj=scan_maps())
def test_the_fast_path_never_disagrees_with_parse_scan(obj: object) -> None:
    try:
        data = msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        return  # not encodable, so never on the wire
    scan = fast_scan(data, LATEST)
    if scan is None:
        return  # parse_scan decides, whatever it decides
    decoded = msgpack.unpackb(data, raw=False, strict_map_key=True, timestamp=0)
    event = parse_scan(decoded, now=NOW, max_skew_ms=DEFAULT_MAX_SKEW_MS)
    assert (
        scan.event_id,
        scan.person_id,
        scan.premises_id,
        scan.scanned_at,
        scan.kind,
        scan.gateway_id,
        scan.received_at,
    ) == (
        event.event_id,
        event.person_id,
        event.premises_id,
        event.scanned_at,
        event.kind,
        event.gateway_id,
        event.received_at,
    )


@pytest.mark.parametrize(
    "obj",
    [
        wire("e1"),
        wire("e1", received_at=NOW, gateway_id=""),
        {k: v for k, v in wire("e1").items() if k not in ("kind", "gateway_id", "schema")},
        wire("Đà Lạt", person_id="x" * 64, kind="checkout", scanned_at=LATEST),
    ],
)
def test_plain_valid_scans_take_the_fast_path(obj: dict[str, Any]) -> None:
    assert fast_scan(pack(obj), LATEST) is not None


@pytest.mark.parametrize(
    "obj",
    [
        wire("e1", scanned_at="2023-11-14T22:03:20Z"),  # valid, but the slow path's job
        wire("e1", scanned_at=LATEST + 1),
        wire("e1", schema=True),
        wire("e1", received_at=False),
        wire("e1", gateway_id=None),
        wire("e\x00"),
        wire("e1", gateway_id="gw\n"),
        wire("e1", extra=1),
    ],
)
def test_unusual_scans_leave_the_fast_path(obj: dict[str, Any]) -> None:
    assert fast_scan(pack(obj), LATEST) is None


def test_trailing_bytes_and_bad_utf8_leave_the_fast_path() -> None:
    assert fast_scan(pack(wire("e1")) + b"\x00", LATEST) is None
    assert fast_scan(pack(wire("e1")).replace(b"e1", b"\xed\xa0"), LATEST) is None


def test_contract_rejects_what_the_fast_path_sends_it_for_bools() -> None:
    with pytest.raises(ScanRejected):
        parse_scan(wire("e1", schema=True), now=NOW)
