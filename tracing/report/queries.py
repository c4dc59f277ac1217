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
- One query per period answers every table: the GROUPING SETS of `sinks.schema.GROUPINGS`
  (agency, district, ward, category, agency by district, agency by category, province),
  with the dimension named from `grouping()`; one more answers every day of the weeks
  read, since the suppression of a week looks at its days (`tracing.report.suppress`).
- `dead_letters`, its scan columns only (the `report` role's column grant): the QR codes
  not in the registry and the rejected scans per reason and gateway.

The registry is joined with GLOBAL: on a cluster the Distributed tables are both sharded
by premises_id, and GLOBAL sends the (small) registry once instead of reading it from
every shard for every shard. On one node GLOBAL changes nothing. Every function returns
`(sql, params)`; the values are bound parameters.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Final

from sinks.schema import GROUP_DIMENSION, GROUP_KEY, REPORT_TZ, group_sets
from tracing.report.build import TOTAL, GroupKey, monday
from tracing.report.model import Activity, InactivePremises, Period, Rejected, ReportData
from tracing.runner import QueryRunner, Row

Query = tuple[str, dict[str, object]]

SETS: Final = "premises_daily_sets"
COUNTS: Final = "report_counts"
_REGISTRY: Final = (
    "(SELECT premises_id, name, category, district, ward, agency FROM premises FINAL)"
)
_DIMENSION: Final = GROUP_DIMENSION
_KEY: Final = GROUP_KEY
_SETS_OF_GROUPS: Final = group_sets()


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
    """(day, dimension, key, active premises, distinct scans, distinct scanners) of every
    group on each local day first..last."""
    sql = f"""
SELECT d.day AS f, {_DIMENSION} AS dimension, {_KEY} AS key,
       uniqExact(d.premises_id) AS active,
       uniqExactMerge(d.scans) AS scans,
       uniqExactMerge(d.scanners) AS scanners
FROM {SETS} AS d
GLOBAL INNER JOIN {_REGISTRY} AS p ON d.premises_id = p.premises_id
WHERE d.day >= %(first)s AND d.day <= %(last)s
GROUP BY {group_sets("f, ")}
ORDER BY f, dimension, key"""  # noqa: S608
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
    """`daily` of counted days: their rows in `report_counts`."""
    sql = f"""
SELECT first_day, dimension, key, active, scans, scanners
FROM {COUNTS} FINAL
WHERE period = 'day' AND first_day IN %(days)s
ORDER BY first_day, dimension, key"""  # noqa: S608
    return sql, {"days": tuple(days)}


def cutoff() -> Query:
    """The latest computation of the rollup (epoch ms): the data's cut-off."""
    return "SELECT toUnixTimestamp64Milli(max(computed_at)) FROM premises_daily", {}


_DEAD_AT: Final = "coalesce(scanned_at, at)"
_DEAD_IN: Final = (
    f"{_DEAD_AT} >= fromUnixTimestamp64Milli(%(start)s, 'UTC')"
    f" AND {_DEAD_AT} < fromUnixTimestamp64Milli(%(end)s, 'UTC')"
)


def unregistered(period: Period) -> Query:
    """(premises id, dead-lettered scans, distinct gateways, first and last local day) of
    the QR codes read in `period` whose premises id is not in the registry."""
    sql = f"""
SELECT premises_id, count() AS scans, uniqExact(gateway_id),
       toDate(min({_DEAD_AT}), '{REPORT_TZ}'), toDate(max({_DEAD_AT}), '{REPORT_TZ}')
FROM dead_letters
WHERE reason = 'unknown_premises' AND premises_id != '' AND {_DEAD_IN}
  AND premises_id GLOBAL NOT IN (SELECT premises_id FROM premises)
GROUP BY premises_id
ORDER BY scans DESC, premises_id"""  # noqa: S608
    return sql, {"start": period.start_ms, "end": period.end_ms}


def rejected(period: Period) -> Query:
    """(reason, gateway, dead letters) of `period`, per gateway and reason."""
    sql = f"""
SELECT reason, gateway_id, count() AS n
FROM dead_letters
WHERE {_DEAD_IN}
GROUP BY reason, gateway_id
ORDER BY reason, gateway_id"""  # noqa: S608
    return sql, {"start": period.start_ms, "end": period.end_ms}


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


def _by_day(rows: list[Row]) -> dict[date, dict[GroupKey, Activity]]:
    out: dict[date, dict[GroupKey, Activity]] = {}
    for day, d, k, a, n, u in rows:
        out.setdefault(day, {})[(str(d), str(k))] = Activity(int(a), int(n), int(u))
    return out


def weeks_read(period: Period, trend_weeks: int) -> list[date]:
    """The Mondays of the weeks a report of `period` reads: its trend's, and the week of
    the period before it."""
    last = monday(period.last)
    mondays = {last - timedelta(days=7 * i) for i in range(max(trend_weeks, 1))}
    return sorted(mondays | {monday(period.previous().first)})


def collect(runner: QueryRunner, period: Period, trend_weeks: int = 8) -> ReportData:
    """Read the rollups, the registry and the dead letters for `period`, the period
    before it, and the weeks of the trend: the counts of what was counted, the sets of
    the rest."""
    mondays = weeks_read(period, trend_weeks)
    reg = {(str(d), str(k)): int(n) for d, k, n in runner.query(*registered())}
    reg.setdefault(TOTAL, 0)
    first, last = mondays[0], mondays[-1] + timedelta(days=6)
    done = {(str(k), f) for k, f in runner.query(*counted(first, last))}
    weeks: dict[date, dict[GroupKey, Activity]] = {}
    for m in mondays:
        week = Period("week", m, m + timedelta(days=6))
        if ("week", m) in done:
            weeks[m] = _activity(runner.query(*activity_counted("week", m)))
        else:
            weeks[m] = _activity(runner.query(*activity(week.first, week.last)))
    all_days = [m + timedelta(days=i) for m in mondays for i in range(7)]
    counted_days = [d for d in all_days if ("day", d) in done]
    days = _by_day(runner.query(*daily_counted(counted_days))) if counted_days else {}
    rest = {d for d in all_days if ("day", d) not in done}
    if rest:
        found = _by_day(runner.query(*daily(min(rest), max(rest))))
        days |= {d: a for d, a in found.items() if d in rest}
    # A week with no scan at all is no data, not a week of zeros.
    weeks = {m: w for m, w in weeks.items() if w.get(TOTAL, Activity()).scans}
    [(cut,)] = runner.query(*cutoff())
    return ReportData(
        registered=reg,
        weeks=weeks,
        days=days,
        inactive=tuple(
            InactivePremises(*(str(v) for v in r))
            for r in runner.query(*inactive(period.first, period.last))
        ),
        cutoff_ms=int(cut or 0),
        unregistered=tuple(
            (str(p), int(n), int(g), f, la)
            for p, n, g, f, la in runner.query(*unregistered(period))
        ),
        rejected=tuple(
            Rejected(str(r), str(g), int(n)) for r, g, n in runner.query(*rejected(period))
        ),
    )
