"""From the rollup's numbers to the `Report`: shares, ratios, changes and suppression.

Pure: the numbers come in as a `ReportData` (`tracing.report.queries.collect` reads
them), the report goes out; no I/O, no clock.

Suppression (the rule the report states in its footer). A group whose distinct scanners
number 1-4 could single someone out:
- its distinct scanners print as "<5" (`Mark.FEW`), and every count or number derived from
  its persons or scans (scans, scans per active premises, uptake, changes) as "x"
  (`Mark.HIDDEN`);
- scans add up (groups to the province, days to the week), so further scan counts are
  hidden until no hidden one can be recomputed by one subtraction: the rule and its
  reach are in `tracing.report.suppress`, decided once per ISO week for every report of
  that week (weekly, daily, editions, trend);
- a change from the previous period is hidden when the count is hidden in either period.
Distinct scanners do not add up across rows (one person scans in several districts), so
they need no second suppression. Premises counts (registered, active, share) are about
premises, not persons, and are always shown. Zero is shown: no person, nobody to protect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final

from sinks.schema import GROUP_SEP
from tracing.report.i18n import vi_key
from tracing.report.model import (
    DEFAULT_DIMENSIONS,
    THRESHOLD,
    TZ,
    Activity,
    Count,
    CrossCell,
    CrossTable,
    DayPoint,
    Dimension,
    GroupRow,
    GroupTable,
    Mark,
    Period,
    Ratio,
    Report,
    ReportData,
    StaffRow,
    TrendPoint,
    TrendSeries,
    UnregisteredQr,
)
from tracing.report.suppress import TOTAL, Cell, GroupKey, few, hidden_cells

__all__ = ["TOTAL", "GroupKey", "build_report", "few", "monday"]

_NOTHING: Final = Activity()
WORKING_DAYS: Final = 5  # Monday to Friday


def monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def local_day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(TZ).date()


def _relative(now: int, before: int) -> float | None:
    return (now - before) / before if before else None


def group_row(
    key: str,
    registered: int,
    now: Activity,
    before: Activity,
    *,
    scans_hidden: bool,
    scans_hidden_before: bool,
    population: int | None = None,
    threshold: int = THRESHOLD,
    compare: bool = True,
) -> GroupRow:
    """One line of a table. `compare` False: the previous period has no data at all, so
    no change is shown (a change from nothing is no information, not +100 %)."""
    few_now, few_before = few(now.scanners, threshold), few(before.scanners, threshold)
    share = now.active / registered if registered else None
    share_before = before.active / registered if registered else None
    scans: Count = Mark.HIDDEN if scans_hidden else now.scans
    per_active: Ratio = now.scans / now.active if now.active else None
    uptake: Ratio = now.scanners / population if population else None
    return GroupRow(
        key=key,
        registered=registered,
        active=now.active,
        share_active=share,
        scans=scans,
        scanners=Mark.FEW if few_now else now.scanners,
        scans_per_active=Mark.HIDDEN if scans_hidden else per_active,
        change_share_pp=(
            (share - share_before) * 100
            if compare and share is not None and share_before is not None
            else None
        ),
        change_scans=(
            None
            if not compare
            else Mark.HIDDEN
            if scans_hidden or scans_hidden_before
            else _relative(now.scans, before.scans)
        ),
        change_scanners=(
            None
            if not compare
            else Mark.HIDDEN
            if few_now or few_before
            else _relative(now.scanners, before.scanners)
        ),
        population=population,
        uptake=Mark.HIDDEN if few_now and uptake is not None else uptake,
    )


class _Week:
    """One ISO week's numbers and its suppression decision."""

    def __init__(self, data: ReportData, first: date, threshold: int) -> None:
        self.first = first
        self.days = [first + timedelta(days=i) for i in range(7)]
        self.known = first in data.weeks
        self.week = data.weeks.get(first, {})
        self.by_day = {d: data.days.get(d, {}) for d in self.days}
        self.hidden = hidden_cells(first, self.days, self.week, self.by_day, threshold)


class _Weeks:
    def __init__(self, data: ReportData, cutoff_day: date, threshold: int) -> None:
        self.data, self.cutoff_day, self.threshold = data, cutoff_day, threshold
        self._weeks: dict[date, _Week] = {}

    def __call__(self, d: date) -> _Week:
        m = monday(d)
        if m not in self._weeks:
            self._weeks[m] = _Week(self.data, m, self.threshold)
        return self._weeks[m]

    def activity(self, p: Period) -> Mapping[GroupKey, Activity]:
        w = self(p.first)
        return w.week if p.kind == "week" else w.by_day[p.first]

    def hidden(self, p: Period, group: GroupKey) -> bool:
        cell: Cell = (p.first, p.kind, *group)
        return cell in self(p.first).hidden


def _cells(activity: Mapping[GroupKey, Activity], dimension: str) -> dict[str, Activity]:
    return {k: a for (d, k), a in activity.items() if d == dimension}


def _table(
    dimension: Dimension,
    period: Period,
    weeks: _Weeks,
    registered: Mapping[GroupKey, int],
    population: Mapping[str, int] | None,
    threshold: int,
    compare: bool,
) -> GroupTable:
    previous = period.previous()
    now, before = (
        _cells(weeks.activity(period), dimension),
        _cells(weeks.activity(previous), dimension),
    )
    keys = sorted({k for d, k in registered if d == dimension} | set(now) | set(before))
    rows = tuple(
        group_row(
            key,
            registered.get((dimension, key), 0),
            now.get(key, _NOTHING),
            before.get(key, _NOTHING),
            scans_hidden=weeks.hidden(period, (dimension, key)),
            scans_hidden_before=weeks.hidden(previous, (dimension, key)),
            population=population.get(key) if population is not None else None,
            threshold=threshold,
            compare=compare,
        )
        for key in keys
    )
    return GroupTable(dimension, rows)


def _days(period: Period, weeks: _Weeks, threshold: int) -> tuple[DayPoint, ...]:
    out: list[DayPoint] = []
    for p, current in ((period.previous(), False), (period, True)):
        for d in p.days:
            a = weeks(d).by_day[d].get(TOTAL, _NOTHING)
            out.append(
                DayPoint(
                    day=d,
                    current=current,
                    active=a.active,
                    scans=Mark.HIDDEN if weeks.hidden(Period.day(d), TOTAL) else a.scans,
                    scanners=Mark.FEW if few(a.scanners, threshold) else a.scanners,
                    reported=d <= weeks.cutoff_day,
                )
            )
    return tuple(out)


def area_dimension(registered: Mapping[GroupKey, int]) -> Dimension:
    """`district`, or `ward` when the registry has no districts (two-level government)."""
    districts = {k for d, k in registered if d == "district"}
    return "district" if districts - {""} else "ward"


def _trend(
    weeks: _Weeks, last: date, n: int, dims: Sequence[str], registered: Mapping[GroupKey, int]
) -> tuple[tuple[date, ...], tuple[TrendSeries, ...]]:
    mondays = tuple(monday(last) - timedelta(days=7 * i) for i in range(n - 1, -1, -1))
    series: list[TrendSeries] = []
    for dim in ("total", *dims):
        keys = {k for d, k in registered if d == dim}
        for m in mondays:
            keys |= {k for d, k in weeks(m).week if d == dim}
        for key in sorted(keys, key=vi_key):
            points = []
            for m in mondays:
                w = weeks(m)
                if not w.known:
                    points.append(TrendPoint(m, None, None, None))
                    continue
                a = w.week.get((dim, key), _NOTHING)
                points.append(
                    TrendPoint(
                        m,
                        a.active,
                        Mark.HIDDEN if (m, "week", dim, key) in w.hidden else a.scans,
                        Mark.FEW if few(a.scanners, weeks.threshold) else a.scanners,
                    )
                )
            series.append(TrendSeries(dim, key, tuple(points)))
    return mondays, tuple(series)


def _cross(
    period: Period, weeks: _Weeks, registered: Mapping[GroupKey, int], threshold: int
) -> CrossTable:
    now = _cells(weeks.activity(period), "agency_district")
    reg = {k: n for (d, k), n in registered.items() if d == "agency_district"}
    pairs = {tuple(k.split(GROUP_SEP, 1)) for k in {*reg, *now}}
    agencies = sorted({a for a, _ in pairs}, key=vi_key)
    districts = tuple(sorted({d for _, d in pairs}, key=vi_key))
    rows = []
    for a in agencies:
        cells = []
        for d in districts:
            key = f"{a}{GROUP_SEP}{d}"
            act = now.get(key, _NOTHING)
            scanners: Count = Mark.FEW if few(act.scanners, threshold) else act.scanners
            cells.append(CrossCell(reg.get(key, 0), act.active, scanners))
        rows.append((a, tuple(cells)))
    return CrossTable(districts, tuple(rows))


def _staff(
    period: Period, weeks: _Weeks, headcount: Mapping[str, int], threshold: int
) -> tuple[StaffRow, ...]:
    """Distinct persons per working day at each agency's own `office` premises, their
    mean over the period's working days reported so far, and its share of the headcount.
    A day of 1-4 persons prints "<5"; then the mean and share, which would give it back
    from the other days, print "x"."""
    working = [d for d in period.days if d.weekday() < WORKING_DAYS and d <= weeks.cutoff_day]
    out = []
    for agency in sorted(headcount, key=vi_key):
        key = ("agency_category", f"{agency}{GROUP_SEP}office")
        persons = [weeks(d).by_day[d].get(key, _NOTHING).scanners for d in working]
        daily: tuple[tuple[date, Count], ...] = tuple(
            (d, Mark.FEW if few(n, threshold) else n) for d, n in zip(working, persons, strict=True)
        )
        average = sum(persons) / len(working) if working else None
        mean: Ratio = average
        share: Ratio = (
            average / headcount[agency] if average is not None and headcount[agency] else None
        )
        if any(few(n, threshold) for n in persons):
            mean, share = Mark.HIDDEN, Mark.HIDDEN
        out.append(StaffRow(agency, headcount[agency], len(working), daily, mean, share))
    return tuple(out)


def _unregistered(data: ReportData, threshold: int) -> tuple[UnregisteredQr, ...]:
    rows = sorted(data.unregistered, key=lambda r: (-r[1], r[0]))
    return tuple(
        UnregisteredQr(pid, Mark.FEW if few(n, threshold) else n, gw, first, last)
        for pid, n, gw, first, last in rows
    )


def build_report(
    period: Period,
    data: ReportData,
    *,
    population: Mapping[str, int] | None,
    generated_at_ms: int,
    dimensions: Sequence[Dimension] | None = None,
    headcount: Mapping[str, int] | None = None,
    trend_weeks: int = 8,
    cross: bool = False,
    province: str = "",
    authority: str = "",
    threshold: int = THRESHOLD,
) -> Report:
    """The report of `period` (the previous period is the one before it, same length)."""
    previous = period.previous()
    cutoff_ms = min(data.cutoff_ms, period.end_ms)
    weeks = _Weeks(data, local_day(cutoff_ms - 1), threshold)
    registered = data.registered
    area = area_dimension(registered)
    dims = tuple(dimensions) if dimensions else DEFAULT_DIMENSIONS
    if not dimensions and area == "ward":
        dims = tuple("ward" if d == "district" else d for d in dims)
    now_total = weeks.activity(period).get(TOTAL, _NOTHING)
    before_total = weeks.activity(previous).get(TOTAL, _NOTHING)
    compare = before_total.scans > 0
    total = group_row(
        "",
        registered.get(TOTAL, 0),
        now_total,
        before_total,
        scans_hidden=weeks.hidden(period, TOTAL),
        scans_hidden_before=weeks.hidden(previous, TOTAL),
        population=sum(population.values()) if population else None,
        threshold=threshold,
        compare=compare,
    )
    tables = tuple(
        _table(
            d,
            period,
            weeks,
            registered,
            population if d == "district" else None,
            threshold,
            compare,
        )
        for d in dims
    )
    mondays, trend = _trend(weeks, period.last, trend_weeks, (area, "agency"), registered)
    return Report(
        period=period,
        previous=previous,
        generated_at_ms=generated_at_ms,
        total=total,
        tables=tables,
        days=_days(period, weeks, threshold),
        inactive=tuple(
            sorted(
                data.inactive,
                key=lambda p: (vi_key(p.agency), vi_key(p.district), vi_key(p.name), p.premises_id),
            )
        ),
        has_population=population is not None,
        threshold=threshold,
        province=province,
        authority=authority,
        cutoff_ms=cutoff_ms,
        complete=cutoff_ms >= period.end_ms,
        previous_empty=not compare,
        trend=trend,
        trend_weeks=mondays,
        cross=_cross(period, weeks, registered, threshold) if cross else None,
        staff=_staff(period, weeks, headcount, threshold) if headcount is not None else None,
        unregistered=_unregistered(data, threshold),
        rejected=data.rejected,
    )
