"""Which scan counts the report hides, decided once per ISO week for all its tables.

A count of scans is additive: the groups of one table add up to the province, the days of
a week add up to the week. So the cells of one week form, for each way of grouping
(agency, district, ward, category), a matrix of groups by days with its margins: the
week's table (a group's week), the daily reports' tables (a group's day), the province
per day and for the week. Every row and every column of that matrix is a *line*: cells
that add up to the line's margin, shown elsewhere in the same report or in the daily
reports of the same week.

The rule (`hidden_cells`):
1. a cell of 1 to threshold-1 distinct persons is hidden (primary);
2. a line whose margin is shown and that hides a cell must hide at least two, one of them
   of threshold or more persons, so that neither the margin minus the shown cells nor a
   sum of tiny cells gives a hidden number; the cell added is the line's shown non-zero
   cell with the fewest scans (the margin only when there is none);
3. repeated until every line holds, since a cell added to one line is in another.

Every report of the week (the weekly one, its daily ones, any edition, the trend of a
later week) reads its marks from this one decision, so no two of them hide different
cells of the same number. It defeats every single subtraction (a week minus its days, a
province minus its other groups, an edition against the province); it is a heuristic, not
a proof against a solver combining many lines, like the usual cell suppression of
official statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Final

from tracing.report.model import THRESHOLD, Activity

# (dimension, key): ("district", "Ninh Hải"), ("total", "").
GroupKey = tuple[str, str]
# (first day of the period, "week" or "day", dimension, key)
Cell = tuple[date, str, str, str]
TOTAL: Final[GroupKey] = ("total", "")
# The groupings whose groups partition the province (a premises is in exactly one).
PARTITIONS: Final = ("agency", "district", "ward", "category")
_NOTHING: Final = Activity()


def few(scanners: int, threshold: int = THRESHOLD) -> bool:
    """A group small enough to single someone out (1..threshold-1 distinct persons)."""
    return 0 < scanners < threshold


def _lines(
    monday: date, days: Sequence[date], groups: Mapping[str, Iterable[str]]
) -> list[tuple[list[Cell], Cell]]:
    """(members, margin) of every line of one week."""
    out: list[tuple[list[Cell], Cell]] = []
    for dim, keys in groups.items():
        keys = sorted(keys)
        for first, kind in ((monday, "week"), *((d, "day") for d in days)):
            out.append(([(first, kind, dim, k) for k in keys], (first, kind, "total", "")))
        for k in keys:
            out.append(([(d, "day", dim, k) for d in days], (monday, "week", dim, k)))
    out.append(([(d, "day", "total", "") for d in days], (monday, "week", "total", "")))
    return out


def hidden_cells(
    monday: date,
    days: Sequence[date],
    week: Mapping[GroupKey, Activity],
    by_day: Mapping[date, Mapping[GroupKey, Activity]],
    threshold: int = THRESHOLD,
) -> frozenset[Cell]:
    """The hidden scan counts of the week starting `monday` (its `days`, up to 7)."""

    def value(cell: Cell) -> Activity:
        first, kind, dim, key = cell
        source = week if kind == "week" else by_day.get(first, {})
        return source.get((dim, key), _NOTHING)

    groups: dict[str, set[str]] = {d: set() for d in PARTITIONS}
    for source in (week, *by_day.values()):
        for dim, key in source:
            if dim in groups:
                groups[dim].add(key)
    lines = _lines(monday, days, groups)
    cells = {c for members, margin in lines for c in (*members, margin)}
    hidden = {c for c in cells if few(value(c).scanners, threshold)}
    changed = True
    while changed:
        changed = False
        for members, margin in lines:
            if margin in hidden:
                continue
            inside = [c for c in members if c in hidden]
            if not inside:
                continue
            if len(inside) >= 2 and any(value(c).scanners >= threshold for c in inside):
                continue
            shown = [(value(c).scans, c) for c in members if c not in hidden and value(c).scans]
            hidden.add(min(shown)[1] if shown else margin)
            changed = True
    return frozenset(hidden)
