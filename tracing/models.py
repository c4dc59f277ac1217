"""Result models of the exposure queries: immutable (frozen dataclasses, and a named tuple
for the many contact rows), times as epoch ms UTC."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from tracing.rules import MINUTE_MS, Rule

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The fields of the answers' times (epoch ms here, ISO-8601 or local time in the answers).
TIME_FIELDS = frozenset(
    {
        "case_time_from",
        "case_time_to",
        "contact_time_from",
        "contact_time_to",
        "time_from",
        "time_to",
    }
)


def iso_utc(ms: int) -> str:
    """Epoch ms as ISO-8601 UTC with milliseconds and a `Z`."""
    at = EPOCH + timedelta(milliseconds=ms)
    return f"{at:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


class Contact(NamedTuple):
    """One contact at one premises. Degree 2 rows name the F1 person they came through
    (`via_person_id`); degree 1 rows have None there. A named tuple, not a frozen
    dataclass: an answer has thousands of rows, and a frozen dataclass's `__init__` cost
    10-14 ms for 2,700 of them (about 7 % of a depth-1 trace at 100 M rows)."""

    person_id: str
    degree: int
    via_person_id: str | None
    premises_id: str
    premises_name: str
    district: str
    category: str
    case_time_from: int
    case_time_to: int
    contact_time_from: int
    contact_time_to: int
    # Longest overlap of one pair of visits (overlap rule); None under scan-window.
    overlap_ms: int | None = None

    @property
    def overlap_minutes(self) -> float | None:
        return None if self.overlap_ms is None else round(self.overlap_ms / MINUTE_MS, 3)


@dataclass(frozen=True, slots=True)
class Visit:
    """Time at one premises: a visit of the case (its timeline), or a visitor's first to
    last scan there (`Visitor`), with the number of scans."""

    premises_id: str
    premises_name: str
    district: str
    category: str
    time_from: int
    time_to: int
    scans: int


@dataclass(frozen=True, slots=True)
class Visitor(Visit):
    """One person at the premises asked about (trace-premises): first and last scan there
    in the period, and how many."""

    person_id: str


# The fields of each answer row, in the answers' order; a contact's overlap in minutes.
CONTACT_FIELDS = (*Contact._fields[:-1], "overlap_minutes")
VISIT_FIELDS = tuple(f.name for f in fields(Visit))
VISITOR_FIELDS = ("person_id", *VISIT_FIELDS)


@dataclass(frozen=True, slots=True)
class TraceResult:
    case: str
    period_from: int
    period_to: int
    rule: Rule
    visits: list[Visit] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.contacts)


@dataclass(frozen=True, slots=True)
class PremisesResult:
    premises_id: str
    period_from: int
    period_to: int
    visitors: list[Visitor] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.visitors)
