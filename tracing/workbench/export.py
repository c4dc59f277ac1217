"""A trace as a file for spreadsheets: CSV (UTF-8 with a byte-order mark, so that Excel
reads Vietnamese) and XLSX, headers in the page's language, local times, a risk level and
follow-up status each; every text cell formula-safe (`tracing.formatting.safe_cell`)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Final

from openpyxl import Workbook
from openpyxl.styles import Font

from tracing.formatting import csv_lines, safe_cell
from tracing.models import CONTACT_FIELDS
from tracing.workbench.contacts import Grouped, Row
from tracing.workbench.localtime import local

# The answers' contact fields, with the workbench's risk, follow-up status and whether
# the person is a confirmed case after whom and through whom.
COLUMNS: Final = (*CONTACT_FIELDS[:3], "risk", "status", "confirmed_case", *CONTACT_FIELDS[3:])


def _time(ms: int) -> str:
    return f"{local(ms):%Y-%m-%d %H:%M:%S}"


def rows(g: Grouped, t: Callable[[str], str]) -> list[list[object]]:
    """Every contact in the answer's order, as cells."""
    all_rows: list[Row] = []
    for p in g.premises:
        for vg in p.visits:
            all_rows += vg.rows
    for v in g.via:
        all_rows += v.rows
    all_rows.sort(key=lambda r: r.index)
    out: list[list[object]] = []
    for r in all_rows:
        c = r.contact
        out.append(
            [
                c.person_id,
                f"F{c.degree}",
                c.via_person_id or "",
                t(f"risk.{r.risk}"),
                t(f"status.{r.status}") if r.status else "",
                t("yes") if r.confirmed_case else "",
                c.premises_id,
                c.premises_name,
                c.district,
                c.category,
                _time(c.case_time_from),
                _time(c.case_time_to),
                _time(c.contact_time_from),
                _time(c.contact_time_to),
                "" if c.overlap_minutes is None else c.overlap_minutes,
            ]
        )
    return out


def header(t: Callable[[str], str]) -> list[str]:
    return [t(f"col.{c}") for c in COLUMNS]


def to_csv(head: Sequence[str], cells: Sequence[Sequence[object]]) -> bytes:
    return ("\ufeff" + csv_lines(head, cells)).encode("utf-8")


def to_xlsx(head: Sequence[str], cells: Sequence[Sequence[object]], title: str) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = title[:31]
    for col, h in enumerate(head, start=1):
        cell = ws.cell(row=1, column=col, value=safe_cell(h))
        cell.data_type = "s"
        cell.font = Font(bold=True)
    for r, values in enumerate(cells, start=2):
        for col, v in enumerate(values, start=1):
            cell = ws.cell(row=r, column=col)
            if isinstance(v, str):
                cell.value = safe_cell(v)
                cell.data_type = "s"  # never a formula, whatever the text
            else:
                cell.value = v
    ws.freeze_panes = "A2"
    for col, h in enumerate(head, start=1):
        ws.column_dimensions[ws.cell(row=1, column=col).column_letter].width = max(12, len(h) + 2)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
