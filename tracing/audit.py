"""The audit log: every tracer query, from the CLI or the API, succeeded or failed.

One row per query in the `audit_log` table (sinks migration `audit_log`): who (the
tracer's name from the API token, or the OS user for the CLI), through which channel,
when, what (person or premises), the rule, the period, how many rows were returned, and
the error when it failed. Reading the audit log leaves a row too.
"""

# The table name is `_ident`-checked by TraceTables; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from tracing.runner import QueryRunner
from tracing.sql import TraceTables

# `web`: the workbench's pages (`tracing.workbench`), signed in with an API token.
Channel = Literal["cli", "api", "web"]
# `read_audit`: the audit log read (API or CLI); `other`: an authenticated API request
# that names no endpoint (404, 405), its method and path as the subject. The workbench's:
# `page` (a page without personal data of its own: its path), `trace_job` (a depth-2
# job's progress or answer), `export` (a trace as a file), `cases` (the case list),
# `sign_in`/`sign_out`, and the changes `case_create`, `followup` (a contact's status),
# `site_propose` and `site_decide` (approve, reject or withdraw: in `rule`).
Action = Literal[
    "trace",
    "trace_premises",
    "read_audit",
    "other",
    "page",
    "trace_job",
    "export",
    "cases",
    "sign_in",
    "sign_out",
    "case_create",
    "followup",
    "site_propose",
    "site_decide",
]

AUDIT_COLUMNS: Final = (
    "audit_id",
    "at",
    "actor",
    "role",
    "channel",
    "action",
    "subject_id",
    "period_from",
    "period_to",
    "rule",
    "rows",
    "ok",
    "error",
    "duration_ms",
)
MAX_ERROR_CHARS: Final = 2000


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    role: str
    channel: Channel


@dataclass(frozen=True, slots=True)
class AuditRecord:
    actor: Actor
    action: Action
    subject_id: str
    period_from: int
    period_to: int
    at: int
    rule: Mapping[str, object] = field(default_factory=dict)
    rows: int = 0
    ok: bool = True
    error: str = ""
    duration_ms: int = 0
    audit_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def as_dict(self) -> dict[str, object]:
        return {
            "audit_id": self.audit_id,
            "at": self.at,
            "actor": self.actor.name,
            "role": self.actor.role,
            "channel": self.actor.channel,
            "action": self.action,
            "subject_id": self.subject_id,
            "period_from": self.period_from,
            "period_to": self.period_to,
            "rule": dict(self.rule),
            "rows": self.rows,
            "ok": self.ok,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }


class AuditWriter:
    """Writes one audit row per query, synchronously: a query whose audit row cannot be
    written raises (personal data access that is not logged must not look successful)."""

    def __init__(self, runner: QueryRunner, tables: TraceTables | None = None) -> None:
        self.runner = runner
        self.tables = tables or TraceTables()

    def write(self, record: AuditRecord) -> None:
        row = (
            uuid.UUID(record.audit_id),
            record.at,
            record.actor.name,
            record.actor.role,
            record.actor.channel,
            record.action,
            record.subject_id,
            record.period_from,
            record.period_to,
            json.dumps(dict(record.rule), sort_keys=True),
            record.rows,
            1 if record.ok else 0,
            record.error[:MAX_ERROR_CHARS],
            record.duration_ms,
        )
        # Times go in as epoch ms (Int64), converted by the table's column types.
        self.runner.query(
            f"INSERT INTO {self.tables.q('audit')} ({', '.join(AUDIT_COLUMNS)}) "
            "SELECT audit_id, fromUnixTimestamp64Milli(at, 'UTC'), actor, role, channel, action,"
            " subject_id, fromUnixTimestamp64Milli(period_from, 'UTC'),"
            " fromUnixTimestamp64Milli(period_to, 'UTC'), rule, rows, ok, error, duration_ms"
            " FROM (SELECT %(audit_id)s AS audit_id, toInt64(%(at)s) AS at,"
            " %(actor)s AS actor, %(role)s AS role, %(channel)s AS channel,"
            " %(action)s AS action, %(subject_id)s AS subject_id,"
            " toInt64(%(period_from)s) AS period_from, toInt64(%(period_to)s) AS period_to,"
            " %(rule)s AS rule, toUInt32(%(rows)s) AS rows, toUInt8(%(ok)s) AS ok,"
            " %(error)s AS error, toUInt32(%(duration_ms)s) AS duration_ms)",
            dict(zip(AUDIT_COLUMNS, row, strict=True)),
        )


def read_audit(
    runner: QueryRunner,
    since_ms: int,
    *,
    limit: int = 1000,
    actor: str | None = None,
    tables: TraceTables | None = None,
) -> list[dict[str, object]]:
    """Audit rows at or after `since_ms`, oldest first."""
    tables = tables or TraceTables()
    where = "at >= fromUnixTimestamp64Milli(toInt64(%(since)s), 'UTC')"
    params: dict[str, object] = {"since": int(since_ms), "limit": int(limit)}
    if actor is not None:
        where += " AND actor = %(actor)s"
        params["actor"] = actor
    rows = runner.query(
        f"SELECT toString(audit_id), toUnixTimestamp64Milli(at), actor, role, channel, action,"
        f" subject_id, toUnixTimestamp64Milli(period_from), toUnixTimestamp64Milli(period_to),"
        f" rule, rows, ok, error, duration_ms FROM {tables.q('audit')}"
        f" WHERE {where} ORDER BY at, audit_id LIMIT %(limit)s",
        params,
    )
    out: list[dict[str, object]] = []
    for r in rows:
        d = dict(zip(AUDIT_COLUMNS, r, strict=True))
        d["ok"] = bool(d["ok"])
        with contextlib.suppress(ValueError):
            d["rule"] = json.loads(str(d["rule"])) if d["rule"] else {}
        out.append(d)
    return out
