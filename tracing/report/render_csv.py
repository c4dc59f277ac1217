"""The report as CSV: the summary (the province, every group, every day) and the list of
premises without scans, as two UTF-8 files with a byte order mark (so that a spreadsheet
reads the Vietnamese letters). Text cells are safe against formula injection
(`tracing.formatting.safe_cell`); numbers are written as numbers."""

from __future__ import annotations

import csv
import io

from tracing.formatting import safe_cell
from tracing.report import tabular
from tracing.report.i18n import Labels, Lang
from tracing.report.model import Report
from tracing.report.tabular import Table, Value


def _cell(v: Value) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return safe_cell(v)
    return str(v)


def _csv(table: Table) -> str:
    header, rows = table
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return "\ufeff" + out.getvalue()


def render_csv(report: Report, lang: Lang = "vi") -> tuple[str, str]:
    """(summary CSV, premises-without-scans CSV)."""
    labels = Labels(lang)
    header, rows = tabular.summary(report, labels)
    _, day_rows = tabular.days(report, labels)
    # The days go below the groups, in the same columns: day, active, scans, scanners.
    width = len(header)
    for d in day_rows:
        row: list[Value] = [labels("day"), d[0], None, d[1], None, d[2], d[3]]
        rows.append(row + [None] * (width - len(row)))
    return _csv((header, rows)), _csv(tabular.inactive(report, labels))
