"""A small hand-made report input: three districts, two agencies, every category of
case the suppression rule knows (a tiny group, a zero group, a secondary hide)."""

from __future__ import annotations

from datetime import date, timedelta

from tracing.report.build import TOTAL, GroupKey, build_report
from tracing.report.model import Activity, InactivePremises, Period, Report, ReportData

WEEK = Period.week("2021-W46")
AGENCY_A = "Sở Y tế"
AGENCY_B = "=cmd|' /C calc'!A0"  # a hostile name from the registry
TINY = "Ban Quản lý"

REGISTERED: dict[GroupKey, int] = {
    TOTAL: 10,
    ("agency", AGENCY_A): 6,
    ("agency", AGENCY_B): 3,
    ("agency", TINY): 1,
    ("district", "Ninh Hải"): 4,
    ("district", "Bác Ái"): 3,
    ("district", "Thuận Nam"): 3,
    ("category", "market"): 5,
    ("category", "shop"): 5,
}
NOW: dict[GroupKey, Activity] = {
    TOTAL: Activity(7, 400, 60),
    ("agency", AGENCY_A): Activity(5, 300, 40),
    ("agency", AGENCY_B): Activity(1, 90, 20),
    ("agency", TINY): Activity(1, 10, 3),
    ("district", "Ninh Hải"): Activity(4, 250, 30),
    ("district", "Bác Ái"): Activity(3, 150, 35),
    ("category", "market"): Activity(4, 300, 50),
    ("category", "shop"): Activity(3, 100, 20),
}
BEFORE: dict[GroupKey, Activity] = {
    TOTAL: Activity(6, 320, 50),
    ("agency", AGENCY_A): Activity(4, 200, 30),
    ("agency", AGENCY_B): Activity(1, 100, 25),
    ("agency", TINY): Activity(1, 20, 8),
    ("district", "Ninh Hải"): Activity(3, 200, 25),
    ("district", "Bác Ái"): Activity(3, 120, 30),
    ("category", "market"): Activity(3, 220, 40),
    ("category", "shop"): Activity(3, 100, 20),
}
DAILY = {WEEK.previous().first + timedelta(days=i): Activity(3, 40 + i, 9) for i in range(14)}
DAILY[date(2021, 11, 17)] = Activity(1, 6, 2)  # a quiet Wednesday: 2 persons
POPULATION = {"Ninh Hải": 95_000, "Bác Ái": 30_000, "Thuận Nam": 60_000}
INACTIVE = (
    InactivePremises("NT-3", "Chợ Cà Ná", "market", "Thuận Nam", "Xã Cà Ná", AGENCY_A),
    InactivePremises("NT-2", "@SUM(A1)", "shop", "Thuận Nam", "Xã Phước Nam", AGENCY_B),
    InactivePremises("NT-1", "Điện Máy Xanh", "shop", "Thuận Nam", "Xã Nhị Hà", AGENCY_B),
)


GENERATED_MS = 1_637_600_000_000  # Monday 22 November 2021, 23:53 local


def sample_data(cutoff_ms: int = GENERATED_MS) -> ReportData:
    return ReportData(
        registered=REGISTERED,
        weeks={WEEK.first: NOW, WEEK.previous().first: BEFORE},
        days={d: {TOTAL: a} for d, a in DAILY.items()},
        inactive=INACTIVE,
        cutoff_ms=cutoff_ms,
    )


def sample_report(population: bool = True, **kwargs: object) -> Report:
    return build_report(
        WEEK,
        sample_data(),
        population=POPULATION if population else None,
        generated_at_ms=GENERATED_MS,
        **kwargs,  # type: ignore[arg-type]
    )
