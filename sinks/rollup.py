"""The report rollup `premises_daily`: scans and distinct scanners per premises and local day.

Why recomputed and not fed by a materialized view: an insert-time view counts every
inserted row, so a replayed insert with other batch boundaries (other dedup tokens) would
count twice, and a distinct count of scanners cannot be merged across inserts without
keeping person ids (or their hashes) in the rollup. Instead the sink remembers the local
days its inserts touched and, every `rollup_seconds`, recomputes those days from `scans`
with `uniqExact(event_id)` and `uniqExact(person_id)`: exact whatever duplicates `scans`
still holds, and the rollup keeps plain numbers only. `premises_daily` is a
ReplacingMergeTree(computed_at): the latest computation of a (day, premises) wins; read it
with FINAL.

A crash between an insert and the next refresh loses the sink's memory of the days: at
start the sink asks `dirty_days_sql` which days hold a scan stored after the day's last
computation. `computed_at` is set `MARGIN_S` before the refresh starts, so an insert that
was still in flight while another instance computed stays dirty until it is counted.

Days are only recomputed while none of their rows can have expired by TTL
(`refreshable`): after that the rollup of the day is final and outlives the detail rows.
A scan uploaded so late that its day is no longer refreshable is stored but not counted.

The same refresh recomputes the report's keyed sets of those days (`sets_sql`, into
`premises_daily_sets`; `sinks.schema` says why no view does it) and then counts, into
`report_counts`, every complete local day and ISO week that the days touched or that was
never counted (`counted_periods`), while all of its days still have their sets. The key
is bound as a server-side query parameter (`{k0:UInt64}`), so every query here is written
for server-side parameters (`{name:Type}`), which the writer's client sends apart from
the query text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from sinks.schema import REPORT_TZ, counts_insert

PeriodKind = Literal["day", "week"]

DAY_MS: Final = 86_400_000
MARGIN_S: Final = 10
# A day is recomputed only while its earliest possible row is this far from expiring.
TTL_SAFETY_MS: Final = 3_600_000
_TZ: Final = ZoneInfo(REPORT_TZ)


def local_day(ms: int) -> date:
    """The report day (in REPORT_TZ) of an epoch-ms time."""
    return datetime.fromtimestamp(ms / 1000, tz=_TZ).date()


def day_start_ms(day: date) -> int:
    """Epoch ms of local midnight starting `day`."""
    return int(datetime(day.year, day.month, day.day, tzinfo=_TZ).timestamp() * 1000)


def _utc_offset_ms(ms: int) -> int:
    """REPORT_TZ's offset from UTC at `ms` (constant +7 h since 1975: no DST)."""
    offset = datetime.fromtimestamp(ms / 1000, tz=_TZ).utcoffset()
    return int(offset.total_seconds() * 1000) if offset is not None else 0


def refreshable(day: date, now_ms: int, retention_days: int) -> bool:
    """True while no row of `day` can have been deleted by the scans' TTL."""
    return day_start_ms(day) + retention_days * DAY_MS > now_ms + TTL_SAFETY_MS


def touched_days(scanned_at: Sequence[int], now_ms: int, retention_days: int) -> set[date]:
    """The refreshable local days of a column of scan times (epoch ms)."""
    if not scanned_at:
        return set()
    lo, hi = local_day(min(scanned_at)), local_day(max(scanned_at))
    if lo == hi:  # nearly every chunk: live scans of one day
        days = {lo}
    else:
        # Exact days, not the range between: a late upload months old must not make
        # every day since then dirty.
        offset = _utc_offset_ms(max(scanned_at))
        epoch = date(1970, 1, 1)
        days = {epoch + timedelta(days=d) for d in {(t + offset) // DAY_MS for t in scanned_at}}
    return {d for d in days if refreshable(d, now_ms, retention_days)}


def _bounds(days: Sequence[date]) -> dict[str, object]:
    ordered = sorted(set(days))
    return {
        "lo": day_start_ms(ordered[0]),
        "hi": day_start_ms(ordered[-1] + timedelta(days=1)),
        "days": ordered,
    }


_DAY: Final = f"toDate(scanned_at, '{REPORT_TZ}')"
_DAYS_OF_SCANS: Final = f"""
FROM scans
WHERE scanned_at >= fromUnixTimestamp64Milli({{lo:Int64}}, 'UTC')
  AND scanned_at < fromUnixTimestamp64Milli({{hi:Int64}}, 'UTC')
  AND {_DAY} IN {{days:Array(Date)}}
GROUP BY d, premises_id"""


def refresh_sql(days: Sequence[date]) -> tuple[str, dict[str, object]]:
    """Recompute `days` (local) of `premises_daily` from `scans`: (sql, params)."""
    sql = f"""
INSERT INTO premises_daily
    (day, premises_id, category, district, ward, agency, scans, scanners, computed_at)
SELECT {_DAY} AS d, premises_id,
       argMax(category, scanned_at), argMax(district, scanned_at),
       argMax(ward, scanned_at), argMax(agency, scanned_at),
       uniqExact(event_id), uniqExact(person_id),
       now64(3) - toIntervalSecond({MARGIN_S}){_DAYS_OF_SCANS}"""
    return sql, _bounds(days)


def sets_sql(days: Sequence[date], key: tuple[int, int]) -> tuple[str, dict[str, object]]:
    """Add the keyed hashes of the scans of `days` (local) to `premises_daily_sets`:
    (sql, params), the key `(k0, k1)` among the params, never in the text."""
    sql = f"""
INSERT INTO premises_daily_sets (day, premises_id, scans, scanners)
SELECT {_DAY} AS d, premises_id,
       uniqExactState(sipHash64Keyed(({{k0:UInt64}}, {{k1:UInt64}}), event_id)),
       uniqExactState(sipHash64Keyed(({{k0:UInt64}}, {{k1:UInt64}}), person_id)){_DAYS_OF_SCANS}"""
    return sql, {**_bounds(days), "k0": key[0], "k1": key[1]}


def dirty_days_sql() -> str:
    """Local days holding a scan stored after the day's latest rollup computation, or
    without keyed sets (after migration 10 replaced the sets, or a change of key)."""
    return f"""
SELECT s.d FROM (
    SELECT {_DAY} AS d, max(stored_at) AS m FROM scans GROUP BY d
) AS s
LEFT JOIN (
    SELECT day, max(computed_at) AS c FROM premises_daily GROUP BY day
) AS r ON s.d = r.day
LEFT JOIN (
    SELECT DISTINCT day, toUInt8(1) AS present FROM premises_daily_sets
) AS k ON s.d = k.day
WHERE s.m >= r.c OR k.present = 0
ORDER BY s.d"""  # noqa: S608  # constants only


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def counted_periods(
    days: Iterable[date],
    uncounted: Iterable[tuple[PeriodKind, date]],
    now_ms: int,
    retention_days: int,
) -> set[tuple[PeriodKind, date]]:
    """The periods to count now: the complete days among `days` and the complete weeks
    holding them, and the complete `uncounted` ones; each only while its first day is
    refreshable, so that no count is ever made from sets of which a day has expired."""
    today = local_day(now_ms)
    wanted: set[tuple[PeriodKind, date]] = set(uncounted)
    for d in days:
        wanted |= {("day", d), ("week", monday(d))}
    return {
        (kind, first)
        for kind, first in wanted
        if first + timedelta(days=1 if kind == "day" else 7) <= today
        and refreshable(first, now_ms, retention_days)
    }


def uncounted_sql(today: date) -> tuple[str, dict[str, object]]:
    """(period, first day) of the days and weeks in the sets that are over on local day
    `today` and were never counted."""
    sql = """
SELECT 'day' AS period, day FROM (
    SELECT DISTINCT day FROM premises_daily_sets WHERE day < {today:Date}
) WHERE day NOT IN (SELECT first_day FROM report_counts WHERE period = 'day')
UNION ALL
SELECT 'week' AS period, m FROM (
    SELECT DISTINCT toMonday(day) AS m FROM premises_daily_sets
    WHERE toMonday(day) < toMonday({today:Date})
) WHERE m NOT IN (SELECT first_day FROM report_counts WHERE period = 'week')"""
    return sql, {"today": today}


def counts_sql(kind: PeriodKind, firsts: Sequence[date]) -> tuple[str, dict[str, object]]:
    """Count the days, or the weeks starting on the Mondays, `firsts` into `report_counts`
    from the sets, every group of the registry as it stands: (sql, params)."""
    ordered = sorted(set(firsts))
    length = 1 if kind == "day" else 7
    period_of = "d.day" if kind == "day" else "toMonday(d.day)"
    where = (
        f"d.day >= {{lo:Date}} AND d.day < {{hi:Date}} AND {period_of} IN {{firsts:Array(Date)}}"
    )
    params: dict[str, object] = {
        "lo": ordered[0],
        "hi": ordered[-1] + timedelta(days=length),
        "firsts": ordered,
    }
    return counts_insert(kind, where), params
