"""The report as an xlsx workbook (openpyxl): one sheet per grouping, the days, the
premises without scans and the notes. Numbers are numbers with a display format
(fractions shown as %); every text cell is made safe against formula injection first
(openpyxl would store a text starting with "=" as a formula)."""

from __future__ import annotations

import io
from typing import Any, Final

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill

from tracing.formatting import safe_cell
from tracing.report import tabular
from tracing.report.i18n import Labels, Lang
from tracing.report.model import Report
from tracing.report.tabular import Table, Value
from tracing.report.text import notes, period_text

_HEAD_FILL: Final = PatternFill("solid", fgColor="EEF2F5")
_BOLD: Final = Font(bold=True)


def _put(ws: Any, row: int, col: int, v: Value, number_format: str = "") -> None:
    cell = ws.cell(row=row, column=col)
    if isinstance(v, str):
        cell.value = safe_cell(v)
        cell.data_type = "s"  # never a formula, whatever the text
        if v in ("<5", "x"):
            cell.alignment = Alignment(horizontal="right")
    else:
        cell.value = v
        if number_format and v is not None:
            cell.number_format = number_format


def _sheet(wb: Any, title: str, table: Table, formats: dict[int, str], first: int = 1) -> None:
    ws = wb.create_sheet(title=title[:31])
    header, rows = table
    for c, h in enumerate(header, start=1):
        _put(ws, first, c, h)
        cell = ws.cell(row=first, column=c)
        cell.font = _BOLD
        cell.fill = _HEAD_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for r, values in enumerate(rows, start=first + 1):
        for c, v in enumerate(values, start=1):
            _put(ws, r, c, v, formats.get(c - 1, "#,##0" if isinstance(v, int) else ""))
    ws.freeze_panes = ws.cell(row=first + 1, column=1)
    for c, h in enumerate(header, start=1):
        longest = max([len(str(h)) // 2, *(len(str(v[c - 1] or "")) for v in rows)], default=8)
        ws.column_dimensions[ws.cell(row=first, column=c).column_letter].width = min(
            max(10, longest + 2), 60
        )


def render_xlsx(report: Report, lang: Lang = "vi") -> bytes:
    labels = Labels(lang)
    wb = Workbook()
    default = wb.active
    if default is not None:
        wb.remove(default)
    formats = {i: "0.0%" for i in tabular.FRACTION_COLUMNS}
    formats.update({i: "+0.0;-0.0;0.0" for i in tabular.POINTS_COLUMNS})
    formats[12] = "0.0"
    for d in (t.dimension for t in report.tables):
        header, rows = tabular.summary(report, labels, (d,))
        _sheet(wb, labels(f"sheet.{d}"), (header, rows), formats)
    _sheet(wb, labels("sheet.days"), tabular.days(report, labels), {})
    _sheet(wb, labels("sheet.inactive"), tabular.inactive(report, labels), {})
    ws = wb.create_sheet(title=labels("sheet.notes"))
    now, before = period_text(report, labels)
    lines = [f"{labels.per('title', report.period.kind)} {report.period.label}", now, before]
    for r, line in enumerate([*lines, "", *notes(report, labels)], start=1):
        _put(ws, r, 1, line)
    ws.column_dimensions["A"].width = 120
    ws.cell(row=1, column=1).font = Font(bold=True, size=13)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
