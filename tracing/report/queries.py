"""The report's SQL, over the rollup and the registry only (never the detail rows).

- `premises_daily_sets` (sinks migration 6): per local day and premises, uniqExact states
  of cityHash64(event_id) and cityHash64(person_id). `uniqExactMerge` over the days of a
  period and the premises of a group is the exact number of distinct scans and distinct
  persons of that group: a person who scanned on several days or at several premises is
  one person. No person id is read, only the sizes of unions of hash sets.
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

from tracing.report.build import TOTAL, GroupKey
from tracing.report.model import Activity, InactivePremises, Period
from tracing.runner import QueryRunner, Row

Query = tuple[str, dict[str, object]]

SETS: Final = "premises_daily_sets"
_REGISTRY: Final = (
    "(SELECT premises_id, name, category, district, ward, agency FROM premises FINAL)"
)
_DIMENSION: Final = (
    "multiIf(grouping(p.agency) = 0, 'agency', grouping(p.district) = 0, 'district', "
    "grouping(p.category) = 0, 'category', 'total')"
)
_KEY: Final = (
    "multiIf(grouping(p.agency) = 0, p.agency, grouping(p.district) = 0, p.district, "
    "grouping(p.category) = 0, p.category, '')"
)
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


def inactive(first: date, last: date) -> Query:
    """The registered premises without a scan on local days first..last."""
    sql = f"""
SELECT p.premises_id, p.name, p.category, p.district, p.ward, p.agency
FROM {_REGISTRY} AS p
WHERE p.premises_id GLOBAL NOT IN (
    SELECT premises_id FROM {SETS} WHERE day >= %(first)s AND day <= %(last)s
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


def collect(runner: QueryRunner, period: Period) -> ReportData:
    """Read the rollup and the registry for `period` and the period before it."""
    previous = period.previous()
    reg = {(str(d), str(k)): int(n) for d, k, n in runner.query(*registered())}
    reg.setdefault(TOTAL, 0)
    days = {
        r[0]: Activity(int(r[1]), int(r[2]), int(r[3]))
        for r in runner.query(*daily(previous.first, period.last))
    }
    return ReportData(
        registered=reg,
        now=_activity(runner.query(*activity(period.first, period.last))),
        before=_activity(runner.query(*activity(previous.first, previous.last))),
        daily=days,
        inactive=tuple(
            InactivePremises(*(str(v) for v in r))
            for r in runner.query(*inactive(period.first, period.last))
        ),
    )
