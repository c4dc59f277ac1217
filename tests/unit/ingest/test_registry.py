"""Premises registry CSV: validation with line numbers, Vietnamese text intact, the diff
against the current registry, and the export round trip."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ingest.premises import CSV_COLUMNS, Premises
from ingest.registry import (
    RegistryFileError,
    load_registry_csv,
    parse_registry_csv,
    plan_import,
    write_registry_csv,
)

HEADER = ",".join(CSV_COLUMNS)
GOOD = [
    "NT-0001,Chợ Phan Rang,market,Phan Rang - Tháp Chàm,Phường Thanh Sơn,Ban quản lý chợ,"
    '"1 Thống Nhất, Phan Rang",11.5647,108.9886',
    "NT-0002,Trường THPT Chu Văn An,school,Ninh Hải,Khánh Hải,Sở Giáo dục,,11.6,109.1",
    "NT-0003,Nhà thờ Giáo xứ Phước Thiện,religious,Ninh Phước,Phước Thuận,,,,",
]


def text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def test_valid_rows_keep_vietnamese_text_exactly() -> None:
    parsed = parse_registry_csv(text(*GOOD))
    assert parsed.errors == [] and parsed.data_rows == 3
    lines = [line for line, _ in parsed.rows]
    assert lines == [2, 3, 4]
    first = parsed.rows[0][1]
    assert first == Premises(
        "NT-0001", "Chợ Phan Rang", "market", "Phan Rang - Tháp Chàm", "Phường Thanh Sơn",
        "Ban quản lý chợ", "1 Thống Nhất, Phan Rang", 11.5647, 108.9886,
    )  # fmt: skip
    assert parsed.rows[2][1].lat is None and parsed.rows[2][1].lon is None


def test_bom_columns_in_any_order_and_blank_lines(tmp_path: Path) -> None:
    reordered = ",".join(reversed(CSV_COLUMNS))
    row = ",".join(reversed(next(iter([GOOD[1].split(",")]))))
    path = tmp_path / "r.csv"
    path.write_bytes(("\ufeff" + text("", row, "", header=reordered)).encode("utf-8"))
    parsed = load_registry_csv(path)
    assert parsed.errors == []
    assert [(line, p.name) for line, p in parsed.rows] == [(3, "Trường THPT Chu Văn An")]


@pytest.mark.parametrize(
    ("row", "reason", "field"),
    [
        ("NT-9,Quán,pub,Ninh Sơn,,,,,", "unknown_category", "category"),
        (",Quán,shop,Ninh Sơn,,,,,", "missing_field", "premises_id"),
        ("NT-9,,shop,Ninh Sơn,,,,,", "missing_field", "name"),
        ("NT-9,Quán,shop,,,,,,", "missing_field", "district"),
        ("NT-9,Quán,shop,Ninh Sơn,,,,91,108", "bad_coordinates", "lat"),
        ("NT-9,Quán,shop,Ninh Sơn,,,,11,181", "bad_coordinates", "lon"),
        ('NT-9,Quán,shop,Ninh Sơn,,,,"11,5",108', "bad_coordinates", "lat"),
        ("NT-9,Quán,shop,Ninh Sơn,,,,nan,108", "bad_coordinates", "lat"),
        ("NT-9,Quán,shop,Ninh Sơn,,,,11.5,", "bad_coordinates", "lon"),
        ("NT-9,Quán,shop,Ninh Sơn,,,,,108", "bad_coordinates", "lat"),
        ("x" * 65 + ",Quán,shop,Ninh Sơn,,,,,", "id_too_long", "premises_id"),
        ("NT-9,Qu\x07án,shop,Ninh Sơn,,,,,", "bad_chars", "name"),
        ("NT-9,Quán,shop,Ninh Sơn,,,", "wrong_field_count", None),
    ],
)
def test_each_invalid_row_is_reported_with_its_line(
    row: str, reason: str, field: str | None
) -> None:
    parsed = parse_registry_csv(text(GOOD[0], row, GOOD[1]))
    assert [(e.line, e.reason, e.field) for e in parsed.errors] == [(3, reason, field)]
    assert [line for line, _ in parsed.rows] == [2, 4]
    assert parsed.invalid_lines == 1


def test_duplicate_ids_make_every_occurrence_invalid() -> None:
    dup = GOOD[1].replace("NT-0002", "NT-0001")
    parsed = parse_registry_csv(text(GOOD[0], GOOD[2], dup))
    assert [(e.line, e.reason) for e in parsed.errors] == [(2, "duplicate_id"), (4, "duplicate_id")]
    assert "also on line 4" in parsed.errors[0].detail
    assert [p.premises_id for _, p in parsed.rows] == ["NT-0003"]


def test_line_numbers_count_physical_lines_of_multiline_fields() -> None:
    multiline = 'NT-0004,"Siêu thị\nCo.op",supermarket,Phan Rang,,,,,'
    parsed = parse_registry_csv(text(multiline, "NT-0005,Bến xe,bus,Phan Rang,,,,,"))
    # a line break inside a cell is a control character: refused, but the lines still count
    assert [(e.line, e.reason, e.field) for e in parsed.errors] == [
        (2, "bad_chars", "name"),
        (4, "unknown_category", "category"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("premises_id,name\nNT-1,x\n", "missing category"),
        (HEADER + ",extra\n", "unknown extra"),
    ],
)
def test_bad_header_refuses_the_file(content: str, message: str) -> None:
    with pytest.raises(RegistryFileError, match=message):
        parse_registry_csv(content)


def test_non_utf8_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(text(GOOD[0]).encode() + "NT-9,Caf\xe9,shop,X,,,,,\n".encode("latin-1"))
    with pytest.raises(RegistryFileError, match="line 3: not UTF-8"):
        load_registry_csv(path)


def test_plan_import_new_changed_unchanged() -> None:
    rows = [p for _, p in parse_registry_csv(text(*GOOD)).rows]
    current = {
        "NT-0001": Premises(**{**rows[0].to_wire(), "version": 5}),  # type: ignore[arg-type]
        "NT-0002": Premises(**{**rows[1].to_wire(), "name": "old", "version": 7}),  # type: ignore[arg-type]
    }
    plan = plan_import(rows, current, version=1000)
    assert plan.unchanged == 1
    assert [(p.premises_id, p.version) for p in plan.new] == [("NT-0003", 1000)]
    assert [(p.premises_id, p.name, p.version) for p in plan.updated] == [
        ("NT-0002", "Trường THPT Chu Văn An", 1000)
    ]
    # a clock behind the registry still produces a newer version
    assert plan_import(rows, current, version=3).updated[0].version == 8


def test_export_round_trips_and_defuses_formulas() -> None:
    risky = 'NT-0009,=HYPERLINK("http://x"),shop,+84 Ninh Sơn,@ward,-agency,\tTab,-11.5,-108.25'
    parsed = parse_registry_csv(text(*GOOD, risky))
    assert parsed.errors == []
    records = [p for _, p in parsed.rows]
    out = io.StringIO()
    assert write_registry_csv(reversed(records), out) == 4
    exported = out.getvalue()
    assert "'=HYPERLINK" in exported and "'+84 Ninh Sơn" in exported and "'@ward" in exported
    assert ",-11.5,-108.25" in exported  # numbers are not text: never escaped
    again = parse_registry_csv(exported)
    assert again.errors == []
    by_id = {p.premises_id: p for _, p in again.rows}
    assert by_id == {p.premises_id: p for p in records}  # exact, the formula cells included
    assert by_id["NT-0009"].name == '=HYPERLINK("http://x")'
