"""From the rollup's numbers to the `Report`: shares, ratios, changes and suppression.

Pure: the numbers come in as mappings (`tracing.report.queries.collect` reads them), the
report goes out; no I/O, no clock.

Suppression (the rule the report states in its footer). A group whose distinct scanners
number 1-4 could single someone out:
- its distinct scanners print as "<5" (`Mark.FEW`), and every count or number derived from
  its persons or scans (scans, scans per active premises, uptake, changes) as "x"
  (`Mark.HIDDEN`);
- the rows of a table add up to the province total in scans (each premises is in exactly
  one agency, one district, one category; each day in one week), so one hidden cell could
  be recomputed as the total minus the others. When a table (or the daily series of a
  period) hides any row, the scans of the smallest other row with scans are hidden too
  ("x"), which also keeps several tiny hidden rows from adding up to a tiny known sum;
- a change from the previous period is hidden when the count is hidden in either period.
Distinct scanners do not add up across rows (one person scans in several districts), so
they need no second suppression. Premises counts (registered, active, share) are about
premises, not persons, and are always shown. Zero is shown: no person, nobody to protect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Final

from tracing.report.i18n import vi_key
from tracing.report.model import (
    DIMENSIONS,
    THRESHOLD,
    Activity,
    Count,
    DayPoint,
    Dimension,
    GroupRow,
    GroupTable,
    InactivePremises,
    Mark,
    Period,
    Ratio,
    Report,
)

# (dimension, key): ("district", "Ninh Hải"), ("agency", "Sở Y tế"), ("total", "").
GroupKey = tuple[str, str]
TOTAL: Final[GroupKey] = ("total", "")
_NOTHING: Final = Activity()


def few(scanners: int, threshold: int = THRESHOLD) -> bool:
    """A group small enough to single someone out (1..threshold-1 distinct persons)."""
    return 0 < scanners < threshold


def hidden_scans(
    cells: Mapping[str, Activity], total_hidden: bool, threshold: int = THRESHOLD
) -> frozenset[str]:
    """The keys of a partition of the total whose scans are hidden: the few-person rows
    and, when there is any and the total is shown, the smallest other row with scans."""
    hidden = {k for k, a in cells.items() if few(a.scanners, threshold)}
    if hidden and not total_hidden:
        shown = [(a.scans, k) for k, a in cells.items() if k not in hidden and a.scans > 0]
        if shown:
            hidden.add(min(shown)[1])
    return frozenset(hidden)


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
) -> GroupRow:
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
            (share - share_before) * 100 if share is not None and share_before is not None else None
        ),
        change_scans=(
            Mark.HIDDEN
            if scans_hidden or scans_hidden_before
            else _relative(now.scans, before.scans)
        ),
        change_scanners=(
            Mark.HIDDEN if few_now or few_before else _relative(now.scanners, before.scanners)
        ),
        population=population,
        uptake=Mark.HIDDEN if few_now and uptake is not None else uptake,
    )


def _cells(activity: Mapping[GroupKey, Activity], dimension: str) -> dict[str, Activity]:
    return {k: a for (d, k), a in activity.items() if d == dimension}


def build_table(
    dimension: Dimension,
    registered: Mapping[GroupKey, int],
    now: Mapping[GroupKey, Activity],
    before: Mapping[GroupKey, Activity],
    population: Mapping[str, int] | None = None,
    threshold: int = THRESHOLD,
) -> GroupTable:
    cells_now, cells_before = _cells(now, dimension), _cells(before, dimension)
    hidden_now = hidden_scans(
        cells_now, few(now.get(TOTAL, _NOTHING).scanners, threshold), threshold
    )
    hidden_before = hidden_scans(
        cells_before, few(before.get(TOTAL, _NOTHING).scanners, threshold), threshold
    )
    keys = sorted({k for d, k in registered if d == dimension} | set(cells_now) | set(cells_before))
    rows = tuple(
        group_row(
            key,
            registered.get((dimension, key), 0),
            cells_now.get(key, _NOTHING),
            cells_before.get(key, _NOTHING),
            scans_hidden=key in hidden_now,
            scans_hidden_before=key in hidden_before,
            population=population.get(key) if population is not None else None,
            threshold=threshold,
        )
        for key in keys
    )
    return GroupTable(dimension, rows)


def build_days(
    period: Period,
    previous: Period,
    daily: Mapping[date, Activity],
    now_total: Activity,
    before_total: Activity,
    threshold: int = THRESHOLD,
) -> tuple[DayPoint, ...]:
    out: list[DayPoint] = []
    for p, total, current in ((previous, before_total, False), (period, now_total, True)):
        cells = {d.isoformat(): daily.get(d, _NOTHING) for d in p.days}
        hidden = hidden_scans(cells, few(total.scanners, threshold), threshold)
        for d in p.days:
            a = daily.get(d, _NOTHING)
            out.append(
                DayPoint(
                    day=d,
                    current=current,
                    active=a.active,
                    scans=Mark.HIDDEN if d.isoformat() in hidden else a.scans,
                    scanners=Mark.FEW if few(a.scanners, threshold) else a.scanners,
                )
            )
    return tuple(out)


def build_report(
    period: Period,
    *,
    registered: Mapping[GroupKey, int],
    now: Mapping[GroupKey, Activity],
    before: Mapping[GroupKey, Activity],
    daily: Mapping[date, Activity],
    inactive: Sequence[InactivePremises],
    population: Mapping[str, int] | None,
    generated_at_ms: int,
    threshold: int = THRESHOLD,
) -> Report:
    """The report of `period` (the previous period is the one before it, same length)."""
    previous = period.previous()
    now_total, before_total = now.get(TOTAL, _NOTHING), before.get(TOTAL, _NOTHING)
    total = group_row(
        "",
        registered.get(TOTAL, 0),
        now_total,
        before_total,
        scans_hidden=few(now_total.scanners, threshold),
        scans_hidden_before=few(before_total.scanners, threshold),
        population=sum(population.values()) if population else None,
        threshold=threshold,
    )
    tables = tuple(
        build_table(
            d,
            registered,
            now,
            before,
            population if d == "district" else None,
            threshold,
        )
        for d in DIMENSIONS
    )
    return Report(
        period=period,
        previous=previous,
        generated_at_ms=generated_at_ms,
        total=total,
        tables=tables,
        days=build_days(period, previous, daily, now_total, before_total, threshold),
        inactive=tuple(
            sorted(
                inactive,
                key=lambda p: (vi_key(p.agency), vi_key(p.district), vi_key(p.name), p.premises_id),
            )
        ),
        has_population=population is not None,
        threshold=threshold,
    )
