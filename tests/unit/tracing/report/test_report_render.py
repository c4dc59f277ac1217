"""Every format of the sample report: the same numbers, the marks, safe text cells."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from report_testkit import AGENCY_B, TINY, sample_report

from tracing.report.render_csv import render_csv
from tracing.report.render_json import render_json

PNG = b"\x89PNG\r\n\x1a\n"


def test_json_numbers_and_marks() -> None:
    doc = json.loads(render_json(sample_report(), "en"))
    assert doc["report"] == "weekly"
    assert doc["period"]["start"] == "2021-11-14T17:00:00.000Z"
    assert doc["previous"]["label"] == "2021-W45"
    agencies = {r["key"]: r for r in doc["tables"]["agency"]}
    assert agencies[TINY]["scanners"] == "<5" and agencies[TINY]["scans"] == "x"
    assert agencies[AGENCY_B]["scans"] == "x" and agencies[AGENCY_B]["scanners"] == 20
    assert doc["total"]["scans"] == 400 and doc["total"]["share_active"] == 0.7
    assert doc["tables"]["category"][0]["name"] == "Market"
    assert doc["suppression"] == {"threshold": 5, "few": "<5", "hidden": "x"}
    assert any("“<5”" in n for n in doc["notes"])
    assert len(doc["days"]) == 14 and doc["inactive"][0]["premises_id"] == "NT-2"


def test_csv_is_excel_friendly_and_formula_safe() -> None:
    summary, inactive = render_csv(sample_report(), "vi")
    assert summary.startswith("\ufeff") and inactive.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(summary[1:])))
    assert rows[0][0] == "Nhóm theo" and rows[0][5] == "Lượt quét"
    assert rows[1][:7] == ["Toàn tỉnh", "Toàn tỉnh", "10", "7", "0.7", "400", "60"]
    hostile = next(r for r in rows if r[1].endswith("calc'!A0"))
    assert hostile[1] == "'" + AGENCY_B and hostile[5] == "x"
    tiny = next(r for r in rows if r[1] == TINY)
    assert tiny[5:7] == ["x", "<5"]
    days = [r for r in rows if r[0] == "Ngày"]
    assert len(days) == 14 and days[0][1] == "2021-11-08"
    listed = list(csv.reader(io.StringIO(inactive[1:])))
    cells = [c for r in listed for c in r]
    assert "'@SUM(A1)" in cells and "'" + AGENCY_B in cells
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    # negative numbers stay numbers
    assert any(re.fullmatch(r"-\d+(\.\d+)?", c) for r in rows for c in r)


def test_xlsx_sheets_numbers_and_no_formula() -> None:
    openpyxl = pytest.importorskip("openpyxl")
    from tracing.report.render_xlsx import render_xlsx

    data = render_xlsx(sample_report(), "vi")
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == [
        "Cơ quan",
        "Huyện, thành phố",
        "Loại hình",
        "Theo ngày",
        "Không có lượt quét",
        "Ghi chú",
    ]
    ws = wb["Cơ quan"]
    assert [c.value for c in ws[2]][:7] == ["Toàn tỉnh", "Toàn tỉnh", 10, 7, 0.7, 400, 60]
    assert ws.cell(row=2, column=5).number_format == "0.0%"
    cells = [c for sheet in wb.worksheets for row in sheet.iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)
    texts = [c.value for c in cells if isinstance(c.value, str)]
    assert "'" + AGENCY_B in texts and "'@SUM(A1)" in texts
    assert not any(t.startswith(("=", "+", "@")) for t in texts)
    assert any("<5" in t for t in wb["Ghi chú"]["A"][4].value.split())


def test_html_is_one_escaped_self_contained_page() -> None:
    pytest.importorskip("matplotlib")
    from tracing.report.render_html import render_html

    html = render_html(sample_report(), "vi")
    assert html.startswith("<!doctype html>") and '<html lang="vi">' in html
    assert "<script" not in html and not re.search(r'(src|href)="(https?:)?//', html)
    assert "Báo cáo tuần 2021-W46" in html
    assert "Tuần 46 năm 2021: 15/11/2021 \N{EN DASH} 21/11/2021" in html
    assert "=cmd|&#x27; /C calc&#x27;!A0" in html  # escaped text, never markup
    assert "&lt;5" in html and "Trường học" not in html  # only the categories present
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    # days, agency, district, category, uptake; trend: province, district, agency
    assert len(images) == 8
    assert "Báo cáo kết quả thực hiện quét mã QR, tuần từ 15/11/2021 đến 21/11/2021" in html
    english = render_html(sample_report(population=False), "en")
    assert "Weekly report 2021-W46" in english and "Share active" in english
    assert len(re.findall(r"data:image/png", english)) == 7


def test_charts_are_png() -> None:
    pytest.importorskip("matplotlib")
    import base64

    from tracing.report.charts import percent_digits, report_charts
    from tracing.report.i18n import Labels

    charts = report_charts(sample_report(), Labels("vi"))
    assert charts[0].title == "Lượt quét theo ngày"
    for c in charts:
        assert c.png.startswith(PNG) and len(c.png) > 5_000
        assert base64.b64encode(c.png)
    assert percent_digits([0.0, 0.2, 0.4, 1.0]) == 0
    assert percent_digits([0.0, 0.00025, 0.0005]) == 3
    assert percent_digits([0.0, 0.0005, 0.001]) == 2
