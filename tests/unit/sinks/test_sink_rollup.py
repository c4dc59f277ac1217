"""Local days, the TTL guard and the rollup SQL."""

from __future__ import annotations

from datetime import date

from sinks.rollup import (
    DAY_MS,
    day_start_ms,
    dirty_days_sql,
    local_day,
    refresh_sql,
    refreshable,
    touched_days,
)

# 2030-03-17 00:30 in Ho Chi Minh City is 2030-03-16 17:30 UTC.
LOCAL_0030 = (
    1_900_000_000_000 - (1_900_000_000_000 % DAY_MS) + 17 * 3_600_000 + 30 * 60_000 - DAY_MS
)


def test_local_day_is_ho_chi_minh_city_time() -> None:
    assert local_day(LOCAL_0030) == date(2030, 3, 17)
    assert local_day(LOCAL_0030 - 3_600_000) == date(2030, 3, 16)
    assert day_start_ms(date(2030, 3, 17)) == LOCAL_0030 - 30 * 60_000


def test_refreshable_while_no_row_of_the_day_can_have_expired() -> None:
    day = date(2030, 3, 17)
    start = day_start_ms(day)
    assert refreshable(day, start + 27 * DAY_MS, 28)
    assert not refreshable(day, start + 28 * DAY_MS - 1_800_000, 28)  # within the safety hour
    assert not refreshable(day, start + 40 * DAY_MS, 28)


def test_touched_days_are_exact_and_bounded_by_retention() -> None:
    now = LOCAL_0030 + 3_600_000
    assert touched_days([], now, 28) == set()
    assert touched_days([now - 1000, now - 2000], now, 28) == {date(2030, 3, 17)}
    times = [now, now - 2 * DAY_MS, now - 400 * DAY_MS]  # a scan uploaded a year late
    assert touched_days(times, now, 28) == {date(2030, 3, 17), date(2030, 3, 15)}


def test_refresh_sql_binds_the_days() -> None:
    sql, params = refresh_sql([date(2030, 3, 17), date(2030, 3, 15), date(2030, 3, 17)])
    assert params["days"] == (date(2030, 3, 15), date(2030, 3, 17))
    assert params["lo"] == day_start_ms(date(2030, 3, 15))
    assert params["hi"] == day_start_ms(date(2030, 3, 18))
    assert "uniqExact(event_id)" in sql and "uniqExact(person_id)" in sql
    assert "INSERT INTO premises_daily" in sql
    assert "FINAL" not in dirty_days_sql()
