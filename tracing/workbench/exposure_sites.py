"""Public exposure sites with four-eyes approval (`sinks.schema` EXPOSURE_SITES).

A tracer (or a supervisor) proposes premises and windows, usually a case's visits; a
supervisor other than the proposer approves or rejects the proposal as a whole; a
supervisor withdraws an approved one (or the proposer a pending one). Only approved,
not withdrawn sites are public. A site row holds no person id: the case a proposal came
from is kept in `exposure_site_cases`, which only the tracers' pages read.
"""

# Table names are constants; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from tracing.runner import QueryRunner
from tracing.settings import TRACING_ROLES
from tracing.workbench.localtime import iso_local

State = Literal["proposed", "approved", "rejected", "withdrawn"]
Decision = Literal["approve", "reject", "withdraw"]
DECISIONS: Final[dict[str, State]] = {
    "approve": "approved",
    "reject": "rejected",
    "withdraw": "withdrawn",
}
MAX_SITES: Final = 50
MAX_WINDOW_MS: Final = 7 * 86_400_000
MAX_PROPOSALS: Final = 500


class SiteError(Exception):
    """A proposal or decision refused: HTTP status and the reason."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Window:
    premises_id: str
    time_from: int
    time_to: int


@dataclass(frozen=True, slots=True)
class Site:
    site_no: int
    premises_id: str
    window_from: int
    window_to: int
    name: str = ""
    address: str = ""
    district: str = ""
    category: str = ""


@dataclass(slots=True)
class Proposal:
    proposal_id: str
    state: State
    proposed_by: str
    proposed_at: int
    decided_by: str
    decided_at: int | None
    approved_at: int | None
    sites: list[Site] = field(default_factory=list)
    case: str = ""  # the case's person id, when the proposal came from a case


def check_windows(windows: Sequence[Window], now: int) -> None:
    if not windows:
        raise SiteError(422, "no visit to propose (none in the period)")
    if len(windows) > MAX_SITES:
        raise SiteError(422, f"at most {MAX_SITES} sites a proposal")
    for w in windows:
        if not w.premises_id or len(w.premises_id) > 64 or not w.premises_id.isprintable():
            raise SiteError(422, "premises_id must be a printable string of 1-64 characters")
        if w.time_from > w.time_to:
            raise SiteError(422, "a window's start is after its end")
        if w.time_to - w.time_from > MAX_WINDOW_MS:
            raise SiteError(422, "a window is longer than 7 days")
        if w.time_from > now:
            raise SiteError(422, "a window starts in the future")


def check_decision(p: Proposal, decision: Decision, actor: str, role: str) -> None:
    """Raise `SiteError` unless `actor` (with `role`) may make `decision` on `p`."""
    if role not in TRACING_ROLES:
        raise SiteError(403, f"role {role!r} may not decide on exposure sites")
    if decision == "withdraw":
        if p.state == "proposed" and actor == p.proposed_by:
            return
        if role != "supervisor":
            raise SiteError(
                403, "only a supervisor withdraws a site (or the proposer a pending one)"
            )
        if p.state not in ("proposed", "approved"):
            raise SiteError(409, f"the proposal is {p.state}")
        return
    if role != "supervisor":
        raise SiteError(403, f"only a supervisor may {decision} exposure sites")
    if p.state != "proposed":
        raise SiteError(409, f"the proposal is {p.state}, not proposed")
    if decision == "approve" and actor == p.proposed_by:
        raise SiteError(403, "the proposer may not approve their own proposal (four eyes)")


def known_premises(runner: QueryRunner, ids: Sequence[str]) -> set[str]:
    rows = runner.query(
        "SELECT DISTINCT premises_id FROM premises WHERE premises_id IN %(ids)s",
        {"ids": tuple(sorted(set(ids)))},
    )
    return {str(r[0]) for r in rows}


_ROW: Final = (
    "SELECT %(pid)s, toUInt16(%(no)s), %(premises)s,"
    " fromUnixTimestamp64Milli(toInt64(%(t0)s), 'UTC'),"
    " fromUnixTimestamp64Milli(toInt64(%(t1)s), 'UTC'), %(state)s, %(by)s,"
    " fromUnixTimestamp64Milli(toInt64(%(proposed_at)s), 'UTC'), %(decided_by)s,"
    " if(%(decided_at)s = 0, NULL, fromUnixTimestamp64Milli(toInt64(%(decided_at)s), 'UTC')),"
    " if(%(approved_at)s = 0, NULL, fromUnixTimestamp64Milli(toInt64(%(approved_at)s), 'UTC')),"
    " fromUnixTimestamp64Milli(toInt64(%(at)s), 'UTC')"
)
_COLUMNS: Final = (
    "proposal_id, site_no, premises_id, window_from, window_to, state, proposed_by,"
    " proposed_at, decided_by, decided_at, approved_at, changed_at"
)


def _write(runner: QueryRunner, p: Proposal, at: int) -> None:
    for s in p.sites:  # a proposal has a few sites: one small insert each
        runner.query(
            f"INSERT INTO exposure_sites ({_COLUMNS}) {_ROW}",
            {
                "pid": p.proposal_id,
                "no": s.site_no,
                "premises": s.premises_id,
                "t0": s.window_from,
                "t1": s.window_to,
                "state": p.state,
                "by": p.proposed_by,
                "proposed_at": p.proposed_at,
                "decided_by": p.decided_by,
                "decided_at": p.decided_at or 0,
                "approved_at": p.approved_at or 0,
                "at": at,
            },
        )


def propose(
    runner: QueryRunner, windows: Sequence[Window], actor: str, at: int, case: str = ""
) -> str:
    check_windows(windows, at)
    missing = {w.premises_id for w in windows} - known_premises(
        runner, [w.premises_id for w in windows]
    )
    if missing:
        raise SiteError(422, f"not in the premises registry: {', '.join(sorted(missing)[:5])}")
    sites = [Site(i, w.premises_id, w.time_from, w.time_to) for i, w in enumerate(windows)]
    p = Proposal(uuid.uuid4().hex[:16], "proposed", actor, at, "", None, None, sites)
    if case:  # the link first: a site whose case link was lost could not be traced back
        runner.query(
            "INSERT INTO exposure_site_cases (proposal_id, person_id, proposed_at)"
            " SELECT %(pid)s, %(person)s, fromUnixTimestamp64Milli(toInt64(%(at)s), 'UTC')",
            {"pid": p.proposal_id, "person": case, "at": at},
        )
    _write(runner, p, at)
    return p.proposal_id


def decide(
    runner: QueryRunner, p: Proposal, decision: Decision, actor: str, role: str, at: int
) -> Proposal:
    check_decision(p, decision, actor, role)
    p.state = DECISIONS[decision]
    p.decided_by, p.decided_at = actor, at
    if decision == "approve":
        p.approved_at = at
    _write(runner, p, at)
    return p


_SELECT: Final = (
    "SELECT s.proposal_id, s.site_no, s.premises_id, toUnixTimestamp64Milli(s.window_from),"
    " toUnixTimestamp64Milli(s.window_to), toString(s.state), s.proposed_by,"
    " toUnixTimestamp64Milli(s.proposed_at), s.decided_by,"
    " toUnixTimestamp64Milli(s.decided_at), toUnixTimestamp64Milli(s.approved_at),"
    " p.name, p.address, p.district, p.category"
    " FROM (SELECT * FROM exposure_sites FINAL) AS s"
    " LEFT JOIN (SELECT premises_id, name, address, district, category FROM premises FINAL)"
    " AS p ON s.premises_id = p.premises_id"
)


def _proposals(rows: Sequence[tuple[Any, ...]]) -> list[Proposal]:
    out: dict[str, Proposal] = {}
    for r in rows:
        pid = str(r[0])
        p = out.get(pid)
        if p is None:
            p = out[pid] = Proposal(
                pid,
                r[5],
                str(r[6]),
                int(r[7]),
                str(r[8]),
                None if r[9] is None else int(r[9]),
                None if r[10] is None else int(r[10]),
            )
        p.sites.append(
            Site(int(r[1]), str(r[2]), int(r[3]), int(r[4]), *(str(x or "") for x in r[11:15]))
        )
    return list(out.values())


def get_proposal(runner: QueryRunner, proposal_id: str) -> Proposal | None:
    rows = runner.query(
        f"{_SELECT} WHERE s.proposal_id = %(pid)s ORDER BY s.site_no", {"pid": proposal_id}
    )
    found = _proposals(rows)
    return found[0] if found else None


def proposals(runner: QueryRunner, with_cases: bool) -> list[Proposal]:
    """The latest proposals, newest first; with the case each came from (tracers only)."""
    rows = runner.query(
        f"{_SELECT} WHERE s.proposal_id IN (SELECT proposal_id FROM exposure_sites"
        f" ORDER BY proposed_at DESC LIMIT {MAX_PROPOSALS})"
        " ORDER BY s.proposed_at DESC, s.proposal_id, s.site_no",
        {},
    )
    found = _proposals(rows)
    if with_cases and found:
        links = runner.query(
            "SELECT proposal_id, any(person_id) FROM exposure_site_cases"
            " WHERE proposal_id IN %(ids)s GROUP BY proposal_id",
            {"ids": tuple(p.proposal_id for p in found)},
        )
        case_of = {str(a): str(b) for a, b in links}
        for p in found:
            p.case = case_of.get(p.proposal_id, "")
    return found


def public_sites(runner: QueryRunner, since_ms: int) -> list[dict[str, object]]:
    """Approved sites whose window ended at or after `since_ms`, latest window first, as
    the public sees them: premises and window only, never who or which case."""
    rows = runner.query(
        f"{_SELECT} WHERE s.state = 'approved'"
        " AND s.window_to >= fromUnixTimestamp64Milli(toInt64(%(since)s), 'UTC')"
        " ORDER BY s.window_from DESC, s.premises_id",
        {"since": since_ms},
    )
    out: list[dict[str, object]] = []
    for p in _proposals(rows):
        for s in p.sites:
            out.append(
                {
                    "premises_id": s.premises_id,
                    "name": s.name,
                    "address": s.address,
                    "district": s.district,
                    "category": s.category,
                    "window_start": iso_local(s.window_from),
                    "window_end": iso_local(s.window_to),
                    "approved_at": iso_local(p.approved_at or 0),
                }
            )
    out.sort(key=lambda d: (str(d["window_start"]), str(d["premises_id"])), reverse=True)
    return out
