"""One parser for the times people give (ingest.timeparse): the three forms, weeks, and
the strict form the tracer API keeps."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from ingest.timeparse import (
    TimeInputError,
    check_period,
    parse_day,
    parse_instant,
    parse_strict,
    parse_week,
)

VN = ZoneInfo("Asia/Ho_Chi_Minh")
# 2021-11-17T10:30:00+07:00, a Wednesday of ISO week 46
NOW = 1_637_119_800_000
HOUR = 3_600_000
DAY = 24 * HOUR
MIDNIGHT_17 = NOW - 10 * HOUR - 30 * 60_000


def parse(text: str, end: bool = False) -> int:
    return parse_instant(text, "from", end=end, zone=VN, now=NOW)


def test_iso_with_an_offset_and_epoch_ms_as_the_contract_reads_them() -> None:
    assert parse("2021-11-17T10:30:00+07:00") == NOW
    assert parse("2021-11-17T03:30:00Z") == NOW
    assert parse(str(NOW)) == NOW
    assert parse_strict("2021-11-17T03:30:00.000Z", "from") == NOW


def test_local_dates_and_times_without_an_offset_are_in_the_zone() -> None:
    assert parse("2021-11-17") == MIDNIGHT_17
    assert parse("2021-11-17", end=True) == MIDNIGHT_17 + DAY - 1
    assert parse("2021-11-17T10:30") == NOW
    assert parse("2021-11-17 10:30:00") == NOW
    assert parse_instant("2021-11-17", "from", zone=ZoneInfo("UTC"), now=NOW) == (
        MIDNIGHT_17 + 7 * HOUR
    )


def test_relative_forms() -> None:
    assert parse("now") == NOW
    assert parse("today") == MIDNIGHT_17
    assert parse("TODAY", end=True) == MIDNIGHT_17 + DAY - 1
    assert parse("yesterday") == MIDNIGHT_17 - DAY
    assert parse("-14d") == NOW - 14 * DAY
    assert parse("-6h") == NOW - 6 * HOUR
    assert parse("-2w") == NOW - 14 * DAY
    assert parse("-30m") == NOW - 30 * 60_000


def test_the_zone_comes_from_scantrace_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCANTRACE_TIMEZONE", "UTC")
    assert parse_instant("2021-11-17", "from", now=NOW) == MIDNIGHT_17 + 7 * HOUR
    monkeypatch.setenv("SCANTRACE_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_instant("2021-11-17", "from", now=NOW)


@pytest.mark.parametrize(
    "text", ["tomorrow", "17/11/2021", "2021-11-31", "2021-11-17T25:00", "+3d", "-d", "", "1e9"]
)
def test_anything_else_is_refused_with_the_forms_it_takes(text: str) -> None:
    with pytest.raises(TimeInputError, match="from: ") as info:
        parse(text)
    assert "\n" not in str(info.value)


def test_a_time_out_of_the_contracts_range_says_so() -> None:
    with pytest.raises(TimeInputError, match="out of range"):
        parse("2019-12-31T23:00:00+00:00")
    with pytest.raises(TimeInputError, match="out of range"):
        parse("2019-12-31")


def test_the_api_keeps_the_strict_form() -> None:
    for text in ("2021-11-17", "today", "-14d", "2021-11-17T10:30"):
        with pytest.raises(TimeInputError):
            parse_strict(text, "from")


def test_weeks() -> None:
    def week(text: str) -> str:
        return parse_week(text, zone=VN, now=NOW)

    assert week("2021-W46") == "2021-W46"
    assert week("2021w46") == "2021-W46"
    for inside in ("2021-11-15", "2021-11-21", "2021-11-17T23:59:59+07:00", "today", "this"):
        assert week(inside) == "2021-W46", inside
    assert week("last") == week("-7d") == "2021-W45"
    assert week("2021-01-03") == "2020-W53"  # a Sunday of the previous ISO year
    with pytest.raises(TimeInputError, match="has no week 60"):
        week("2021-W60")
    with pytest.raises(TimeInputError, match="not an ISO week"):
        week("last week")


def test_days() -> None:
    assert parse_day("yesterday", "date", zone=VN, now=NOW) == date(2021, 11, 16)
    assert parse_day("2021-11-16T23:30:00+07:00", "date", zone=VN, now=NOW) == date(2021, 11, 16)
    assert parse_day("2021-11-16T17:30:00Z", "date", zone=VN, now=NOW) == date(2021, 11, 17)


def test_a_period_backwards_is_refused() -> None:
    check_period(NOW, NOW)
    with pytest.raises(TimeInputError, match="after its end"):
        check_period(NOW + 1, NOW)
