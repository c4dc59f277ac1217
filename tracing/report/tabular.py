"""The report as plain tables (header + rows of numbers, texts and marks): the common
ground of the CSV and xlsx renderers. Shares, uptake and changes are fractions
(0.453 = 45.3 %), the change of the active share is in percentage points."""

from __future__ import annotations

from typing import Final

from tracing.report.i18n import Labels
from tracing.report.model import Count, Dimension, GroupRow, Mark, Ratio, Report

Value = int | float | str | None
Table = tuple[list[str], list[list[Value]]]

# Columns holding fractions (rendered as % in a spreadsheet) and points, by position.
FRACTION_COLUMNS: Final = frozenset({4, 8, 9, 11})
POINTS_COLUMNS: Final = frozenset({7})


def value(x: Count | Ratio) -> Value:
    """A number as itself (floats to 6 digits), a mark as its text, nothing as None."""
    if isinstance(x, Mark):
        return x.value
    if isinstance(x, float):
        return round(x, 6)
    return x


def summary_header(report: Report, labels: Labels) -> list[str]:
    kind = report.period.kind
    return [
        labels("dimension"),
        labels("group"),
        labels("registered"),
        labels("active"),
        labels("share_active"),
        labels("scans"),
        labels("scanners"),
        labels.per("change_share_pp", kind),
        labels.per("change_scans", kind),
        labels.per("change_scanners", kind),
        labels("population"),
        labels("uptake"),
        labels("scans_per_active"),
    ]


def _row(dimension: str, name: str, r: GroupRow) -> list[Value]:
    return [
        dimension,
        name,
        r.registered,
        r.active,
        value(r.share_active),
        value(r.scans),
        value(r.scanners),
        value(r.change_share_pp),
        value(r.change_scans),
        value(r.change_scanners),
        r.population,
        value(r.uptake),
        value(r.scans_per_active),
    ]


def summary(
    report: Report, labels: Labels, dimensions: tuple[Dimension, ...] | None = None
) -> Table:
    """The province row, then every group of `dimensions` (the report's tables)."""
    rows = [_row(labels("total"), labels("total"), report.total)]
    for d in dimensions if dimensions is not None else [t.dimension for t in report.tables]:
        ordered = labels.ordered(d, report.table(d).rows, lambda r: r.key)
        rows += [_row(labels("dim." + d), labels.group(d, r.key), r) for r in ordered]
    return summary_header(report, labels), rows


def days(report: Report, labels: Labels) -> Table:
    header = [labels("day"), labels("active"), labels("scans"), labels("scanners")]
    later = labels("not_reported")
    rows: list[list[Value]] = [
        [d.day.isoformat(), d.active, value(d.scans), value(d.scanners)]
        if d.reported
        else [d.day.isoformat(), later, later, later]
        for d in report.days
    ]
    return header, rows


def inactive(report: Report, labels: Labels) -> Table:
    header = [
        labels("dim.agency"),
        labels("premises_id"),
        labels("name"),
        labels("dim.category"),
        labels("dim.district"),
        labels("ward"),
    ]
    rows: list[list[Value]] = [
        [
            labels.group("agency", p.agency),
            p.premises_id,
            p.name,
            labels.group("category", p.category),
            labels.group("district", p.district),
            p.ward,
        ]
        for p in report.inactive
    ]
    return header, rows
