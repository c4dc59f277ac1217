"""Property tests for the codecs and the contract: round trips, and "only ScanRejected"."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.codec import decode_json, decode_msgpack, encode_json, encode_msgpack
from ingest.contract import (
    FIELDS,
    MAX_ID_LEN,
    MAX_SCANNED_AT_MS,
    MIN_SCANNED_AT_MS,
    Reason,
    ScanEvent,
    ScanRejected,
    parse_scan,
)

# Fixed server clock at the top of the valid range: every valid scanned_at is "not future".
NOW = MAX_SCANNED_AT_MS
REASONS = frozenset(get_args(Reason))

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_VI_LETTERS = (
    "aăâbcdđeêghiklmnoôơpqrstuưvxyàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ"
)
VIETNAMESE = st.text(
    alphabet=_VI_LETTERS + _VI_LETTERS.upper() + "0123456789 -_.", min_size=1, max_size=64
)
# Printable characters from all of Unicode; spaces are printable, other separators are not.
PRINTABLE = st.text(
    alphabet=st.characters(
        exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"),
        include_characters=" ",
    ),
    min_size=1,
    max_size=64,
)
IDS = st.one_of(
    PRINTABLE,
    VIETNAMESE,
    # Decomposed (NFD) Vietnamese: combining marks, longer in code points; cap at 64.
    VIETNAMESE.map(lambda s: unicodedata.normalize("NFD", s)[:MAX_ID_LEN]),
).filter(lambda s: 0 < len(s) <= MAX_ID_LEN and s.isprintable())
TIMES = st.integers(MIN_SCANNED_AT_MS, MAX_SCANNED_AT_MS)

EVENTS = st.builds(
    ScanEvent,
    event_id=IDS,
    person_id=IDS,
    premises_id=IDS,
    scanned_at=TIMES,
    kind=st.sampled_from(["checkin", "checkout"]),
    gateway_id=st.one_of(st.just(""), IDS),
    received_at=st.one_of(st.none(), TIMES),
)


# --- (a) round trips -------------------------------------------------------------------


@PROPS
@given(EVENTS)
def test_round_trip(event: ScanEvent) -> None:
    assert decode_msgpack(encode_msgpack(event), now=NOW) == event
    assert decode_json(encode_json(event), now=NOW) == event
    assert parse_scan(event.to_wire(), now=NOW) == event


@PROPS
@given(
    ms=TIMES,
    offset_minutes=st.integers(-(23 * 60 + 59), 23 * 60 + 59),
    timespec=st.sampled_from(["auto", "minutes", "seconds", "milliseconds", "microseconds"]),
    extra_us=st.integers(0, 999),
)
def test_python_isoformat_parses_to_exact_ms(
    ms: int, offset_minutes: int, timespec: str, extra_us: int
) -> None:
    """Whatever offset and precision, an ISO string means the same instant, to the ms."""
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    if ms < MAX_SCANNED_AT_MS:
        instant += timedelta(microseconds=extra_us)  # sub-ms digits are truncated
    local = instant.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = local.isoformat(timespec=timespec)
    shown = datetime.fromisoformat(text)
    expected = (shown - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    if expected < MIN_SCANNED_AT_MS:  # "minutes" precision can drop below the lower bound
        return
    obj = ScanEvent("e", "p", "x", MIN_SCANNED_AT_MS).to_wire() | {"scanned_at": text}
    assert parse_scan(obj, now=NOW).scanned_at == expected


# --- (b) arbitrary bytes ----------------------------------------------------------------


def _decodes_or_rejects(decode: Any, data: bytes) -> None:
    try:
        event = decode(data, now=NOW)
    except ScanRejected as exc:
        _check_rejection(exc)
    else:
        _check_event(event)


def _check_rejection(exc: ScanRejected) -> None:
    assert exc.reason in REASONS
    assert exc.field is None or (
        isinstance(exc.field, str) and len(exc.field) <= MAX_ID_LEN and exc.field.isprintable()
    )
    assert len(str(exc)) < 1000
    json.dumps(exc.as_dict())


def _check_event(event: ScanEvent) -> None:
    for value in (event.event_id, event.person_id, event.premises_id):
        assert isinstance(value, str)
        assert 0 < len(value) <= MAX_ID_LEN
        assert value.isprintable()
    assert isinstance(event.scanned_at, int)
    assert not isinstance(event.scanned_at, bool)
    assert MIN_SCANNED_AT_MS <= event.scanned_at <= NOW
    assert event.kind in ("checkin", "checkout")
    # Whatever we accept we can write back out, in both codecs.
    assert decode_msgpack(encode_msgpack(event), now=NOW) == event
    assert decode_json(encode_json(event), now=NOW) == event


# Arbitrary bytes, plus bytes that are nearly right (valid encodings, cut or flipped).
def _corrupt(data: bytes, cut: int, flip: int, byte: int) -> bytes:
    if not data:
        return data
    i = flip % len(data)
    return (data[:i] + bytes([byte]) + data[i + 1 :])[: max(cut, 1)]


BYTES = st.one_of(
    st.binary(max_size=256),
    st.builds(
        _corrupt,
        st.one_of(EVENTS.map(encode_msgpack), EVENTS.map(encode_json)),
        st.integers(0, 400),
        st.integers(0, 400),
        st.integers(0, 255),
    ),
    st.text(max_size=64).map(lambda s: s.encode("utf-8", "surrogatepass")),
)


@PROPS
@given(BYTES)
def test_random_bytes_only_rejects(data: bytes) -> None:
    _decodes_or_rejects(decode_msgpack, data)
    _decodes_or_rejects(decode_json, data)


def test_deep_nesting_only_rejects() -> None:
    for data in (b"[" * 100_000, b'{"a":' * 100_000, b"\x91" * 100_000, b"\x81\xa1a" * 100_000):
        _decodes_or_rejects(decode_json, data)
        _decodes_or_rejects(decode_msgpack, data)


# --- (c) mutated valid events --------------------------------------------------------------

# Past 64 bits (msgpack's limit) and past str(int)'s 4300-digit limit. Built by `map` so
# that hypothesis never has to repr a huge literal in the strategy itself.
HUGE_INTS = st.one_of(
    st.sampled_from([2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30]),
    st.builds(lambda e, sign: sign * 10**e, st.integers(4290, 5000), st.sampled_from([1, -1])),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.binary(max_size=80),
    st.sampled_from(["checkin", "checkout", "", "2021-11-20T08:00:00+07:00", "2021-11-20"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), inner, max_size=4),
    ),
    max_leaves=6,
)
UNKNOWN_KEYS = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=20),
    st.integers(),
    HUGE_INTS,
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
).filter(lambda k: k not in FIELDS)


# Mutations start from plain events: rich ids are covered above and cost generation time.
PLAIN_EVENTS = st.builds(
    ScanEvent,
    event_id=st.sampled_from(["e-1", "Sự kiện 2"]),
    person_id=st.sampled_from(["p-1", "Người 7"]),
    premises_id=st.sampled_from(["HN-0001", "Chợ Bến Thành"]),
    scanned_at=TIMES,
    kind=st.sampled_from(["checkin", "checkout"]),
    gateway_id=st.sampled_from(["", "gw-1"]),
    received_at=st.one_of(st.none(), TIMES),
)


@st.composite
def mutated_maps(draw: st.DrawFn) -> dict[Any, Any]:
    wire: dict[Any, Any] = draw(PLAIN_EVENTS).to_wire()
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["drop", "replace", "add"]))
        if op == "drop" and wire:
            del wire[draw(st.sampled_from(list(wire)))]
        elif op == "replace":
            wire[draw(st.sampled_from(sorted(FIELDS)))] = draw(VALUES)
        else:
            wire[draw(UNKNOWN_KEYS)] = draw(VALUES)
    return wire


def _parses_or_rejects(obj: object, **kwargs: Any) -> None:
    try:
        event = parse_scan(obj, now=NOW, **kwargs)
    except ScanRejected as exc:
        _check_rejection(exc)
    else:
        _check_event(event)


@PROPS
@given(mutated_maps())
def test_mutated_map_only_rejects(obj: dict[Any, Any]) -> None:
    _parses_or_rejects(obj)
    _parses_or_rejects(obj, gateway_id="gw-1", received_at=NOW)
    try:
        packed = msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, ValueError):  # ints beyond 64 bits: no producer can send them
        pass
    else:
        _decodes_or_rejects(decode_msgpack, packed)
    try:
        text = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):  # bytes values, tuple keys, ints past 4300 digits
        pass
    else:
        _decodes_or_rejects(decode_json, text)


@PROPS
@given(VALUES)
def test_any_value_parse_only_rejects(obj: object) -> None:
    _parses_or_rejects(obj)
