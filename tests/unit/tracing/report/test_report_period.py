"""Periods in Asia/Ho_Chi_Minh days: ISO weeks, their bounds in UTC, the previous one."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tracing.report.model import Period


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_an_iso_week_is_monday_to_sunday_in_vietnam_time() -> None:
    w = Period.week("2021-W46")
    assert (w.first, w.last, w.label) == (date(2021, 11, 15), date(2021, 11, 21), "2021-W46")
    assert len(w.days) == 7 and w.days[0].weekday() == 0
    # Monday 00:00 +07:00 = Sunday 17:00 UTC, to the next Monday.
    assert w.start_ms == utc_ms(2021, 11, 14, 17)
    assert w.end_ms == utc_ms(2021, 11, 21, 17)
    sunday_2330 = utc_ms(2021, 11, 21, 16, 30)
    monday_0030 = utc_ms(2021, 11, 21, 17, 30)
    assert w.start_ms <= sunday_2330 < w.end_ms
    assert not w.start_ms <= monday_0030 < w.end_ms
    assert Period.week("2021-W47").start_ms <= monday_0030


def test_previous_periods() -> None:
    assert Period.week("2021-W46").previous() == Period.week("2021-W45")
    assert Period.week("2021-W01").previous() == Period.week("2020-W53")
    d = Period.day(date(2021, 11, 16))
    assert d.previous() == Period.day(date(2021, 11, 15))
    assert d.label == "2021-11-16" and d.days == (date(2021, 11, 16),)
    assert d.end_ms - d.start_ms == 86_400_000


@pytest.mark.parametrize("text", ["2021-w46", "2021W46", " 2021-W46 "])
def test_week_spellings(text: str) -> None:
    assert Period.week(text).label == "2021-W46"


@pytest.mark.parametrize("text", ["2021-46", "W46", "2021-W54", "2021-W53", "2021-W00", ""])
def test_bad_weeks(text: str) -> None:
    with pytest.raises(ValueError, match="week"):
        Period.week(text)


def test_iso_week_year_differs_from_the_calendar_year() -> None:
    w = Period.week("2020-W53")
    assert (w.first, w.last) == (date(2020, 12, 28), date(2021, 1, 3))
    assert w.label == "2020-W53"
