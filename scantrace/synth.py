"""A synthetic province shaped like Ninh Thuan, Vietnam: premises registry and a day of scans.

Everything is deterministic from a seed: each generator builds its own
`random.Random(seed)` and never touches the global one, so the same seed gives the
same premises, the same scans in the same order, and the same ground truth.

Premises
    `generate_premises(seed, n)` spreads `n` premises over the seven districts by
    population (`DISTRICT_POPULATION`), over real ward and commune names, with a
    category mix that has many shops, restaurants, offices and schools and only a few
    malls and bus stations. Ids are `NT-000001`, `NT-000002`, ...

A day of scans
    `generate_scans(seed, premises, day)` returns a `ScanDay` (iterate it for the
    scans): the wire maps a gateway would POST (`event_id` as 32 hex characters like
    `uuid4().hex`, drawn from the seeded Random; `person_id`; `premises_id`;
    `scanned_at` in epoch ms; `kind`) in *arrival order*, a parallel list of arrival
    times, and a `ScanTruth` with exact expected counts, counted while generating.

    The records are, in this order of construction:
    - base scans: each person (pseudonymous `P` + 12 hex chars) checks in at a few
      distinct premises, mostly in their home district, at times drawn from an hourly
      profile with morning (7-9h) and evening (17-19h) peaks in Asia/Ho_Chi_Minh
      local time; some visits also check out 20-120 minutes later (within the day);
    - exact duplicates: a base scan resent unchanged (same `event_id`) 1-300 s later;
    - repeats: the same person, premises and kind as a base scan, a new `event_id`,
      1-4 minutes after it (before it when that would leave the day);
    - unknown premises: valid check-ins at ids that are not in the registry
      (`NT-9xxxxx`, a few scans per unknown premises), to be parked downstream;
    - bad records, each breaking the contract in exactly one way, so
      `ingest.contract.parse_scan` rejects it with a known reason: a missing field,
      a wrong type, an unknown kind, or a timestamp in 2099 (`future_timestamp`
      for any realistic clock).

    Late uploads are base scans whose phone was offline: their `scanned_at` is
    unchanged, but they arrive 1-36 hours after the end of the day. Because
    `ScanDay.scans` is sorted by arrival, the late ones are exactly the tail
    `scans[late_start:]` (`ScanDay.late`); a loader that wants to send them later
    sends `ScanDay.on_time` first. Every other record arrives 0-33 s after its
    `scanned_at` (a resend up to 5 minutes after the original).

    Size: by default one record stream for `persons` people (about 2.7 base scans
    each, a few hundred thousand records for Ninh Thuan's 115,000 app users), and
    the anomaly counts are `round(base * rate)`. With `scans=N` the output has
    exactly N records and the anomaly counts are `round(N * rate)`.

Files
    `write_premises_csv` / `read_premises_csv` (UTF-8, `CSV_COLUMNS`),
    `write_population_csv` (district,population), `write_scans` / `read_scans`
    (JSON lines for `.jsonl`, a msgpack stream for `.msgpack`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from bisect import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Final, Literal
from zoneinfo import ZoneInfo

import msgpack

from ingest.contract import MIN_SCANNED_AT_MS
from ingest.premises import CSV_COLUMNS, Premises

TZ: Final = ZoneInfo("Asia/Ho_Chi_Minh")
PROVINCE: Final = "Ninh Thuận"
CITY: Final = "Phan Rang-Tháp Chàm"

# Rough 2021 populations (people) of the seven districts.
DISTRICT_POPULATION: Final[dict[str, int]] = {
    CITY: 170_000,
    "Bác Ái": 30_000,
    "Ninh Hải": 95_000,
    "Ninh Phước": 135_000,
    "Ninh Sơn": 80_000,
    "Thuận Bắc": 45_000,
    "Thuận Nam": 60_000,
}
DISTRICTS: Final[tuple[str, ...]] = tuple(DISTRICT_POPULATION)

# Approximate centres (lat, lon) of the populated part of each district.
_DISTRICT_CENTRE: Final[dict[str, tuple[float, float]]] = {
    CITY: (11.567, 108.988),
    "Bác Ái": (11.860, 108.860),
    "Ninh Hải": (11.640, 109.080),
    "Ninh Phước": (11.480, 108.920),
    "Ninh Sơn": (11.730, 108.790),
    "Thuận Bắc": (11.760, 109.050),
    "Thuận Nam": (11.400, 108.900),
}

WARDS: Final[dict[str, tuple[str, ...]]] = {
    CITY: (
        "Phường Đô Vinh",
        "Phường Bảo An",
        "Phường Phước Mỹ",
        "Phường Thanh Sơn",
        "Phường Mỹ Hương",
        "Phường Kinh Dinh",
        "Phường Phủ Hà",
        "Phường Đạo Long",
        "Phường Tấn Tài",
        "Phường Mỹ Bình",
        "Phường Đông Hải",
        "Phường Văn Hải",
        "Xã Thành Hải",
    ),
    "Bác Ái": (
        "Xã Phước Đại",
        "Xã Phước Bình",
        "Xã Phước Hòa",
        "Xã Phước Tân",
        "Xã Phước Tiến",
        "Xã Phước Thắng",
        "Xã Phước Trung",
    ),
    "Ninh Hải": (
        "Thị trấn Khánh Hải",
        "Xã Vĩnh Hải",
        "Xã Nhơn Hải",
        "Xã Tri Hải",
        "Xã Hộ Hải",
        "Xã Tân Hải",
        "Xã Xuân Hải",
        "Xã Thanh Hải",
    ),
    "Ninh Phước": (
        "Thị trấn Phước Dân",
        "Xã Phước Hậu",
        "Xã Phước Thuận",
        "Xã Phước Hải",
        "Xã Phước Vinh",
        "Xã Phước Sơn",
        "Xã Phước Thái",
        "Xã Phước Hữu",
        "Xã An Hải",
    ),
    "Ninh Sơn": (
        "Thị trấn Tân Sơn",
        "Xã Quảng Sơn",
        "Xã Lâm Sơn",
        "Xã Lương Sơn",
        "Xã Mỹ Sơn",
        "Xã Nhơn Sơn",
        "Xã Hòa Sơn",
    ),
    "Thuận Bắc": (
        "Xã Lợi Hải",
        "Xã Bắc Sơn",
        "Xã Bắc Phong",
        "Xã Công Hải",
        "Xã Phước Kháng",
        "Xã Phước Chiến",
    ),
    "Thuận Nam": (
        "Xã Phước Nam",
        "Xã Cà Ná",
        "Xã Phước Ninh",
        "Xã Phước Minh",
        "Xã Phước Dinh",
        "Xã Phước Diêm",
        "Xã Nhị Hà",
    ),
}

AGENCY_HEALTH: Final = "Sở Y tế"
AGENCY_EDUCATION: Final = "Sở Giáo dục và Đào tạo"
AGENCY_TRADE: Final = "Sở Công Thương"
AGENCY_TRANSPORT: Final = "Sở Giao thông Vận tải"
AGENCY_CULTURE: Final = "Sở Văn hóa, Thể thao và Du lịch"
AGENCY_PRIVATE: Final = "Doanh nghiệp tư nhân"


def district_agency(district: str) -> str:
    """The people's committee of a district (the city has a city committee)."""
    return "UBND thành phố " + district if district == CITY else "UBND huyện " + district


AGENCIES: Final[tuple[str, ...]] = (
    AGENCY_HEALTH,
    AGENCY_EDUCATION,
    AGENCY_TRADE,
    AGENCY_TRANSPORT,
    AGENCY_CULTURE,
    AGENCY_PRIVATE,
    *(district_agency(d) for d in DISTRICTS),
)

# Share of registered premises per category (many shops, few malls).
CATEGORY_SHARE: Final[dict[str, float]] = {
    "shop": 0.30,
    "restaurant": 0.15,
    "office": 0.12,
    "school": 0.08,
    "religious": 0.05,
    "accommodation": 0.04,
    "market": 0.035,
    "factory": 0.03,
    "hospital": 0.025,
    "other": 0.025,
    "supermarket": 0.02,
    "tourist_site": 0.015,
    "bus_station": 0.0015,
    "mall": 0.001,
}

# How strongly a premises of each category draws visitors (scans per premises).
_ATTRACTION: Final[dict[str, float]] = {
    "shop": 2.0,
    "restaurant": 4.0,
    "office": 5.0,
    "school": 8.0,
    "religious": 3.0,
    "accommodation": 3.0,
    "market": 30.0,
    "factory": 12.0,
    "hospital": 15.0,
    "other": 3.0,
    "supermarket": 20.0,
    "tourist_site": 8.0,
    "bus_station": 25.0,
    "mall": 40.0,
}
# Probability that a visit also scans out (workplaces are stricter about it).
_CHECKOUT_P: Final[dict[str, float]] = {
    "office": 0.45,
    "school": 0.45,
    "factory": 0.5,
    "hospital": 0.4,
    "accommodation": 0.35,
}
_CHECKOUT_P_DEFAULT: Final = 0.25

# Relative check-in volume per local hour: night lull, peaks at 7-9h and 17-19h.
HOURLY_PROFILE: Final[tuple[float, ...]] = (
    0.2, 0.1, 0.1, 0.1, 0.3, 1.5,  # 0-5h
    4.0, 10.0, 10.0, 5.5, 4.5, 5.0,  # 6-11h
    5.5, 3.5, 3.5, 4.0, 5.0, 9.5,  # 12-17h
    10.0, 6.0, 4.0, 2.5, 1.0, 0.4,  # 18-23h
)  # fmt: skip
# Visits per person and their relative frequency (about 2 visits, 2.7 scans).
_VISITS: Final[tuple[int, ...]] = (1, 2, 3, 4, 5)
_VISITS_WEIGHT: Final[tuple[float, ...]] = (0.34, 0.34, 0.20, 0.09, 0.03)
HOME_DISTRICT_P: Final = 0.85

_GIVEN: Final = (
    "Minh Anh", "Thanh Hà", "Hoàng Long", "Phúc Lộc", "Thành Đạt", "Ngọc Lan", "Tuấn Kiệt",
    "Bảo Châu", "Hải Yến", "Quang Vinh", "Kim Ngân", "Phương Thảo", "Đức Thịnh", "Thu Trang",
    "Hồng Nhung", "Văn Tài", "Mỹ Duyên", "Gia Huy", "Thảo Nguyên", "An Khang", "Tấn Phát",
    "Hưng Thịnh", "Cẩm Tú", "Xuân Mai", "Bích Ngọc", "Ánh Dương", "Trường Giang", "Hiếu Nghĩa",
    "Bình An", "Lộc Phát", "Thủy Tiên", "Quốc Bảo", "Diệu Linh", "Nhật Quang", "Kiều Oanh",
)  # fmt: skip
_SCHOOL_PATRONS: Final = (
    "Lê Lợi", "Trần Hưng Đạo", "Nguyễn Trãi", "Lê Quý Đôn", "Chu Văn An", "Nguyễn Du",
    "Lý Tự Trọng", "Võ Thị Sáu", "Kim Đồng", "Trần Quốc Toản", "Nguyễn Thị Minh Khai",
    "Phan Chu Trinh", "Tôn Đức Thắng", "Lê Hồng Phong", "Hùng Vương", "Quang Trung",
    "Ngô Quyền", "Đinh Tiên Hoàng", "Phan Bội Châu", "Trần Phú", "Nguyễn Văn Trỗi",
)  # fmt: skip
_FLOWERS: Final = ("Hoa Sen", "Họa Mi", "Sơn Ca", "Hoa Hồng", "Tuổi Thơ", "Vành Khuyên")
_PAGODAS: Final = ("Phước Thiện", "Linh Sơn", "Thiện Minh", "Long Quang", "Bửu Tháp", "Quảng Hội")
_STREETS: Final = (
    "Thống Nhất", "21 Tháng 8", "16 Tháng 4", "Ngô Gia Tự", "Lê Hồng Phong", "Trần Phú",
    "Yên Ninh", "Hải Thượng Lãn Ông", "Quang Trung", "Nguyễn Văn Cừ", "Lê Duẩn",
    "Trường Chinh", "Minh Mạng", "Phạm Văn Đồng", "Quốc lộ 1A", "Quốc lộ 27",
)  # fmt: skip
# Named places, used first for their category in their district.
_LANDMARKS: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("market", CITY): ("Chợ Phan Rang", "Chợ Tháp Chàm"),
    ("supermarket", CITY): ("Siêu thị Co.opmart Phan Rang",),
    ("mall", CITY): ("Trung tâm thương mại Vincom Plaza Phan Rang",),
    ("bus_station", CITY): ("Bến xe Phan Rang", "Ga Tháp Chàm"),
    ("hospital", CITY): ("Bệnh viện Đa khoa tỉnh Ninh Thuận", "Bệnh viện Y dược cổ truyền tỉnh"),
    ("tourist_site", CITY): (
        "Tháp Po Klong Garai",
        "Bãi biển Bình Sơn",
        "Bảo tàng tỉnh Ninh Thuận",
    ),
    ("tourist_site", "Ninh Hải"): ("Vịnh Vĩnh Hy", "Bãi biển Ninh Chữ", "Hang Rái", "Đầm Nại"),
    ("tourist_site", "Ninh Phước"): ("Làng gốm Bàu Trúc", "Tháp Po Rome", "Đồi cát Nam Cương"),
    ("tourist_site", "Thuận Nam"): ("Hải đăng Mũi Dinh", "Đồi cát Mũi Dinh", "Bãi biển Cà Ná"),
    ("tourist_site", "Bác Ái"): ("Thác Chapơr", "Hồ Sông Sắt", "Vườn quốc gia Phước Bình"),
    ("tourist_site", "Ninh Sơn"): ("Đèo Ngoạn Mục", "Hồ Sông Pha"),
    ("tourist_site", "Thuận Bắc"): ("Hồ Sông Trâu", "Suối Lồ Ồ"),
    ("factory", "Thuận Nam"): ("Nhà máy muối Cà Ná",),
}

# (name template, agency); "UBND" means the district's committee. Placeholders:
# {given} a business name, {ward} the ward, {wcore} the ward without its prefix,
# {dname} the district with its prefix, {patron} a school patron, {flower}, {pagoda}.
_TEMPLATES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "shop": (
        ("Cửa hàng tạp hóa {given}", AGENCY_PRIVATE),
        ("Cửa hàng tạp hóa {given}", AGENCY_PRIVATE),
        ("Cửa hàng điện thoại {given}", AGENCY_PRIVATE),
        ("Nhà thuốc {given}", AGENCY_HEALTH),
        ("Cửa hàng vật liệu xây dựng {given}", AGENCY_PRIVATE),
        ("Tiệm vàng {given}", AGENCY_PRIVATE),
        ("Shop thời trang {given}", AGENCY_PRIVATE),
        ("Cửa hàng đặc sản nho {given}", AGENCY_PRIVATE),
        ("Tiệm sửa xe {given}", AGENCY_PRIVATE),
    ),
    "restaurant": (
        ("Quán cơm {given}", AGENCY_PRIVATE),
        ("Quán phở {given}", AGENCY_PRIVATE),
        ("Quán bánh căn {given}", AGENCY_PRIVATE),
        ("Quán bánh xèo {given}", AGENCY_PRIVATE),
        ("Quán cà phê {given}", AGENCY_PRIVATE),
        ("Quán cà phê {given}", AGENCY_PRIVATE),
        ("Nhà hàng hải sản {given}", AGENCY_PRIVATE),
        ("Quán bún cá {given}", AGENCY_PRIVATE),
        ("Quán dê nướng {given}", AGENCY_PRIVATE),
    ),
    "office": (
        ("Ủy ban nhân dân {ward}", "UBND"),
        ("Công an {ward}", "UBND"),
        ("Bưu điện {wcore}", AGENCY_PRIVATE),
        ("Ngân hàng Agribank chi nhánh {wcore}", AGENCY_PRIVATE),
        ("Chi cục Thuế {dname}", "UBND"),
        ("Kho bạc Nhà nước {dname}", "UBND"),
        ("Văn phòng Công ty TNHH {given}", AGENCY_PRIVATE),
        ("Văn phòng Công ty TNHH {given}", AGENCY_PRIVATE),
        ("Phòng Giáo dục {dname}", AGENCY_EDUCATION),
        ("Trung tâm Văn hóa Thông tin {dname}", AGENCY_CULTURE),
        ("Văn phòng Sở Y tế tại {wcore}", AGENCY_HEALTH),
        ("Phòng Kinh tế {dname}", AGENCY_TRADE),
    ),
    "school": (
        ("Trường Mầm non {flower}", AGENCY_EDUCATION),
        ("Trường Tiểu học {patron}", AGENCY_EDUCATION),
        ("Trường Tiểu học {patron}", AGENCY_EDUCATION),
        ("Trường THCS {patron}", AGENCY_EDUCATION),
        ("Trường THPT {patron}", AGENCY_EDUCATION),
    ),
    "religious": (
        ("Chùa {pagoda}", "UBND"),
        ("Nhà thờ Giáo xứ {wcore}", "UBND"),
        ("Đình làng {wcore}", "UBND"),
        ("Thánh đường Hồi giáo {wcore}", "UBND"),
    ),
    "accommodation": (
        ("Khách sạn {given}", AGENCY_CULTURE),
        ("Nhà nghỉ {given}", AGENCY_PRIVATE),
        ("Homestay {given}", AGENCY_PRIVATE),
        ("Khu nghỉ dưỡng {given}", AGENCY_CULTURE),
    ),
    "market": (("Chợ {wcore}", AGENCY_TRADE),),
    "factory": (
        ("Xưởng chế biến hải sản {given}", AGENCY_PRIVATE),
        ("Nhà máy điện mặt trời {wcore}", AGENCY_TRADE),
        ("Công ty TNHH May mặc {given}", AGENCY_PRIVATE),
        ("Nhà máy chế biến nho {given}", AGENCY_PRIVATE),
        ("Nhà máy gạch tuynel {wcore}", AGENCY_TRADE),
    ),
    "hospital": (
        ("Trạm Y tế {ward}", AGENCY_HEALTH),
        ("Trung tâm Y tế {dname}", AGENCY_HEALTH),
        ("Phòng khám đa khoa {given}", AGENCY_PRIVATE),
    ),
    "other": (
        ("Nhà văn hóa {wcore}", "UBND"),
        ("Trạm xăng dầu {given}", AGENCY_PRIVATE),
        ("Cảng cá {wcore}", "UBND"),
        ("Chốt kiểm soát dịch {wcore}", AGENCY_HEALTH),
        ("Sân vận động {dname}", AGENCY_CULTURE),
    ),
    "supermarket": (
        ("Bách hóa Xanh {wcore}", AGENCY_TRADE),
        ("Siêu thị mini {given}", AGENCY_TRADE),
        ("Điện Máy Xanh {wcore}", AGENCY_TRADE),
        ("WinMart+ {wcore}", AGENCY_TRADE),
    ),
    "tourist_site": (
        ("Khu du lịch {given}", AGENCY_CULTURE),
        ("Vườn nho {given}", AGENCY_CULTURE),
    ),
    "bus_station": (("Bến xe {wcore}", AGENCY_TRANSPORT),),
    "mall": (("Trung tâm thương mại {given}", AGENCY_TRADE),),
}
_LANDMARK_AGENCY: Final[dict[str, str]] = {
    "market": AGENCY_TRADE,
    "supermarket": AGENCY_TRADE,
    "mall": AGENCY_TRADE,
    "bus_station": AGENCY_TRANSPORT,
    "hospital": AGENCY_HEALTH,
    "tourist_site": AGENCY_CULTURE,
    "factory": AGENCY_TRADE,
}

LAT_RANGE: Final = (11.30, 12.20)
LON_RANGE: Final = (108.60, 109.25)


def _allocate(total: int, weights: Mapping[str, float], minimum: int = 0) -> dict[str, int]:
    """Split `total` into integer parts proportional to `weights` (largest remainder)."""
    keys = list(weights)
    base = {k: minimum for k in keys}
    rest = total - minimum * len(keys)
    if rest < 0:
        raise ValueError(f"cannot give {len(keys)} parts {minimum} each out of {total}")
    weight_sum = sum(weights.values())
    exact = {k: rest * weights[k] / weight_sum for k in keys}
    for k in keys:
        base[k] += int(exact[k])
    left = total - sum(base.values())
    by_remainder = sorted(keys, key=lambda k: (-(exact[k] - int(exact[k])), keys.index(k)))
    for k in by_remainder[:left]:
        base[k] += 1
    return base


def _ward_core(ward: str) -> str:
    for prefix in ("Phường ", "Xã ", "Thị trấn "):
        if ward.startswith(prefix):
            return ward[len(prefix) :]
    return ward


def _district_label(district: str) -> str:
    return "thành phố " + district if district == CITY else "huyện " + district


def _ward_centre(district: str, ward: str) -> tuple[float, float]:
    """A fixed (seed-independent) point near the district centre for each ward."""
    lat, lon = _DISTRICT_CENTRE[district]
    place = random.Random(f"ward:{district}:{ward}")  # noqa: S311 - geography, not security
    spread = 0.025 if district == CITY else 0.06
    return lat + place.uniform(-spread, spread), lon + place.uniform(-spread, spread)


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return min(max(value, low + 0.005), high - 0.005)


def generate_premises(seed: int, n: int = 3000) -> list[Premises]:
    """`n` premises of a Ninh Thuan-like province, ids `NT-000001`..., deterministic."""
    if n < 0:
        raise ValueError("n must not be negative")
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    district_counts = _allocate(n, DISTRICT_POPULATION)
    category_counts = _allocate(n, CATEGORY_SHARE, minimum=1 if n >= len(CATEGORY_SHARE) else 0)
    districts = [d for d, c in district_counts.items() for _ in range(c)]
    categories = [k for k, c in category_counts.items() for _ in range(c)]
    rng.shuffle(districts)
    rng.shuffle(categories)
    # The province's malls are in the city: swap categories so they land there.
    for i, category in enumerate(categories):
        if category == "mall" and districts[i] != CITY:
            for j, district in enumerate(districts):
                if district == CITY and categories[j] != "mall":
                    categories[i], categories[j] = categories[j], categories[i]
                    break

    landmarks = {key: list(names) for key, names in _LANDMARKS.items()}
    used: dict[tuple[str, str], int] = {}
    centres = {(d, w): _ward_centre(d, w) for d in DISTRICTS for w in WARDS[d]}
    out: list[Premises] = []
    for i, (district, category) in enumerate(zip(districts, categories, strict=True)):
        ward = rng.choice(WARDS[district])
        pool = landmarks.get((category, district))
        if pool:
            name, agency = pool.pop(0), _LANDMARK_AGENCY[category]
        else:
            template, agency = rng.choice(_TEMPLATES[category])
            name = template.format(
                given=rng.choice(_GIVEN),
                ward=ward,
                wcore=_ward_core(ward),
                dname=_district_label(district),
                patron=rng.choice(_SCHOOL_PATRONS),
                flower=rng.choice(_FLOWERS),
                pagoda=rng.choice(_PAGODAS),
            )
        if agency == "UBND":
            agency = district_agency(district)
        # The same name twice in one ward is a second branch ("cơ sở 2").
        seen = used.get((ward, name), 0) + 1
        used[(ward, name)] = seen
        if seen > 1:
            name = f"{name} - Cơ sở {seen}"
        if ward.startswith("Xã "):
            street = f"Thôn {rng.randint(1, 9)}"
        else:
            street = f"Số {rng.randint(1, 350)} đường {rng.choice(_STREETS)}"
        address = f"{street}, {ward}, {_district_label(district)}, tỉnh {PROVINCE}"
        c_lat, c_lon = centres[(district, ward)]
        lat = round(_clamp(rng.gauss(c_lat, 0.008), LAT_RANGE), 6)
        lon = round(_clamp(rng.gauss(c_lon, 0.008), LON_RANGE), 6)
        out.append(
            Premises(
                premises_id=f"NT-{i + 1:06d}",
                name=name,
                category=category,
                district=district,
                ward=ward,
                agency=agency,
                address=address,
                lat=lat,
                lon=lon,
            )
        )
    return out


# ---------------------------------------------------------------- CSV files


def write_premises_csv(premises: Iterable[Premises], path: str | Path) -> int:
    """The registry CSV (UTF-8, header `CSV_COLUMNS`); returns the number of rows."""
    count = 0
    with Path(path).open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for p in premises:
            writer.writerow(
                (
                    p.premises_id,
                    p.name,
                    p.category,
                    p.district,
                    p.ward,
                    p.agency,
                    p.address,
                    "" if p.lat is None else repr(p.lat),
                    "" if p.lon is None else repr(p.lon),
                )
            )
            count += 1
    return count


def read_premises_csv(path: str | Path) -> list[Premises]:
    """Read a registry CSV written by `write_premises_csv` (or the registry export)."""
    with Path(path).open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"expected columns {CSV_COLUMNS}, got {reader.fieldnames}")
        return [
            Premises(
                premises_id=row["premises_id"],
                name=row["name"],
                category=row["category"],
                district=row["district"],
                ward=row["ward"],
                agency=row["agency"],
                address=row["address"],
                lat=float(row["lat"]) if row["lat"] else None,
                lon=float(row["lon"]) if row["lon"] else None,
            )
            for row in reader
        ]


def write_population_csv(path: str | Path) -> None:
    """`district,population` for the per-capita columns of the compliance report."""
    with Path(path).open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("district", "population"))
        for district, population in DISTRICT_POPULATION.items():
            writer.writerow((district, population))


# ---------------------------------------------------------------- a day of scans

Scan = dict[str, object]
# Far beyond any realistic server clock, but before the contract's 2100 limit, so the
# rejection is `future_timestamp` and not `bad_timestamp`.
FUTURE_MS: Final = 4_070_908_800_000  # 2099-01-01T00:00:00Z
BAD_REASONS: Final = ("missing_field", "wrong_type", "unknown_kind", "future_timestamp")
REPEAT_MIN_MS: Final = 60_000
REPEAT_MAX_MS: Final = 240_000
_HOUR_MS: Final = 3_600_000


@dataclass(frozen=True, slots=True)
class ScanTruth:
    """Exact expected counts for a `ScanDay`, counted while generating.

    Accounting, as the pipeline's counters should find it:
    `total = stored + duplicates + bad + unknown_premises`, `valid = total - bad`,
    `unique = stored + unknown_premises` (distinct event ids among valid records).
    """

    total: int  # records emitted
    valid: int  # records that pass ingest.contract.parse_scan
    bad: int  # records parse_scan rejects (dead letters)
    bad_by_reason: Mapping[str, int]  # ScanRejected.reason -> records
    unique: int  # distinct event_ids among valid records
    duplicates: int  # exact resends: valid records whose event_id came before
    repeats: int  # unique events repeating a same person/premises/kind scan 1-4 min apart
    unknown_premises: int  # unique valid events at premises not in the registry (parked)
    unknown_premises_ids: frozenset[str]
    stored: int  # unique valid events at known premises (what the store should hold)
    late: int  # stored events uploaded after the day (ScanDay.late)
    checkins: int  # among stored
    checkouts: int  # among stored
    visits: int  # visits among stored, repeats merged (merge window >= 4 min)
    persons: int  # distinct person_ids among stored
    stored_by_district: Mapping[str, int]
    stored_by_category: Mapping[str, int]
    stored_by_premises: Mapping[str, int]  # only premises with at least one scan


@dataclass(frozen=True, slots=True)
class ScanDay:
    """One local day of scans in arrival order, with arrival times and ground truth.

    Iterating a `ScanDay` yields its wire maps. `arrivals[i]` is when `scans[i]`
    reaches a gateway (epoch ms); `scans[late_start:]` are the late uploads.
    """

    day: date
    day_start_ms: int
    day_end_ms: int
    scans: list[Scan]
    arrivals: list[int]
    late_start: int
    truth: ScanTruth

    def __iter__(self) -> Iterator[Scan]:
        return iter(self.scans)

    def __len__(self) -> int:
        return len(self.scans)

    @property
    def on_time(self) -> list[Scan]:
        return self.scans[: self.late_start]

    @property
    def late(self) -> list[Scan]:
        return self.scans[self.late_start :]


def day_bounds_ms(day: date) -> tuple[int, int]:
    """Epoch ms of the start and end (exclusive) of a local day in Asia/Ho_Chi_Minh."""
    start = datetime(day.year, day.month, day.day, tzinfo=TZ)
    end = start + timedelta(days=1)  # Vietnam has no DST: always 24 h
    return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000


def person_ids(seed: int, n: int) -> list[str]:
    """The pseudonymous ids of persons 0..n-1 of the population of `seed`.

    `P` and 12 hex characters, cut from one SHAKE-128 stream of the seed: person i's id
    depends only on the seed and i (a longer list extends a shorter one). The rare
    48-bit clash is resolved by appending `-<index>`, so ids are always distinct.
    """
    stream = hashlib.shake_128(f"scantrace-persons:{seed}".encode()).digest(6 * n).hex()
    ids = ["P" + stream[12 * i : 12 * i + 12] for i in range(n)]
    if len(set(ids)) != n:
        seen: set[str] = set()
        for i, pid in enumerate(ids):
            if pid in seen:
                ids[i] = pid = f"{pid}-{i}"
            seen.add(pid)
    return ids


def person_id(seed: int, index: int) -> str:
    """The id of one person (see `person_ids`)."""
    return person_ids(seed, index + 1)[index]


@dataclass(frozen=True, slots=True)
class _Picker:
    """Weighted choice by bisection: `members[bisect(cumulative, random() * total)]`."""

    members: list[int]
    cumulative: list[float]
    total: float

    @classmethod
    def build(cls, members: Iterable[int], weights: Iterable[float]) -> _Picker:
        """`weights` align with `members`, one each."""
        chosen = list(members)
        cumulative = list(accumulate(weights))
        if not chosen or len(cumulative) != len(chosen) or cumulative[-1] <= 0:
            raise ValueError("a picker needs positive weights, one per member")
        # One extra copy of the last member: random() * total can round up to total.
        return cls([*chosen, chosen[-1]], cumulative, cumulative[-1])


def generate_scans(
    seed: int,
    premises: Sequence[Premises],
    day: date,
    persons: int = 115_000,
    scans: int | None = None,
    *,
    duplicate_rate: float = 0.02,
    repeat_rate: float = 0.03,
    late_rate: float = 0.02,
    bad_rate: float = 0.001,
    unknown_premises_rate: float = 0.001,
) -> ScanDay:
    """A local day of scans at `premises` by `persons` people (see the module doc)."""
    if not premises:
        raise ValueError("need at least one premises")
    if persons < 1:
        raise ValueError("need at least one person")
    rates = {
        "duplicate_rate": duplicate_rate,
        "repeat_rate": repeat_rate,
        "late_rate": late_rate,
        "bad_rate": bad_rate,
        "unknown_premises_rate": unknown_premises_rate,
    }
    for name, rate in rates.items():
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within 0..1, got {rate}")
    day_start, day_end = day_bounds_ms(day)
    if day_start < MIN_SCANNED_AT_MS:
        raise ValueError(f"{day} is before the scan contract's earliest time (2020)")
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    random_ = rng.random
    getrandbits = rng.getrandbits

    def new_event_id() -> str:
        return f"{getrandbits(128):032x}"  # the uuid4().hex shape

    # Premises pickers, per district and province-wide, weighted by attraction:
    # `members[bisect(cumulative, random() * total)]`; members carry one extra copy of
    # their last entry so float rounding at the top never indexes past the end.
    n_prem = len(premises)
    ids = [p.premises_id for p in premises]
    known_ids = set(ids)
    checkout_p = [_CHECKOUT_P.get(x.category, _CHECKOUT_P_DEFAULT) for x in premises]
    weights = [_ATTRACTION.get(x.category, 3.0) * rng.paretovariate(2.0) for x in premises]
    everywhere = _Picker.build(range(n_prem), weights)
    district_members: dict[str, list[int]] = {}
    for i, x in enumerate(premises):
        district_members.setdefault(x.district, []).append(i)
    pickers = {d: _Picker.build(m, (weights[i] for i in m)) for d, m in district_members.items()}
    home_picker = [pickers.get(d, everywhere) for d in DISTRICTS]
    visit_counts = _Picker.build(_VISITS, _VISITS_WEIGHT)
    districts = _Picker.build(range(len(DISTRICTS)), DISTRICT_POPULATION.values())
    # Hour of a check-in: a 4096-slot table of hour starts, indexed by 12 random bits.
    slots = _allocate(4096, {str(h): w for h, w in enumerate(HOURLY_PROFILE)})
    hour_table = [day_start + int(h) * _HOUR_MS for h, c in slots.items() for _ in range(c)]

    # Sizes.
    if scans is not None:
        if scans < 1:
            raise ValueError("scans must be positive")
        n_dup, n_rep, n_late, n_bad, n_unknown = (
            round(scans * r)
            for r in (duplicate_rate, repeat_rate, late_rate, bad_rate, unknown_premises_rate)
        )
        target = scans - n_dup - n_rep - n_bad - n_unknown
        if target < 1:
            raise ValueError("rates leave no room for base scans")
    else:
        target = -1  # as many as the persons make in one pass

    # The people: stable pseudonymous ids and a home district by population.
    pids = person_ids(seed, persons)
    d_members, d_cum, d_total = districts.members, districts.cumulative, districts.total
    homes = [home_picker[d_members[bisect(d_cum, random_() * d_total)]] for _ in range(persons)]

    # Base scans, person by person, wrapping around when `scans` asks for more. A person
    # visits distinct premises (over the whole day), which keeps `repeats` exact.
    # One uniform draw often serves two decisions (home district or not, and which
    # premises; checkout or not, and how much later), and the low 15 bits of the event
    # id's random bits are the arrival delay (0-33 s): fewer calls, same distributions.
    out: list[Scan] = []
    arrivals: list[int] = []
    rec_prem: list[int] = []
    append, arrive, note = out.append, arrivals.append, rec_prem.append
    v_members, v_cum, v_total = visit_counts.members, visit_counts.cumulative, visit_counts.total
    e_members, e_cum, e_total = everywhere.members, everywhere.cumulative, everywhere.total
    home_p = HOME_DISTRICT_P
    e_scale = e_total / (1.0 - home_p)
    hour_ms = _HOUR_MS
    # Only a second round needs what everyone visited in the first.
    visited: list[list[int]] | None = [[] for _ in range(persons)] if target >= 0 else None
    person = 0
    round_start = 0
    n_checkins = 0
    while target < 0 or len(out) < target:
        if person == persons:
            if target < 0:
                break
            if len(out) == round_start:
                raise ValueError(f"{persons} persons cannot make {target} distinct visits")
            person, round_start = 0, len(out)
        pid = pids[person]
        home = homes[person]
        hm, hc, h_scale = home.members, home.cumulative, home.total / home_p
        mine: list[int] = [] if visited is None else visited[person]
        for _ in range(v_members[bisect(v_cum, random_() * v_total)]):
            tries = 0
            while True:
                u = random_()
                if u < home_p:
                    p = hm[bisect(hc, u * h_scale)]
                else:
                    p = e_members[bisect(e_cum, (u - home_p) * e_scale)]
                if p not in mine:
                    break
                tries += 1
                if tries == 4:
                    p = -1  # this person already knows every place they would go
                    break
            if p < 0:
                continue
            mine.append(p)
            pid_p = ids[p]
            t = hour_table[getrandbits(12)] + int(random_() * hour_ms)
            bits = getrandbits(128)
            append(
                {
                    "event_id": f"{bits:032x}",
                    "person_id": pid,
                    "premises_id": pid_p,
                    "scanned_at": t,
                    "kind": "checkin",
                }
            )
            arrive(t + (bits & 0x7FFF))
            note(p)
            n_checkins += 1
            u = random_()
            q = checkout_p[p]
            if u < q:
                t += 1_200_000 + int(u / q * 6_000_000)  # 20-120 min later
                if t < day_end:
                    bits = getrandbits(128)
                    append(
                        {
                            "event_id": f"{bits:032x}",
                            "person_id": pid,
                            "premises_id": pid_p,
                            "scanned_at": t,
                            "kind": "checkout",
                        }
                    )
                    arrive(t + (bits & 0x7FFF))
                    note(p)
        person += 1
    if 0 <= target < len(out):  # the last person is cut short
        n_checkins -= sum(1 for scan in out[target:] if scan["kind"] == "checkin")
        del out[target:], arrivals[target:], rec_prem[target:]
    n_base = len(out)
    base_persons = len({scan["person_id"] for scan in out})
    visits = n_checkins  # one check-in per visit
    if scans is None:
        n_dup, n_rep, n_late, n_bad, n_unknown = (
            round(n_base * r)
            for r in (duplicate_rate, repeat_rate, late_rate, bad_rate, unknown_premises_rate)
        )
    if n_dup + n_late + n_rep > n_base:
        raise ValueError("duplicate, late and repeat rates together exceed the base scans")
    sources = rng.sample(range(n_base), n_dup + n_late + n_rep)
    dup_src = sources[:n_dup]
    late_src = sources[n_dup : n_dup + n_late]
    rep_src = sources[n_dup + n_late :]
    for i in late_src:  # offline phones: uploaded 1-36 h after the day ends
        arrivals[i] = day_end + _HOUR_MS + int(random_() * 35 * _HOUR_MS)
    for i in dup_src:  # a resend after a lost acknowledgement
        out.append(dict(out[i]))
        arrivals.append(arrivals[i] + 1_000 + int(random_() * 299_000))
    prem_count = [0] * n_prem
    for p in rec_prem:
        prem_count[p] += 1
    checkins = visits
    for i in rep_src:  # the same scan again a minute or few later, new event id
        delta = REPEAT_MIN_MS + int(random_() * (REPEAT_MAX_MS - REPEAT_MIN_MS + 1))
        rep = dict(out[i])
        t = int(rep["scanned_at"])  # type: ignore[call-overload]
        t = t + delta if t + delta < day_end else t - delta
        rep["event_id"] = new_event_id()
        rep["scanned_at"] = t
        out.append(rep)
        arrivals.append(t + int(random_() * 30_000))
        prem_count[rec_prem[i]] += 1
        checkins += rep["kind"] == "checkin"

    # Unregistered premises: a handful of ids, each scanned by distinct people.
    top = max((int(x[3:]) for x in ids if x.startswith("NT-") and x[3:].isdigit()), default=0)
    unknown_ids: list[str] = []
    candidate = max(top + 1, 900_000)
    while len(unknown_ids) < max(1, (n_unknown + 2) // 3):
        uid = f"NT-{candidate:06d}"
        if uid not in known_ids:
            unknown_ids.append(uid)
        candidate += 1
    unknown_pairs: set[tuple[int, int]] = set()
    used_unknown: set[str] = set()
    for _ in range(n_unknown):
        while True:
            pair = (int(random_() * persons), int(random_() * len(unknown_ids)))
            if pair not in unknown_pairs:
                break
            if len(unknown_pairs) >= persons * len(unknown_ids):
                raise ValueError("too many unknown-premises scans for so few persons")
        unknown_pairs.add(pair)
        used_unknown.add(unknown_ids[pair[1]])
        t = hour_table[getrandbits(12)] + int(random_() * _HOUR_MS)
        out.append(
            {
                "event_id": new_event_id(),
                "person_id": pids[pair[0]],
                "premises_id": unknown_ids[pair[1]],
                "scanned_at": t,
                "kind": "checkin",
            }
        )
        arrivals.append(t + int(random_() * 30_000))

    # Bad records, each with exactly one defect.
    bad_by_reason = dict.fromkeys(BAD_REASONS, 0)
    for _ in range(n_bad):
        t = day_start + int(random_() * (day_end - day_start))
        rec: Scan = {
            "event_id": new_event_id(),
            "person_id": pids[int(random_() * persons)],
            "premises_id": ids[e_members[bisect(e_cum, random_() * e_total)]],
            "scanned_at": t,
            "kind": "checkin",
        }
        reason = BAD_REASONS[int(random_() * len(BAD_REASONS))]
        if reason == "missing_field":
            del rec[rng.choice(("event_id", "person_id", "premises_id", "scanned_at"))]
        elif reason == "wrong_type":
            broken = rng.choice(("person_id", "scanned_at", "kind"))
            rec[broken] = {"person_id": 84_912_345_678, "scanned_at": float(t), "kind": 1}[broken]
        elif reason == "unknown_kind":
            rec["kind"] = rng.choice(("enter", "exit", "CHECKIN", "check-in"))
        else:
            rec["scanned_at"] = FUTURE_MS + int(random_() * 86_400_000)
        bad_by_reason[reason] += 1
        out.append(rec)
        arrivals.append(t + int(random_() * 30_000))

    # Arrival order (stable): sort plain ints carrying the arrival and the position.
    shift = len(out).bit_length()
    mask = (1 << shift) - 1
    keys = sorted([(a << shift) | i for i, a in enumerate(arrivals)])
    sorted_scans = [out[k & mask] for k in keys]
    sorted_arrivals = [k >> shift for k in keys]

    stored = n_base + n_rep
    by_district: dict[str, int] = {}
    by_category: dict[str, int] = {}
    by_premises: dict[str, int] = {}
    for p, count in enumerate(prem_count):
        if count:
            prem = premises[p]
            by_district[prem.district] = by_district.get(prem.district, 0) + count
            by_category[prem.category] = by_category.get(prem.category, 0) + count
            by_premises[prem.premises_id] = count
    truth = ScanTruth(
        total=len(out),
        valid=len(out) - n_bad,
        bad=n_bad,
        bad_by_reason=bad_by_reason,
        unique=stored + n_unknown,
        duplicates=n_dup,
        repeats=n_rep,
        unknown_premises=n_unknown,
        unknown_premises_ids=frozenset(used_unknown),
        stored=stored,
        late=n_late,
        checkins=checkins,
        checkouts=stored - checkins,
        visits=visits,
        persons=base_persons,
        stored_by_district=by_district,
        stored_by_category=by_category,
        stored_by_premises=by_premises,
    )
    return ScanDay(
        day=day,
        day_start_ms=day_start,
        day_end_ms=day_end,
        scans=sorted_scans,
        arrivals=sorted_arrivals,
        late_start=len(out) - n_late,
        truth=truth,
    )


# ---------------------------------------------------------------- scan files

ScanFormat = Literal["jsonl", "msgpack"]


def _format_of(path: Path, fmt: ScanFormat | None) -> ScanFormat:
    if fmt is not None:
        return fmt
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".msgpack":
        return "msgpack"
    raise ValueError(f"cannot tell the format of {path.name}: use .jsonl or .msgpack, or fmt=")


def write_scans(path: str | Path, scans: Iterable[Scan], fmt: ScanFormat | None = None) -> int:
    """Write scans as JSON lines (`.jsonl`) or a msgpack stream (`.msgpack`); returns count."""
    target = Path(path)
    kind = _format_of(target, fmt)
    count = 0
    with target.open("wb") as f:
        if kind == "jsonl":
            dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
            for scan in scans:
                f.write(dumps(scan).encode() + b"\n")
                count += 1
        else:
            pack = msgpack.Packer(use_bin_type=True).pack
            for scan in scans:
                f.write(pack(scan))
                count += 1
    return count


def read_scans(path: str | Path, fmt: ScanFormat | None = None) -> Iterator[Scan]:
    """Stream the scans of a file written by `write_scans`, in file order."""
    source = Path(path)
    kind = _format_of(source, fmt)
    with source.open("rb") as f:
        if kind == "jsonl":
            for line in f:
                if line.strip():
                    yield json.loads(line)
        else:
            yield from msgpack.Unpacker(f, raw=False)
