"""The compliance report as data: periods in Asia/Ho_Chi_Minh days, rows per group, marks
for suppressed cells. Frozen and slotted; every renderer reads only these."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Final, Literal
from zoneinfo import ZoneInfo

from sinks.schema import REPORT_TZ

TZ: Final = ZoneInfo(REPORT_TZ)
Dimension = Literal["agency", "district", "ward", "category"]
DIMENSIONS: Final[tuple[Dimension, ...]] = ("agency", "district", "ward", "category")
# The tables of a report unless `--by` says otherwise (ward instead of district when the
# registry has no districts).
DEFAULT_DIMENSIONS: Final[tuple[Dimension, ...]] = ("agency", "district", "category")
PeriodKind = Literal["week", "day"]
# A group of fewer distinct persons than this is never shown with its counts.
THRESHOLD: Final = 5

_WEEK: Final = re.compile(r"^(\d{4})-?[Ww](\d{1,2})$")


class Mark(Enum):
    """A suppressed cell, as the report prints it."""

    FEW = "<5"  # distinct scanners of a group with 1-4 persons
    HIDDEN = "x"  # a count of such a group, or one that would let it be recomputed

    def __str__(self) -> str:
        return self.value


Count = int | Mark
# A derived number (share, ratio, relative change); None where it has no meaning (x / 0).
Ratio = float | Mark | None


@dataclass(frozen=True, slots=True)
class Period:
    """Local days `first`..`last` (inclusive): an ISO week (Monday-Sunday) or one day."""

    kind: PeriodKind
    first: date
    last: date

    @classmethod
    def week(cls, text: str) -> Period:
        """`2021-W46` (ISO 8601 week) to its Monday..Sunday; ValueError when it is not one."""
        m = _WEEK.match(text.strip())
        if not m:
            raise ValueError(f"not an ISO week like 2021-W46: {text!r}")
        try:
            monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
        except ValueError:
            raise ValueError(f"{m[1]} has no week {int(m[2])}") from None
        return cls("week", monday, monday + timedelta(days=6))

    @classmethod
    def day(cls, d: date) -> Period:
        return cls("day", d, d)

    @property
    def label(self) -> str:
        if self.kind == "day":
            return self.first.isoformat()
        year, week, _ = self.first.isocalendar()
        return f"{year}-W{week:02d}"

    @property
    def days(self) -> tuple[date, ...]:
        n = (self.last - self.first).days + 1
        return tuple(self.first + timedelta(days=i) for i in range(n))

    @property
    def start_ms(self) -> int:
        """Epoch ms of local midnight starting `first` (Monday 00:00 +07:00 for a week)."""
        return _midnight_ms(self.first)

    @property
    def end_ms(self) -> int:
        """Epoch ms of local midnight after `last` (exclusive)."""
        return _midnight_ms(self.last + timedelta(days=1))

    def previous(self) -> Period:
        length = timedelta(days=len(self.days))
        return Period(self.kind, self.first - length, self.last - length)


def _midnight_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=TZ).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Activity:
    """What the rollup says about one group in one period: premises with a scan, distinct
    scans (event ids) and distinct scanners (persons)."""

    active: int = 0
    scans: int = 0
    scanners: int = 0


@dataclass(frozen=True, slots=True)
class GroupRow:
    """One line of a table: a district, an agency, a category, or the province (key "")."""

    key: str
    registered: int
    active: int
    share_active: float | None  # active / registered
    scans: Count
    scanners: Count
    scans_per_active: Ratio
    change_share_pp: float | None  # share_active minus the previous period's, in points
    change_scans: Ratio  # relative: 0.25 = +25 %
    change_scanners: Ratio
    population: int | None = None  # districts, with a population file
    uptake: Ratio = None  # distinct scanners / population


@dataclass(frozen=True, slots=True)
class GroupTable:
    dimension: Dimension
    rows: tuple[GroupRow, ...]


@dataclass(frozen=True, slots=True)
class DayPoint:
    """The province on one local day (the daily chart and table)."""

    day: date
    current: bool  # in the reported period (else in the previous one)
    active: int
    scans: Count
    scanners: Count
    reported: bool = True  # False: after the data's cut-off, not yet reported (not zero)


@dataclass(frozen=True, slots=True)
class InactivePremises:
    """A registered premises with no scan in the period (the "not done seriously" list)."""

    premises_id: str
    name: str
    category: str
    district: str
    ward: str
    agency: str


@dataclass(frozen=True, slots=True)
class UnregisteredQr:
    """A premises id read from a QR code that is not in the registry (its scans parked,
    then dead-lettered as `unknown_premises`)."""

    premises_id: str
    scans: Count  # dead-lettered scans; "<5" under the threshold
    gateways: int  # distinct gateways that sent them
    first_seen: date  # local days only: a time would date one person's scan
    last_seen: date


@dataclass(frozen=True, slots=True)
class Rejected:
    """Scans refused in the period with one reason, from one gateway ("" = all)."""

    reason: str
    gateway_id: str
    scans: int


@dataclass(frozen=True, slots=True)
class TrendPoint:
    week: date  # Monday
    active: int | None  # None: no data for the week
    scans: Count | None
    scanners: Count | None


@dataclass(frozen=True, slots=True)
class TrendSeries:
    dimension: str  # district, ward, agency or total
    key: str
    points: tuple[TrendPoint, ...]


@dataclass(frozen=True, slots=True)
class CrossCell:
    registered: int
    active: int
    scanners: Count


@dataclass(frozen=True, slots=True)
class CrossTable:
    """Agencies (rows) by districts (columns): premises and distinct scanners. No scans:
    a count that adds up along rows and columns would need suppression both ways."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[CrossCell, ...]], ...]


@dataclass(frozen=True, slots=True)
class StaffRow:
    """An agency's staff at its own `office` premises on the period's working days."""

    agency: str
    headcount: int
    working_days: int
    daily: tuple[tuple[date, Count], ...]  # distinct persons per working day
    mean_daily_scanners: Ratio  # None: no working day reported yet
    share: Ratio  # mean / headcount


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the report reads, fetched once (`queries.collect`): the input of
    `build.build_report`. Group keys as in `sinks.schema.GROUPINGS`."""

    registered: Mapping[tuple[str, str], int]
    weeks: Mapping[date, Mapping[tuple[str, str], Activity]]  # Monday -> its week
    days: Mapping[date, Mapping[tuple[str, str], Activity]]
    inactive: tuple[InactivePremises, ...]
    cutoff_ms: int  # the rollup's latest computation: data up to this time
    unregistered: tuple[tuple[str, int, int, date, date], ...] = ()
    rejected: tuple[Rejected, ...] = ()


@dataclass(frozen=True, slots=True)
class Report:
    period: Period
    previous: Period
    generated_at_ms: int
    total: GroupRow
    tables: tuple[GroupTable, ...]  # in the order asked for (`--by`)
    days: tuple[DayPoint, ...]  # previous period's days, then the period's
    inactive: tuple[InactivePremises, ...]  # by agency, district, name (Vietnamese order)
    has_population: bool
    threshold: int = THRESHOLD
    province: str = ""
    authority: str = ""
    cutoff_ms: int = 0  # data up to this time (the period's end when it is complete)
    complete: bool = True
    previous_empty: bool = False  # the previous period has no data: no change shown
    trend: tuple[TrendSeries, ...] = ()
    trend_weeks: tuple[date, ...] = ()
    cross: CrossTable | None = None
    staff: tuple[StaffRow, ...] | None = None  # None: no headcount file
    unregistered: tuple[UnregisteredQr, ...] = ()
    rejected: tuple[Rejected, ...] = ()
    edition: tuple[str, str] | None = None  # (dimension, key) of a unit's edition

    def table(self, dimension: Dimension) -> GroupTable:
        return next(t for t in self.tables if t.dimension == dimension)

    def has(self, dimension: Dimension) -> bool:
        return any(t.dimension == dimension for t in self.tables)

    @property
    def suppressed(self) -> bool:
        """True when some cell of the report is hidden."""
        rows = [self.total, *(r for t in self.tables for r in t.rows)]
        cells = [(r.scans, r.scanners) for r in rows] + [(d.scans, d.scanners) for d in self.days]
        return any(isinstance(c, Mark) for pair in cells for c in pair)
