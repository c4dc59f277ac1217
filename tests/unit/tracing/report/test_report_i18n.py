"""Labels with their Vietnamese letters, number formats, Vietnamese alphabetical order."""

from __future__ import annotations

from datetime import date

import pytest

from tracing.report.i18n import CATEGORIES, LABELS, NONE, Labels, vi_key
from tracing.report.model import Mark


def test_vietnamese_labels_are_written_with_their_diacritics() -> None:
    vi = Labels("vi")
    assert vi("title.week") == "Báo cáo tuần"
    assert vi("dim.agency") == "Cơ quan"
    assert vi("dim.district") == "Huyện/Thành phố"
    assert vi("dim.category") == "Loại hình"
    assert vi("registered") == "Số điểm đăng ký"
    assert vi("active") == "Số điểm hoạt động"
    assert vi("share_active") == "Tỷ lệ hoạt động"
    assert vi("scans") == "Lượt quét"
    assert vi("scanners") == "Người quét"
    assert vi.group("category", "school") == "Trường học"
    assert vi.group(None, "") == "Toàn tỉnh"
    assert vi.weekday(date(2021, 11, 21)) == "CN"


def test_both_languages_have_every_label_and_category() -> None:
    assert set(LABELS["vi"]) == set(LABELS["en"])
    assert set(CATEGORIES["vi"]) == set(CATEGORIES["en"])


def test_number_formats() -> None:
    vi, en = Labels("vi"), Labels("en")
    assert vi.integer(1234567) == "1.234.567" and en.integer(1234567) == "1,234,567"
    assert vi.percent(0.4531) == "45,3 %" and en.percent(0.4531) == "45.3%"
    assert vi.change(0.12) == "+12,0 %" and vi.change(-0.05) == "-5,0 %"
    assert vi.number(1234.56) == "1.234,6" and en.number(1234.56) == "1,234.6"
    assert vi.points(2.71) == "+2,7" and vi.points(None) == NONE
    assert vi.integer(Mark.FEW) == "<5" and vi.percent(Mark.HIDDEN) == "x"
    assert vi.change(None) == NONE == "\N{EN DASH}"
    assert vi.day(date(2021, 11, 5)) == "05/11/2021" and en.day(date(2021, 11, 5)) == "2021-11-05"


def test_unknown_language() -> None:
    with pytest.raises(ValueError, match="language"):
        Labels("fr")  # type: ignore[arg-type]


def test_vietnamese_alphabetical_order() -> None:
    words = ["Em", "Điện", "Dũng", "Ân", "An", "Ăn", "Ba", "ơi", "ô", "o"]
    assert sorted(words, key=vi_key) == [
        "An",
        "Ăn",
        "Ân",
        "Ba",
        "Dũng",
        "Điện",
        "Em",
        "o",
        "ô",
        "ơi",
    ]
    # letters first, tones second: "Hà" and "Ha" sort next to each other, before "Hai"
    assert sorted(["Hai", "Hà", "Ha"], key=vi_key) == ["Ha", "Hà", "Hai"]
