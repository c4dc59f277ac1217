"""Labels and number formats of the report in Vietnamese (the default) and English."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from datetime import date
from typing import Final, Literal, TypeVar

from tracing.report.model import Dimension, Mark, PeriodKind, Ratio

Lang = Literal["vi", "en"]
T = TypeVar("T")
LANGS: Final[tuple[Lang, ...]] = ("vi", "en")
# Printed where a number has no meaning (a share of no premises, a change from zero).
NONE: Final = "\N{EN DASH}"

_VI: Final[dict[str, str]] = {
    "previous_short.week": "So với tuần trước",
    "previous_short.day": "So với ngày trước",
    "change.share_pp": "Tỷ lệ hoạt động (điểm %)",
    "kpi.change_pp.week": "{x} điểm % so với tuần trước",
    "kpi.change.week": "{x} so với tuần trước",
    "kpi.change_pp.day": "{x} điểm % so với ngày trước",
    "kpi.change.day": "{x} so với ngày trước",
    "sheet.agency": "Cơ quan",
    "sheet.district": "Huyện, thành phố",
    "sheet.category": "Loại hình",
    "sheet.days": "Theo ngày",
    "sheet.inactive": "Không có lượt quét",
    "sheet.notes": "Ghi chú",
    "dimension": "Nhóm theo",
    "group": "Nhóm",
    "title.week": "Báo cáo tuần",
    "title.day": "Báo cáo ngày",
    "subtitle": "Kết quả quét mã QR tại các điểm đăng ký",
    "period.week": "Tuần {week} năm {year}: {first} \N{EN DASH} {last}",
    "period.day": "Ngày {first}",
    "previous.week": "So với tuần trước ({first} \N{EN DASH} {last})",
    "previous.day": "So với ngày trước ({first})",
    "dim.agency": "Cơ quan",
    "dim.district": "Huyện/Thành phố",
    "dim.category": "Loại hình",
    "by.agency": "Theo cơ quan quản lý",
    "by.district": "Theo huyện/thành phố",
    "by.category": "Theo loại hình",
    "total": "Toàn tỉnh",
    "unknown": "(không rõ)",
    "registered": "Số điểm đăng ký",
    "active": "Số điểm hoạt động",
    "share_active": "Tỷ lệ hoạt động",
    "scans": "Lượt quét",
    "scanners": "Người quét",
    "scans_per_active": "Lượt quét/điểm hoạt động",
    "change_share_pp.week": "Tỷ lệ hoạt động so với tuần trước (điểm %)",
    "change_scans.week": "Lượt quét so với tuần trước",
    "change_scanners.week": "Người quét so với tuần trước",
    "change_share_pp.day": "Tỷ lệ hoạt động so với ngày trước (điểm %)",
    "change_scans.day": "Lượt quét so với ngày trước",
    "change_scanners.day": "Người quét so với ngày trước",
    "population": "Dân số",
    "uptake": "Tỷ lệ người quét/dân số",
    "summary": "Tổng quan toàn tỉnh",
    "days": "Theo ngày",
    "day": "Ngày",
    "this_period.week": "Tuần này",
    "previous_period.week": "Tuần trước",
    "this_period.day": "Ngày này",
    "previous_period.day": "Ngày trước",
    "inactive.week": "Điểm đăng ký không có lượt quét nào trong tuần (chưa thực hiện nghiêm)",
    "inactive.day": "Điểm đăng ký không có lượt quét nào trong ngày (chưa thực hiện nghiêm)",
    "inactive.none": "Tất cả các điểm đăng ký đều có lượt quét.",
    "inactive.count": "{n} điểm",
    "premises_id": "Mã điểm",
    "name": "Tên điểm",
    "ward": "Xã/Phường",
    "chart.share_district": "Tỷ lệ điểm hoạt động theo huyện/thành phố",
    "chart.share_agency": "Tỷ lệ điểm hoạt động theo cơ quan",
    "chart.share_category": "Tỷ lệ điểm hoạt động theo loại hình",
    "chart.days": "Lượt quét theo ngày",
    "chart.uptake": "Người quét trên dân số theo huyện/thành phố",
    "chart.hidden": "ẩn",
    "note.suppression": (
        "Bảo vệ dữ liệu cá nhân: nhóm có từ 1 đến {t1} người quét khác nhau được ghi “<{t}” "
        "ở cột Người quét, và mọi số liệu khác của nhóm đó (lượt quét, lượt quét/điểm, tỷ lệ "
        "trên dân số, thay đổi) được ghi “x”. Khi một bảng (hoặc các ngày của một tuần) có số "
        "bị ẩn, lượt quét của nhóm (hoặc ngày) nhỏ nhất còn lại cũng được ghi “x”, trong mọi "
        "báo cáo của cùng tuần, để không thể suy ra số bị ẩn bằng phép trừ."
    ),
    "note.time.week": (
        "Tuần theo ISO 8601, tính theo giờ Việt Nam (UTC+7): từ 00:00 thứ Hai đến hết 24:00 "
        "Chủ nhật."
    ),
    "note.time.day": "Ngày tính theo giờ Việt Nam (UTC+7), từ 00:00 đến 24:00.",
    "note.counts": (
        "Lượt quét và người quét được đếm không trùng lặp: một người quét ở nhiều ngày hoặc "
        "nhiều điểm chỉ được tính một lần. Điểm hoạt động: có ít nhất một lượt quét trong kỳ. "
        "Số liệu lấy từ bảng tổng hợp hằng ngày; nhóm theo danh mục điểm hiện hành."
    ),
    "note.uptake": (
        "Tỷ lệ người quét/dân số: người quét tại các điểm của huyện chia cho dân số huyện."
    ),
    "generated": "Lập lúc {at} (giờ Việt Nam)",
    "doc.title.week": "Báo cáo kết quả thực hiện quét mã QR, tuần từ {first} đến {last}",
    "doc.title.day": "Báo cáo kết quả thực hiện quét mã QR, ngày {first}",
    "authority.default": "Cơ quan báo cáo",
    "cutoff": "Số liệu tính đến {at}",
    "incomplete.week": (
        "Tuần chưa kết thúc: số liệu tính đến {at}; các ngày sau thời điểm này chưa có báo "
        "cáo (không phải bằng 0)."
    ),
    "incomplete.day": "Ngày chưa kết thúc: số liệu tính đến {at}.",
    "not_reported": "chưa báo cáo",
    "no_data": "không có số liệu",
    "previous_empty": "Kỳ trước không có số liệu: không so sánh.",
    "dim.ward": "Xã/Phường",
    "by.ward": "Theo xã/phường",
    "sheet.ward": "Xã, phường",
    "chart.share_ward": "Tỷ lệ điểm hoạt động theo xã/phường",
    "trend": "Xu hướng {n} tuần gần nhất",
    "trend.week": "Tuần",
    "chart.trend_district": "Lượt quét theo tuần, theo huyện/thành phố",
    "chart.trend_ward": "Lượt quét theo tuần, theo xã/phường",
    "chart.trend_agency": "Lượt quét theo tuần, theo cơ quan",
    "chart.trend_total": "Lượt quét, người quét và điểm hoạt động theo tuần, toàn tỉnh",
    "cross": "Cơ quan theo huyện/thành phố (điểm hoạt động/điểm đăng ký; người quét)",
    "staff": "Cán bộ, công chức, người lao động quét mã tại trụ sở cơ quan",
    "headcount": "Tổng số người (biên chế)",
    "working_days": "Số ngày làm việc",
    "mean_daily": "Bình quân người quét/ngày",
    "share_headcount": "Tỷ lệ so với tổng số người",
    "note.staff": (
        "Cán bộ quét mã: số người khác nhau quét mã tại các điểm loại “Cơ quan, văn phòng” của "
        "chính cơ quan, mỗi ngày làm việc (thứ Hai đến thứ Sáu), bình quân trên các ngày làm "
        "việc đã có số liệu, chia cho tổng số người của cơ quan."
    ),
    "unregistered": "Mã QR chưa có trong danh mục đăng ký",
    "unregistered.none": "Không có lượt quét nào tại mã QR ngoài danh mục.",
    "gateways": "Số cổng gửi",
    "first_seen": "Ngày đầu",
    "last_seen": "Ngày cuối",
    "rejected": "Lượt quét bị từ chối theo lý do và theo cổng gửi",
    "rejected.none": "Không có lượt quét nào bị từ chối.",
    "reason": "Lý do",
    "gateway": "Cổng gửi",
    "all_gateways": "Tất cả",
    "edition": "Bản dành cho {unit}",
    "index": "Danh sách các bản báo cáo",
    "page": "Trang",
}

_EN: Final[dict[str, str]] = {
    "previous_short.week": "Change from the previous week",
    "previous_short.day": "Change from the previous day",
    "change.share_pp": "Share active (points)",
    "kpi.change_pp.week": "{x} points from the previous week",
    "kpi.change.week": "{x} from the previous week",
    "kpi.change_pp.day": "{x} points from the previous day",
    "kpi.change.day": "{x} from the previous day",
    "sheet.agency": "Agency",
    "sheet.district": "District",
    "sheet.category": "Category",
    "sheet.days": "By day",
    "sheet.inactive": "No scans",
    "sheet.notes": "Notes",
    "dimension": "Grouped by",
    "group": "Group",
    "title.week": "Weekly report",
    "title.day": "Daily report",
    "subtitle": "QR check-in scans at registered premises",
    "period.week": "Week {week} of {year}: {first} \N{EN DASH} {last}",
    "period.day": "{first}",
    "previous.week": "Compared with the previous week ({first} \N{EN DASH} {last})",
    "previous.day": "Compared with the previous day ({first})",
    "dim.agency": "Agency",
    "dim.district": "District",
    "dim.category": "Category",
    "by.agency": "By agency",
    "by.district": "By district",
    "by.category": "By premises category",
    "total": "Province",
    "unknown": "(unknown)",
    "registered": "Premises registered",
    "active": "Premises active",
    "share_active": "Share active",
    "scans": "Scans",
    "scanners": "Distinct scanners",
    "scans_per_active": "Scans per active premises",
    "change_share_pp.week": "Share active vs previous week (points)",
    "change_scans.week": "Scans vs previous week",
    "change_scanners.week": "Scanners vs previous week",
    "change_share_pp.day": "Share active vs previous day (points)",
    "change_scans.day": "Scans vs previous day",
    "change_scanners.day": "Scanners vs previous day",
    "population": "Population",
    "uptake": "Scanners per population",
    "summary": "Province summary",
    "days": "By day",
    "day": "Day",
    "this_period.week": "This week",
    "previous_period.week": "Previous week",
    "this_period.day": "This day",
    "previous_period.day": "Previous day",
    "inactive.week": "Registered premises with no scan in the week (not done seriously)",
    "inactive.day": "Registered premises with no scan on the day (not done seriously)",
    "inactive.none": "Every registered premises has scans.",
    "inactive.count": "{n} premises",
    "premises_id": "Premises id",
    "name": "Name",
    "ward": "Ward/commune",
    "chart.share_district": "Share of premises active by district",
    "chart.share_agency": "Share of premises active by agency",
    "chart.share_category": "Share of premises active by category",
    "chart.days": "Scans per day",
    "chart.uptake": "Distinct scanners per population by district",
    "chart.hidden": "hidden",
    "note.suppression": (
        "Privacy: a group of 1 to {t1} distinct scanners shows “<{t}” as its scanners and "
        "“x” for every other number about its persons (scans, scans per premises, uptake, "
        "changes). When a table (or the days of a week) hides a number, the scans of its "
        "smallest other group (or day) are shown as “x” too, in every report of the same "
        "week, so that no hidden number can be recomputed by a subtraction."
    ),
    "note.time.week": (
        "ISO 8601 weeks in Vietnam time (UTC+7): Monday 00:00 to the end of Sunday."
    ),
    "note.time.day": "Days in Vietnam time (UTC+7), 00:00 to 24:00.",
    "note.counts": (
        "Scans and scanners are distinct counts: a person who scanned on several days or at "
        "several premises counts once. Active premises: at least one scan in the period. "
        "From the daily rollup; groups as in the current premises registry."
    ),
    "note.uptake": (
        "Uptake: distinct scanners at the district's premises divided by its population."
    ),
    "generated": "Generated {at} (Vietnam time)",
    "doc.title.week": "Report on QR code scanning, week from {first} to {last}",
    "doc.title.day": "Report on QR code scanning, {first}",
    "authority.default": "Reporting authority",
    "cutoff": "Data up to {at}",
    "incomplete.week": (
        "The week is not over: data up to {at}; the days after it are not yet reported (not zero)."
    ),
    "incomplete.day": "The day is not over: data up to {at}.",
    "not_reported": "not yet reported",
    "no_data": "no data",
    "previous_empty": "The previous period has no data: no comparison.",
    "dim.ward": "Ward/commune",
    "by.ward": "By ward/commune",
    "sheet.ward": "Ward",
    "chart.share_ward": "Share of premises active by ward/commune",
    "trend": "Trend of the last {n} weeks",
    "trend.week": "Week",
    "chart.trend_district": "Scans per week by district",
    "chart.trend_ward": "Scans per week by ward/commune",
    "chart.trend_agency": "Scans per week by agency",
    "chart.trend_total": "Scans, scanners and active premises per week, province",
    "cross": "Agencies by district (active/registered premises; distinct scanners)",
    "staff": "Staff scanning at their agency's own offices",
    "headcount": "Headcount",
    "working_days": "Working days",
    "mean_daily": "Mean distinct scanners per day",
    "share_headcount": "Share of headcount",
    "note.staff": (
        "Staff: distinct persons who scanned at the agency's own premises of category "
        "office, per working day (Monday to Friday), averaged over the working days "
        "reported, divided by the agency's headcount."
    ),
    "unregistered": "QR codes not in the registry",
    "unregistered.none": "No scan at a QR code outside the registry.",
    "gateways": "Gateways",
    "first_seen": "First day",
    "last_seen": "Last day",
    "rejected": "Rejected scans by reason and by gateway",
    "rejected.none": "No scan was rejected.",
    "reason": "Reason",
    "gateway": "Gateway",
    "all_gateways": "All",
    "edition": "Edition for {unit}",
    "index": "Editions of the report",
    "page": "Page",
}

LABELS: Final[dict[Lang, dict[str, str]]] = {"vi": _VI, "en": _EN}

CATEGORIES: Final[dict[Lang, dict[str, str]]] = {
    "vi": {
        "office": "Cơ quan, văn phòng",
        "school": "Trường học",
        "market": "Chợ",
        "supermarket": "Siêu thị",
        "mall": "Trung tâm thương mại",
        "bus_station": "Bến xe, nhà ga",
        "tourist_site": "Điểm du lịch",
        "accommodation": "Cơ sở lưu trú",
        "factory": "Nhà máy, xí nghiệp",
        "shop": "Cửa hàng",
        "restaurant": "Nhà hàng, quán ăn",
        "hospital": "Cơ sở y tế",
        "religious": "Cơ sở tôn giáo",
        "other": "Khác",
    },
    "en": {
        "office": "Office",
        "school": "School",
        "market": "Market",
        "supermarket": "Supermarket",
        "mall": "Mall",
        "bus_station": "Bus station",
        "tourist_site": "Tourist site",
        "accommodation": "Accommodation",
        "factory": "Factory",
        "shop": "Shop",
        "restaurant": "Restaurant",
        "hospital": "Hospital, clinic",
        "religious": "Religious site",
        "other": "Other",
    },
}

# Vietnamese alphabetical order: a < ă < â < b < ... < d < đ < e < ê ..., tones after.
_MODIFIER_RANK: Final = {"\u0306": "1", "\u0302": "2", "\u031b": "3"}  # breve, circumflex, horn
_TONES: Final = {"\u0300": "1", "\u0309": "2", "\u0303": "3", "\u0301": "4", "\u0323": "5"}


def vi_key(text: str) -> tuple[str, str]:
    """A sort key in Vietnamese alphabetical order (letters first, then tones), so that
    "Điện" sorts after "Dũng" and before "Em", and "Ân" after "An"."""
    letters: list[str] = []
    tones: list[str] = []
    for ch in unicodedata.normalize("NFD", text.casefold()):
        if ch in _MODIFIER_RANK and letters:
            letters[-1] = letters[-1][0] + _MODIFIER_RANK[ch]
        elif ch in _TONES:
            tones.append(_TONES[ch])
        elif ch == "đ":
            letters.append("d1")
            tones.append("0")
        else:
            letters.append(ch + "0")
            tones.append("0")
    return "".join(letters), "".join(tones)


WEEKDAYS: Final[dict[Lang, tuple[str, ...]]] = {
    "vi": ("T2", "T3", "T4", "T5", "T6", "T7", "CN"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}


class Labels:
    """The labels and number formats of one language."""

    def __init__(self, lang: Lang) -> None:
        if lang not in LABELS:
            raise ValueError(f"unknown language {lang!r}; one of {', '.join(LANGS)}")
        self.lang: Lang = lang
        self._text = LABELS[lang]
        # vi: 1.234   en: 1,234
        self._thousands = "." if lang == "vi" else ","

    def __call__(self, key: str, **values: object) -> str:
        text = self._text[key]
        return text.format(**values) if values else text

    def per(self, key: str, kind: PeriodKind) -> str:
        """A label that differs for weeks and days (`change_scans.week`)."""
        return self._text[f"{key}.{kind}"]

    def group(self, dimension: Dimension | None, key: str) -> str:
        """How a group is named: the category's label, "(unknown)" for an empty key."""
        if dimension is None:
            return self("total")
        if not key:
            return self("unknown")
        if dimension == "category":
            return CATEGORIES[self.lang].get(key, key)
        return key

    def ordered(self, dimension: Dimension, rows: Sequence[T], key: Callable[[T], str]) -> list[T]:
        """`rows` in the alphabetical order of their group names in this language."""
        return sorted(rows, key=lambda r: vi_key(self.group(dimension, key(r))))

    def day(self, d: date) -> str:
        return f"{d:%d/%m/%Y}" if self.lang == "vi" else d.isoformat()

    def weekday(self, d: date) -> str:
        return WEEKDAYS[self.lang][d.weekday()]

    def integer(self, n: int | Mark) -> str:
        if isinstance(n, Mark):
            return n.value
        return f"{n:,}".replace(",", self._thousands)

    def number(self, x: Ratio, digits: int = 1) -> str:
        if x is None:
            return NONE
        if isinstance(x, Mark):
            return x.value
        return self._swap(f"{x:,.{digits}f}")

    def percent(self, x: Ratio, digits: int = 1) -> str:
        """A share (0.453) as `45,3 %` (vi) / `45.3%` (en)."""
        if x is None or isinstance(x, Mark):
            return self.number(x)
        text = self._swap(f"{x * 100:,.{digits}f}")
        return f"{text} %" if self.lang == "vi" else f"{text}%"

    def change(self, x: Ratio, digits: int = 1) -> str:
        """A relative change (0.12) as `+12,0 %`."""
        if x is None or isinstance(x, Mark):
            return self.number(x)
        return ("+" if x > 0 else "") + self.percent(x, digits)

    def points(self, x: float | None, digits: int = 1) -> str:
        """A change in percentage points as `+3,2`."""
        if x is None:
            return NONE
        return ("+" if x > 0 else "") + self.number(x, digits)

    def _swap(self, text: str) -> str:
        if self.lang == "en":
            return text
        return text.replace(",", "\0").replace(".", ",").replace("\0", ".")
