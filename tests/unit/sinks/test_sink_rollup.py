"""Local days, the TTL guard and the rollup SQL."""

from __future__ import annotations

from datetime import date

from sinks.rollup import (
    DAY_MS,
    counted_periods,
    counts_sql,
    day_start_ms,
    dirty_days_sql,
    local_day,
    refresh_sql,
    refreshable,
    sets_sql,
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
    assert params["days"] == [date(2030, 3, 15), date(2030, 3, 17)]
    assert params["lo"] == day_start_ms(date(2030, 3, 15))
    assert params["hi"] == day_start_ms(date(2030, 3, 18))
    assert "uniqExact(event_id)" in sql and "uniqExact(person_id)" in sql
    assert "INSERT INTO premises_daily" in sql
    assert "FINAL" not in dirty_days_sql()


def test_sets_are_keyed_and_the_key_is_a_parameter() -> None:
    key = (123456789012345, 987654321098765)
    sql, params = sets_sql([date(2030, 3, 17)], key)
    assert (params["k0"], params["k1"]) == key
    assert str(key[0]) not in sql and str(key[1]) not in sql
    assert sql.count("sipHash64Keyed(({k0:UInt64}, {k1:UInt64}), ") == 2
    assert "person_id)" in sql and "cityHash64" not in sql
    assert "INSERT INTO premises_daily_sets" in sql
    # days without sets are dirty: the sink refills them after migration 10
    assert "premises_daily_sets" in dirty_days_sql()


def test_only_complete_periods_whose_sets_are_all_there_are_counted() -> None:
    now = day_start_ms(date(2030, 3, 20)) + 3_600_000  # Wednesday 01:00 local
    days = [date(2030, 3, 19), date(2030, 3, 20)]  # Tuesday, and today (not over)
    assert counted_periods(days, [], now, 28) == {("day", date(2030, 3, 19))}
    # The week of 11-17 March is over: counted when touched or never counted before.
    assert ("week", date(2030, 3, 11)) in counted_periods([date(2030, 3, 17)], [], now, 28)
    uncounted = [("week", date(2030, 3, 11)), ("day", date(2030, 3, 12))]
    assert counted_periods([], uncounted, now, 28) == set(uncounted)
    # A Monday past the retention: its week is never counted again (its sets are gone).
    late = day_start_ms(date(2030, 3, 11)) + 28 * DAY_MS
    assert counted_periods([date(2030, 3, 17)], [], late, 28) == {("day", date(2030, 3, 17))}


def test_counts_sql_binds_the_periods() -> None:
    sql, params = counts_sql("week", [date(2030, 3, 11), date(2030, 3, 4)])
    assert params == {
        "lo": date(2030, 3, 4),
        "hi": date(2030, 3, 18),
        "firsts": [date(2030, 3, 4), date(2030, 3, 11)],
    }
    assert "INSERT INTO report_counts" in sql and "toMonday(d.day) IN {firsts:Array(Date)}" in sql
