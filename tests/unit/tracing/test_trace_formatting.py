"""Answers as JSON, CSV and table: UTC ISO-8601 in JSON/CSV, local time in the table,
and no spreadsheet formula can come out of a CSV cell."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracing.formatting import (
    local_time,
    premises_csv,
    safe_cell,
    trace_csv,
    trace_json,
    trace_table,
)
from tracing.models import Contact, PremisesResult, TraceResult, Visit, Visitor, iso_utc
from tracing.rules import Rule

T = 1_634_000_000_123  # 2021-10-12T00:53:20.123Z


def _result() -> TraceResult:
    contact = Contact(
        person_id="=cmd|'/c calc'!A1",
        degree=2,
        via_person_id="@SUM(A1)",
        premises_id="-NT-1",
        premises_name="+Chợ Phan Rang",
        district="\tPhan Rang",
        category="\rmarket",
        case_time_from=T,
        case_time_to=T + 60_000,
        contact_time_from=T + 1,
        contact_time_to=T + 2,
        overlap_ms=90_000,
    )
    visit = Visit("NT-1", "Chợ", "Ninh Hải", "market", T, T + 45 * 60_000, 2)
    return TraceResult("CASE", T - 86_400_000, T + 86_400_000, Rule("overlap"), [visit], [contact])


def test_iso_utc_keeps_milliseconds() -> None:
    assert iso_utc(T) == "2021-10-12T00:53:20.123Z"
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"


def test_table_shows_ho_chi_minh_time() -> None:
    assert local_time(T) == "2021-10-12 07:53:20"
    text = trace_table(_result())
    assert "2021-10-12 07:53:20" in text and "Asia/Ho_Chi_Minh" in text
    assert "\t" not in text and "\r" not in text


def test_json_document_shape() -> None:
    doc = trace_json(_result())
    json.dumps(doc)
    assert set(doc) == {"case", "period", "rule", "visits", "contacts"}
    assert doc["rule"]["name"] == "overlap" and doc["rule"]["min_overlap_min"] == 0
    (c,) = doc["contacts"]  # type: ignore[misc]
    assert list(c) == [
        "person_id",
        "degree",
        "via_person_id",
        "premises_id",
        "premises_name",
        "district",
        "category",
        "case_time_from",
        "case_time_to",
        "contact_time_from",
        "contact_time_to",
        "overlap_minutes",
    ]
    assert c["case_time_from"] == "2021-10-12T00:53:20.123Z"
    assert c["overlap_minutes"] == 1.5
    # JSON keeps the values exactly: it is not a spreadsheet.
    assert c["person_id"] == "=cmd|'/c calc'!A1"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_starts_are_neutralised(start: str) -> None:
    assert safe_cell(start + "1+1") == "'" + start + "1+1"


def test_csv_cells_are_safe() -> None:
    rows = list(csv.reader(io.StringIO(trace_csv(_result()))))
    assert rows[0][0] == "person_id"
    for cell in rows[1]:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert rows[1][0] == "'=cmd|'/c calc'!A1"
    visitor = Visitor("NT-1", "=1", "d", "c", T, T, 1, person_id="@x")
    rows = list(csv.reader(io.StringIO(premises_csv(PremisesResult("NT-1", T, T, [visitor])))))
    assert rows[1][0] == "'@x" and rows[1][2] == "'=1"


@given(st.text())
def test_no_cell_starts_a_formula(text: str) -> None:
    cell = safe_cell(text)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert cell.removeprefix("'") == text or cell == text
