"""The report's SQL, over the rollups and the registry only (never the detail rows).

- `report_counts` (sinks migration 10): the numbers of every complete local day and ISO
  week per group, counted by the sink before the sets below expire. A period counted there
  is read from there, whatever its age: one path for every complete period, and the only
  one left once the sets are gone (past the retention).
- `premises_daily_sets`: per local day and premises, uniqExact states of keyed hashes of
  the event ids and person ids, kept for the retention. `uniqExactMerge` over the days of
  a period and the premises of a group is the exact number of distinct scans and distinct
  persons of that group: a person who scanned on several days or at several premises is
  one person. No person id is read, only the sizes of unions of hash sets. Read for the
  periods not counted yet: the current day or week, or one that ended since the sink's
  last refresh.
- `premises_daily`: which premises had a scan on which day (the inactive list), plain
  numbers kept for ever.
- `premises` read with FINAL: the registry as it stands (latest version of each premises)
  gives the groups. A premises is counted in its current agency, district and category,
  for the previous period too, so that both periods share one denominator.
- One query per period answers every table: GROUPING SETS ((agency), (district),
  (category), ()), with the dimension named from `grouping()`.

The registry is joined with GLOBAL: on a cluster the Distributed tables are both sharded
by premises_id, and GLOBAL sends the (small) registry once instead of reading it from
every shard for every shard. On one node GLOBAL changes nothing. Every function returns
`(sql, params)`; the values are bound parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

from sinks.schema import GROUP_DIMENSION, GROUP_KEY
from tracing.report.build import TOTAL, GroupKey
from tracing.report.model import Activity, InactivePremises, Period
from tracing.runner import QueryRunner, Row

Query = tuple[str, dict[str, object]]

SETS: Final = "premises_daily_sets"
COUNTS: Final = "report_counts"
_REGISTRY: Final = (
    "(SELECT premises_id, name, category, district, ward, agency FROM premises FINAL)"
)
_DIMENSION: Final = GROUP_DIMENSION
_KEY: Final = GROUP_KEY
_SETS_OF_GROUPS: Final = "GROUPING SETS ((p.agency), (p.district), (p.category), ())"


def registered() -> Query:
    """(dimension, key, premises) for every group of the registry and the province."""
    sql = f"""
SELECT {_DIMENSION} AS dimension, {_KEY} AS key, count() AS premises
FROM {_REGISTRY} AS p
GROUP BY {_SETS_OF_GROUPS}
ORDER BY dimension, key"""  # noqa: S608  # constants only
    return sql, {}


def activity(first: date, last: date) -> Query:
    """(dimension, key, active premises, distinct scans, distinct scanners) of local days
    first..last, for every group with a scan and the province."""
    sql = f"""
SELECT {_DIMENSION} AS dimension, {_KEY} AS key,
       uniqExact(d.premises_id) AS active,
       uniqExactMerge(d.scans) AS scans,
       uniqExactMerge(d.scanners) AS scanners
FROM {SETS} AS d
GLOBAL INNER JOIN {_REGISTRY} AS p ON d.premises_id = p.premises_id
WHERE d.day >= %(first)s AND d.day <= %(last)s
GROUP BY {_SETS_OF_GROUPS}
ORDER BY dimension, key"""  # noqa: S608
    return sql, {"first": first, "last": last}


def daily(first: date, last: date) -> Query:
    """(day, active premises, distinct scans, distinct scanners) of the province per day."""
    sql = f"""
SELECT d.day AS day,
       uniqExact(d.premises_id) AS active,
       uniqExactMerge(d.scans) AS scans,
       uniqExactMerge(d.scanners) AS scanners
FROM {SETS} AS d
WHERE d.day >= %(first)s AND d.day <= %(last)s
  AND d.premises_id GLOBAL IN (SELECT premises_id FROM premises)
GROUP BY day
ORDER BY day"""  # noqa: S608
    return sql, {"first": first, "last": last}


def counted(first: date, last: date) -> Query:
    """(period, first day) of the periods counted in `report_counts` starting first..last."""
    sql = f"""
SELECT DISTINCT toString(period), first_day FROM {COUNTS}
WHERE first_day >= %(first)s AND first_day <= %(last)s"""  # noqa: S608
    return sql, {"first": first, "last": last}


def activity_counted(kind: str, first: date) -> Query:
    """`activity` of a counted period: its rows in `report_counts`."""
    sql = f"""
SELECT dimension, key, active, scans, scanners
FROM {COUNTS} FINAL
WHERE period = %(kind)s AND first_day = %(first)s
ORDER BY dimension, key"""  # noqa: S608
    return sql, {"kind": kind, "first": first}


def daily_counted(days: list[date]) -> Query:
    """`daily` of counted days: the province's row of each in `report_counts`."""
    sql = f"""
SELECT first_day, active, scans, scanners
FROM {COUNTS} FINAL
WHERE period = 'day' AND dimension = 'total' AND first_day IN %(days)s
ORDER BY first_day"""  # noqa: S608
    return sql, {"days": tuple(days)}


def inactive(first: date, last: date) -> Query:
    """The registered premises without a scan on local days first..last."""
    sql = f"""
SELECT p.premises_id, p.name, p.category, p.district, p.ward, p.agency
FROM {_REGISTRY} AS p
WHERE p.premises_id GLOBAL NOT IN (
    SELECT premises_id FROM premises_daily WHERE day >= %(first)s AND day <= %(last)s
)
ORDER BY p.agency, p.district, p.name, p.premises_id"""  # noqa: S608
    return sql, {"first": first, "last": last}


def _activity(rows: list[Row]) -> dict[GroupKey, Activity]:
    return {(str(d), str(k)): Activity(int(a), int(n), int(u)) for d, k, a, n, u in rows}


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the report reads, fetched once: the input of `build.build_report`."""

    registered: Mapping[GroupKey, int]
    now: Mapping[GroupKey, Activity]
    before: Mapping[GroupKey, Activity]
    daily: Mapping[date, Activity]
    inactive: tuple[InactivePremises, ...]


def _period_activity(runner: QueryRunner, p: Period, done: set[tuple[str, date]]) -> list[Row]:
    if (p.kind, p.first) in done:
        return runner.query(*activity_counted(p.kind, p.first))
    return runner.query(*activity(p.first, p.last))


def collect(runner: QueryRunner, period: Period) -> ReportData:
    """Read the rollups and the registry for `period` and the period before it: the
    counts of what was counted, the sets of the rest."""
    previous = period.previous()
    reg = {(str(d), str(k)): int(n) for d, k, n in runner.query(*registered())}
    reg.setdefault(TOTAL, 0)
    done = {(str(k), f) for k, f in runner.query(*counted(previous.first, period.last))}
    counted_days = [d for d in (*previous.days, *period.days) if ("day", d) in done]
    rows = runner.query(*daily_counted(counted_days)) if counted_days else []
    rest = [d for d in (*previous.days, *period.days) if ("day", d) not in done]
    if rest:
        rows += [r for r in runner.query(*daily(rest[0], rest[-1])) if r[0] in set(rest)]
    days = {r[0]: Activity(int(r[1]), int(r[2]), int(r[3])) for r in rows}
    return ReportData(
        registered=reg,
        now=_activity(_period_activity(runner, period, done)),
        before=_activity(_period_activity(runner, previous, done)),
        daily=days,
        inactive=tuple(
            InactivePremises(*(str(v) for v in r))
            for r in runner.query(*inactive(period.first, period.last))
        ),
    )
