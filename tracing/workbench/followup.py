"""Case records and the follow-up status of each of their contacts, in ClickHouse
(`sinks.schema` CASES, FOLLOWUPS): every change is a new version of a row, the latest
version is the current state (read with FINAL: the tables are small). Who changed what
and when is in the rows; the audit log has every change as well.
"""

# Table names are constants; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from sinks.schema import FOLLOWUP_STATUSES
from tracing.runner import QueryRunner
from tracing.workbench.contacts import Status

STATUSES: Final = FOLLOWUP_STATUSES
MAX_NOTES: Final = 2000
MAX_CASES: Final = 2000


class FollowupError(ValueError):
    """A change that cannot be made (unknown case, status or person): the reason."""


@dataclass(frozen=True, slots=True)
class CaseRecord:
    case_id: str
    person_id: str
    confirmed_on: date
    notes: str
    created_by: str
    created_at: int
    changed_by: str
    changed_at: int


_AT: Final = "fromUnixTimestamp64Milli(toInt64(%(at)s), 'UTC')"
_CASE_COLUMNS: Final = (
    "case_id, person_id, confirmed_on, notes, created_by, toUnixTimestamp64Milli(created_at),"
    " changed_by, toUnixTimestamp64Milli(changed_at)"
)


def create_case(
    runner: QueryRunner, person_id: str, confirmed_on: date, notes: str, actor: str, at: int
) -> str:
    case_id = uuid.uuid4().hex[:16]
    runner.query(
        "INSERT INTO cases (case_id, person_id, confirmed_on, notes, created_by, created_at,"
        " changed_by, changed_at)"
        f" SELECT %(case_id)s, %(person_id)s, toDate(%(day)s), %(notes)s, %(actor)s, {_AT},"
        f" %(actor)s, {_AT}",
        {
            "case_id": case_id,
            "person_id": person_id,
            "day": confirmed_on.isoformat(),
            "notes": notes[:MAX_NOTES],
            "actor": actor,
            "at": at,
        },
    )
    return case_id


def _case(r: tuple[Any, ...]) -> CaseRecord:
    day = r[2] if isinstance(r[2], date) else date.fromisoformat(str(r[2]))
    return CaseRecord(
        str(r[0]),
        str(r[1]),
        day,
        str(r[3]),
        str(r[4]),
        int(r[5]),
        str(r[6]),
        int(r[7]),
    )


def list_cases(runner: QueryRunner) -> list[CaseRecord]:
    rows = runner.query(
        f"SELECT {_CASE_COLUMNS} FROM cases FINAL ORDER BY created_at DESC LIMIT {MAX_CASES}",
        {},
    )
    return [_case(r) for r in rows]


def get_case(runner: QueryRunner, case_id: str) -> CaseRecord | None:
    rows = runner.query(
        f"SELECT {_CASE_COLUMNS} FROM cases FINAL WHERE case_id = %(case_id)s",
        {"case_id": case_id},
    )
    return _case(rows[0]) if rows else None


def case_of(runner: QueryRunner, person_id: str) -> CaseRecord | None:
    """The most recent case record of a person, if any."""
    rows = runner.query(
        f"SELECT {_CASE_COLUMNS} FROM cases FINAL WHERE person_id = %(person_id)s"
        " ORDER BY created_at DESC LIMIT 1",
        {"person_id": person_id},
    )
    return _case(rows[0]) if rows else None


def confirmed_persons(runner: QueryRunner) -> frozenset[str]:
    """Every person with a case record (the records are few: one a confirmed case)."""
    rows = runner.query("SELECT DISTINCT person_id FROM cases FINAL", {})
    return frozenset(str(r[0]) for r in rows)


def set_status(
    runner: QueryRunner, case_id: str, person_id: str, status: str, actor: str, at: int
) -> None:
    if status not in STATUSES:
        raise FollowupError(f"status must be one of {', '.join(STATUSES)}")
    runner.query(
        "INSERT INTO followups (case_id, person_id, status, changed_by, changed_at)"
        f" SELECT %(case_id)s, %(person_id)s, %(status)s, %(actor)s, {_AT}",
        {"case_id": case_id, "person_id": person_id, "status": status, "actor": actor, "at": at},
    )


def statuses(runner: QueryRunner, case_id: str) -> dict[str, Status]:
    rows = runner.query(
        "SELECT person_id, toString(status), changed_by, toUnixTimestamp64Milli(changed_at)"
        " FROM followups FINAL WHERE case_id = %(case_id)s",
        {"case_id": case_id},
    )
    return {str(p): Status(str(s), str(by), int(at)) for p, s, by, at in rows}


def status_counts(runner: QueryRunner) -> dict[str, dict[str, int]]:
    """case id -> {status: contacts}."""
    rows = runner.query(
        "SELECT case_id, toString(status), count() FROM followups FINAL GROUP BY case_id, status",
        {},
    )
    out: dict[str, dict[str, int]] = {}
    for case_id, status, n in rows:
        out.setdefault(str(case_id), {})[str(status)] = int(n)
    return out
