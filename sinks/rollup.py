"""The report rollup `premises_daily`: scans and distinct scanners per premises and local day.

Why recomputed and not fed by a materialized view: an insert-time view counts every
inserted row, so a replayed insert with other batch boundaries (other dedup tokens) would
count twice, and a distinct count of scanners cannot be merged across inserts without
keeping person ids (or their hashes) in the rollup. Instead the sink remembers the local
days its inserts touched and, every `rollup_seconds`, recomputes those days from `scans`
with `uniqExact(event_id)` and `uniqExact(person_id)`: exact whatever duplicates `scans`
still holds, and the rollup keeps plain numbers only. `premises_daily` is a
ReplacingMergeTree(computed_at): the latest computation of a (day, premises) wins; read it
with FINAL (`sinks.queries.daily`).

A crash between an insert and the next refresh loses the sink's memory of the days: at
start the sink asks `dirty_days_sql` which days hold a scan stored after the day's last
computation. `computed_at` is set `MARGIN_S` before the refresh starts, so an insert that
was still in flight while another instance computed stays dirty until it is counted.

Days are only recomputed while none of their rows can have expired by TTL
(`refreshable`): after that the rollup of the day is final and outlives the detail rows.
A scan uploaded so late that its day is no longer refreshable is stored but not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from sinks.schema import REPORT_TZ

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


def refresh_sql(days: Sequence[date]) -> tuple[str, dict[str, object]]:
    """Recompute `days` (local) of `premises_daily` from `scans`: (sql, params)."""
    ordered = sorted(set(days))
    lo = day_start_ms(ordered[0])
    hi = day_start_ms(ordered[-1] + timedelta(days=1))
    day_expr = f"toDate(scanned_at, '{REPORT_TZ}')"
    sql = f"""
INSERT INTO premises_daily
    (day, premises_id, category, district, ward, agency, scans, scanners, computed_at)
SELECT {day_expr} AS d, premises_id,
       argMax(category, scanned_at), argMax(district, scanned_at),
       argMax(ward, scanned_at), argMax(agency, scanned_at),
       uniqExact(event_id), uniqExact(person_id),
       now64(3) - toIntervalSecond({MARGIN_S})
FROM scans
WHERE scanned_at >= fromUnixTimestamp64Milli(toInt64(%(lo)s), 'UTC')
  AND scanned_at < fromUnixTimestamp64Milli(toInt64(%(hi)s), 'UTC')
  AND {day_expr} IN %(days)s
GROUP BY d, premises_id"""  # noqa: S608  # constants only; values are bound parameters
    return sql, {"lo": lo, "hi": hi, "days": tuple(ordered)}


def dirty_days_sql() -> str:
    """Local days holding a scan stored after the day's latest rollup computation."""
    day_expr = f"toDate(scanned_at, '{REPORT_TZ}')"
    return f"""
SELECT s.d FROM (
    SELECT {day_expr} AS d, max(stored_at) AS m FROM scans GROUP BY d
) AS s
LEFT JOIN (
    SELECT day, max(computed_at) AS c FROM premises_daily GROUP BY day
) AS r ON s.d = r.day
WHERE s.m >= r.c
ORDER BY s.d"""  # noqa: S608  # constants only


def now_ms() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)
