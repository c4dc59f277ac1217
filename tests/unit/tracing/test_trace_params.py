"""The integer and time rules of the tracer's parameters: ASCII digits only, bounded in
length before `int()` sees them, every refusal a `TraceInputError` with the reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracing.trace import TraceInputError, parse_int, parse_time

OTHER_DIGITS = [
    "\u0661\u0662\u0663",  # Arabic-Indic 123
    "\uff11\uff12",  # fullwidth 12
    "\u00b2",  # superscript two: isdigit() but int() refuses it
    "\u0967",  # Devanagari one
    "\U0001d7ce",  # mathematical bold zero
]


@pytest.mark.parametrize("text", OTHER_DIGITS)
def test_other_scripts_digits_are_refused(text: str) -> None:
    with pytest.raises(TraceInputError, match="ASCII digits"):
        parse_int(text, "limit", 0, 10**6)
    with pytest.raises(TraceInputError, match="from"):
        parse_time(text, "from")


@pytest.mark.parametrize("text", ["9" * 5000, "1" * 4301, "0" * 5000 + "1" * 19])
def test_numbers_past_int_limits_are_out_of_range_not_errors(text: str) -> None:
    with pytest.raises(TraceInputError, match="from 0 to"):
        parse_int(text, "offset", 0, 2**31)
    with pytest.raises(TraceInputError, match="out of range"):
        parse_time(text, "from")


@pytest.mark.parametrize(
    "text", ["", " 5", "5 ", "1_0", "NaN", "inf", "-inf", "1e3", "0x10", "5.0", "+", "-"]
)
def test_not_integers(text: str) -> None:
    with pytest.raises(TraceInputError, match="integer"):
        parse_int(text, "limit", 0, 100)


def test_integers_in_and_out_of_range() -> None:
    assert parse_int("007", "limit", 0, 100) == 7
    assert parse_int("+5", "limit", 0, 100) == 5
    assert parse_int("-0", "limit", 0, 100) == 0
    assert parse_int("0" * 50 + "42", "limit", 0, 100) == 42
    with pytest.raises(TraceInputError, match="from 1 to 2"):
        parse_int("3", "depth", 1, 2)


def test_times() -> None:
    assert parse_time("2025-11-13T00:00:00Z", "from") == 1_762_992_000_000
    assert parse_time("2025-11-13T07:00:00+07:00", "from") == 1_762_992_000_000
    assert parse_time("1762992000000", "from") == 1_762_992_000_000
    for bad in ["2025-13-45T00:00:00Z", "2025-11-13T00:00:00", "yesterday", "-1", "+1", ""]:
        with pytest.raises(TraceInputError, match="from"):
            parse_time(bad, "from")


@given(st.text(max_size=60))
def test_any_text_is_a_value_or_a_reason(text: str) -> None:
    for parse in (lambda: parse_int(text, "n", -(10**9), 10**9), lambda: parse_time(text, "t")):
        try:
            parse()
        except TraceInputError as exc:
            assert str(exc)
