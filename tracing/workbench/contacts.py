"""A trace's contacts as a tracer reads them: a risk level each, grouped by premises and
by the case's visit there, F2 contacts under the F1 person they came through, counts per
group and in total. Pure: the views render it, the exports write it.

Risk: `close` under the overlap rule when the contact overlapped the case (its F1, for an
F2) for at least `CLOSE_MIN` minutes, or when the contact's whole visit lies within the
other's visit (they were there together the whole time the contact was, however short);
`casual` otherwise, and always under scan-window: scans within a window say that two
people were at a place around the same time, not that they were together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from tracing.models import Contact, TraceResult, Visit
from tracing.rules import MINUTE_MS

Risk = Literal["close", "casual"]
CLOSE_MIN: Final = 15


def risk(c: Contact, rule_name: str) -> Risk:
    if rule_name != "overlap":
        return "casual"
    if c.overlap_ms is not None and c.overlap_ms >= CLOSE_MIN * MINUTE_MS:
        return "close"
    inside = c.case_time_from <= c.contact_time_from and c.contact_time_to <= c.case_time_to
    return "close" if inside else "casual"


@dataclass(slots=True)
class Row:
    """One contact of the answer, at its place in the answer (`index`)."""

    index: int
    contact: Contact
    risk: Risk
    status: str = ""  # the follow-up status, when the case has a record
    status_by: str = ""
    status_at: int | None = None
    confirmed_case: bool = False  # a confirmed case of its own (a case record)
    f2: int = 0  # F2 contacts who came through this F1 person


@dataclass(slots=True)
class Counts:
    total: int = 0
    close: int = 0

    @property
    def casual(self) -> int:
        return self.total - self.close

    def add(self, r: Row) -> None:
        self.total += 1
        self.close += r.risk == "close"


@dataclass(slots=True)
class VisitGroup:
    visit: Visit | None  # None: no visit of the case matched (should not happen)
    rows: list[Row] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)


@dataclass(slots=True)
class PremisesGroup:
    premises_id: str
    name: str
    district: str
    category: str
    visits: list[VisitGroup] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)


@dataclass(slots=True)
class ViaGroup:
    """The F2 contacts who came through one F1 person."""

    via: str
    anchor: str
    rows: list[Row] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)


@dataclass(slots=True)
class Grouped:
    premises: list[PremisesGroup]
    via: list[ViaGroup]
    f1: Counts
    f2: Counts
    persons: int  # distinct persons among all contacts

    @property
    def total(self) -> Counts:
        out = Counts(self.f1.total + self.f2.total, self.f1.close + self.f2.close)
        return out


@dataclass(frozen=True, slots=True)
class Status:
    status: str
    by: str
    at: int


def _visit_of(c: Contact, visits: Sequence[Visit]) -> Visit | None:
    for v in visits:
        if v.premises_id == c.premises_id and (
            v.time_from <= c.case_time_to and c.case_time_from <= v.time_to
        ):
            return v
    return None


def group(
    result: TraceResult,
    statuses: Mapping[str, Status] | None = None,
    cases: frozenset[str] = frozenset(),
) -> Grouped:
    """Every contact of `result` in its groups, in the answer's order within a group."""
    statuses = statuses or {}
    by_premises: dict[str, PremisesGroup] = {}
    by_visit: dict[tuple[str, Visit | None], VisitGroup] = {}
    by_via: dict[str, ViaGroup] = {}
    f1_rows: dict[str, list[Row]] = {}
    f1, f2 = Counts(), Counts()
    for i, c in enumerate(result.contacts):
        row = Row(i, c, risk(c, result.rule.name), confirmed_case=c.person_id in cases)
        s = statuses.get(c.person_id)
        if s is not None:
            row.status, row.status_by, row.status_at = s.status, s.by, s.at
        if c.degree == 1:
            f1.add(row)
            f1_rows.setdefault(c.person_id, []).append(row)
            p = by_premises.get(c.premises_id)
            if p is None:
                p = by_premises[c.premises_id] = PremisesGroup(
                    c.premises_id, c.premises_name, c.district, c.category
                )
            p.counts.add(row)
            visit = _visit_of(c, result.visits)
            vg = by_visit.get((c.premises_id, visit))
            if vg is None:
                vg = by_visit[(c.premises_id, visit)] = VisitGroup(visit)
                p.visits.append(vg)
            vg.rows.append(row)
            vg.counts.add(row)
        else:
            f2.add(row)
            via = c.via_person_id or ""
            g = by_via.get(via)
            if g is None:
                g = by_via[via] = ViaGroup(via, f"f2-{len(by_via) + 1}")
            g.rows.append(row)
            g.counts.add(row)
    for via, g in by_via.items():
        for r in f1_rows.get(via, []):
            r.f2 = g.counts.total
    premises = sorted(by_premises.values(), key=_first_time)
    for p in premises:
        p.visits.sort(key=lambda vg: vg.visit.time_from if vg.visit else 0)
    persons = len({c.person_id for c in result.contacts})
    return Grouped(premises, list(by_via.values()), f1, f2, persons)


def _first_time(p: PremisesGroup) -> int:
    return min((vg.visit.time_from for vg in p.visits if vg.visit), default=0)


def anchors(g: Grouped) -> dict[str, str]:
    """F1 person -> the anchor of their F2 group on the page."""
    return {v.via: v.anchor for v in g.via}
