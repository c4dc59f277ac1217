"""The data tables of the synthetic province (Ninh Thuan, Vietnam): districts and their
populations, wards and communes, agencies, the category mix, names and landmarks, and the
daily rhythm of scans. Tables only; `premises` and `scans` draw from them."""

from __future__ import annotations

from typing import Final
from zoneinfo import ZoneInfo

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
DISTRICT_CENTRE: Final[dict[str, tuple[float, float]]] = {
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
ATTRACTION: Final[dict[str, float]] = {
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
CHECKOUT_P: Final[dict[str, float]] = {
    "office": 0.45,
    "school": 0.45,
    "factory": 0.5,
    "hospital": 0.4,
    "accommodation": 0.35,
}
CHECKOUT_P_DEFAULT: Final = 0.25

# Relative check-in volume per local hour: night lull, peaks at 7-9h and 17-19h.
HOURLY_PROFILE: Final[tuple[float, ...]] = (
    0.2, 0.1, 0.1, 0.1, 0.3, 1.5,  # 0-5h
    4.0, 10.0, 10.0, 5.5, 4.5, 5.0,  # 6-11h
    5.5, 3.5, 3.5, 4.0, 5.0, 9.5,  # 12-17h
    10.0, 6.0, 4.0, 2.5, 1.0, 0.4,  # 18-23h
)  # fmt: skip
# Visits per person and their relative frequency (about 2 visits, 2.7 scans).
VISITS: Final[tuple[int, ...]] = (1, 2, 3, 4, 5)
VISITS_WEIGHT: Final[tuple[float, ...]] = (0.34, 0.34, 0.20, 0.09, 0.03)
HOME_DISTRICT_P: Final = 0.85

GIVEN_NAMES: Final = (
    "Minh Anh", "Thanh Hà", "Hoàng Long", "Phúc Lộc", "Thành Đạt", "Ngọc Lan", "Tuấn Kiệt",
    "Bảo Châu", "Hải Yến", "Quang Vinh", "Kim Ngân", "Phương Thảo", "Đức Thịnh", "Thu Trang",
    "Hồng Nhung", "Văn Tài", "Mỹ Duyên", "Gia Huy", "Thảo Nguyên", "An Khang", "Tấn Phát",
    "Hưng Thịnh", "Cẩm Tú", "Xuân Mai", "Bích Ngọc", "Ánh Dương", "Trường Giang", "Hiếu Nghĩa",
    "Bình An", "Lộc Phát", "Thủy Tiên", "Quốc Bảo", "Diệu Linh", "Nhật Quang", "Kiều Oanh",
)  # fmt: skip
SCHOOL_PATRONS: Final = (
    "Lê Lợi", "Trần Hưng Đạo", "Nguyễn Trãi", "Lê Quý Đôn", "Chu Văn An", "Nguyễn Du",
    "Lý Tự Trọng", "Võ Thị Sáu", "Kim Đồng", "Trần Quốc Toản", "Nguyễn Thị Minh Khai",
    "Phan Chu Trinh", "Tôn Đức Thắng", "Lê Hồng Phong", "Hùng Vương", "Quang Trung",
    "Ngô Quyền", "Đinh Tiên Hoàng", "Phan Bội Châu", "Trần Phú", "Nguyễn Văn Trỗi",
)  # fmt: skip
FLOWERS: Final = ("Hoa Sen", "Họa Mi", "Sơn Ca", "Hoa Hồng", "Tuổi Thơ", "Vành Khuyên")
PAGODAS: Final = ("Phước Thiện", "Linh Sơn", "Thiện Minh", "Long Quang", "Bửu Tháp", "Quảng Hội")
STREETS: Final = (
    "Thống Nhất", "21 Tháng 8", "16 Tháng 4", "Ngô Gia Tự", "Lê Hồng Phong", "Trần Phú",
    "Yên Ninh", "Hải Thượng Lãn Ông", "Quang Trung", "Nguyễn Văn Cừ", "Lê Duẩn",
    "Trường Chinh", "Minh Mạng", "Phạm Văn Đồng", "Quốc lộ 1A", "Quốc lộ 27",
)  # fmt: skip
# Named places, used first for their category in their district.
LANDMARKS: Final[dict[tuple[str, str], tuple[str, ...]]] = {
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
NAME_TEMPLATES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
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
LANDMARK_AGENCY: Final[dict[str, str]] = {
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
