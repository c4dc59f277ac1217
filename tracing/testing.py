"""A fake ClickHouse behind the `QueryRunner` seam, for tests of the code above it (the
tracer API's request handling, the CLI) where the real server adds nothing.

`FakeClickHouse` holds what one server would: a schema version, the audit rows written,
the answers it gives (small, made up, of the shapes `tracing.sql`'s queries return) and
the failures to inject. `FakeClickHouse.runner()` makes a `FakeRunner` on it, one per
connection (a `RunnerPool` factory). A query is recognised by its bound parameters
(`query_kind`), which `tests/unit/tracing` checks against every builder of `tracing.sql`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from tracing.audit import AUDIT_COLUMNS
from tracing.runner import Row
from tracing.trace import SCHEMA_VERSION

QueryKind = Literal[
    "schema",  # SELECT max(version) FROM schema_migrations
    "audit_insert",  # AuditWriter.write
    "audit_read",  # read_audit
    "timeline",  # sql.case_visits
    "case_scans",  # sql.case_scans
    "contacts",  # sql.contacts, degree 1 (one seed, the case's rows bound)
    "contacts2",  # sql.contacts, degree 2 (seeded by the F1 persons)
    "visitors",  # sql.premises_visitors
    "other",
]
T0: Final = 1_763_000_000_000
MINUTE_MS: Final = 60_000


def query_kind(sql: str, params: Mapping[str, object]) -> QueryKind:
    """Which query of `tracing.sql` or `tracing.audit` this is, from its parameters."""
    if "schema_migrations" in sql:
        return "schema"
    if "audit_id" in params:
        return "audit_insert"
    if "since" in params:
        return "audit_read"
    if "seed_ids" in params:
        return "contacts2"
    if "b_keys" in params or "cv_from" in params:
        return "contacts"
    if "premises_id" in params:
        return "visitors"
    if "person_id" in params:
        return "timeline" if "horizon_ms" in params else "case_scans"
    return "other"


def _contact_row(i: int, via: str) -> Row:
    person = f"F{i:06d}"
    t = T0 + i * MINUTE_MS
    return (person, "NT-1", via, T0, T0, t, t, None, "Chợ Phan Rang", "Phan Rang", "market")


@dataclass
class FakeClickHouse:
    """The shared state of the fake server. `contacts` rows answer each contact query
    (degree 1 and 2 alike), `visitors` rows a premises query. `fail` maps a query kind to
    the exception its next queries raise; `fail_after_rows` makes an answer raise that
    exception after so many rows instead (a failure mid-stream; an insert fails whole).
    `delay_s` slows every query (a client can leave meanwhile)."""

    version: int = SCHEMA_VERSION
    contacts: int = 3
    visitors: int = 3
    fail: dict[QueryKind, BaseException] = field(default_factory=dict)
    fail_after_rows: int | None = None
    delay_s: float = 0.0
    audit: list[dict[str, object]] = field(default_factory=list)
    asked: list[QueryKind] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def runner(self) -> FakeRunner:
        return FakeRunner(self)

    def audit_rows(self) -> list[dict[str, object]]:
        with self.lock:
            return list(self.audit)

    def _rows(self, kind: QueryKind, params: Mapping[str, object]) -> Iterator[Row]:
        if kind == "schema":
            yield (self.version,)
        elif kind == "timeline":
            yield ("NT-1", T0, T0 + 30 * MINUTE_MS, 2, "Chợ Phan Rang", "Phan Rang", "market",
                   [T0])  # fmt: skip
        elif kind == "case_scans":
            yield ("NT-1", T0, T0, "Chợ Phan Rang", "Phan Rang", "market", [T0])
        elif kind in ("contacts", "contacts2"):
            via = str(params.get("case", "")) if kind == "contacts" else "F000000"
            for i in range(self.contacts):
                yield _contact_row(i if kind == "contacts" else i + self.contacts, via)
        elif kind == "visitors":
            for i in range(self.visitors):
                yield (f"V{i:06d}", T0 + i, T0 + i, 1, "Chợ Phan Rang", "Phan Rang", "market")
        elif kind == "audit_read":
            yield from self._audit_read(params)

    def _audit_read(self, params: Mapping[str, object]) -> Iterator[Row]:
        since = int(str(params["since"]))
        actor = params.get("actor")
        with self.lock:
            rows = [
                r
                for r in self.audit
                if int(str(r["at"])) >= since and (actor is None or r["actor"] == actor)
            ]
        for r in rows[: int(str(params["limit"]))]:
            yield tuple(r[c] for c in AUDIT_COLUMNS)

    def ask(self, sql: str, params: Mapping[str, object]) -> tuple[QueryKind, Iterator[Row]]:
        kind = query_kind(sql, params)
        with self.lock:
            self.asked.append(kind)
        if self.delay_s:
            time.sleep(self.delay_s)
        exc = self.fail.get(kind)
        if exc is not None and (self.fail_after_rows is None or kind == "audit_insert"):
            raise exc
        if kind == "audit_insert":
            row = {c: params[c] for c in AUDIT_COLUMNS}
            row["audit_id"] = str(uuid.UUID(str(row["audit_id"])))
            row["ok"] = bool(row["ok"])
            with self.lock:
                self.audit.append(row)
            return kind, iter(())
        rows = self._rows(kind, params)
        if exc is not None:
            return kind, _break(rows, self.fail_after_rows or 0, exc)
        return kind, rows


def _break(rows: Iterator[Row], after: int, exc: BaseException) -> Iterator[Row]:
    for n, row in enumerate(rows):
        if n >= after:
            break
        yield row
    raise exc


class FakeRunner:
    """One connection to a `FakeClickHouse`; its sibling is another one."""

    def __init__(self, db: FakeClickHouse) -> None:
        self.db = db
        self.closed = False
        self._sibling: FakeRunner | None = None

    def query(self, sql: str, params: Mapping[str, object]) -> list[Row]:
        self._check()
        return list(self.db.ask(sql, params)[1])

    def iter_query(self, sql: str, params: Mapping[str, object]) -> Iterator[Row]:
        self._check()
        return self.db.ask(sql, params)[1]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        raise NotImplementedError("the tracer inserts with query(): AuditWriter")

    def sibling(self) -> FakeRunner:
        if self._sibling is None:
            self._sibling = FakeRunner(self.db)
        return self._sibling

    def close(self) -> None:
        self.closed = True
        if self._sibling is not None:
            self._sibling.close()

    def _check(self) -> None:
        if self.closed:
            raise RuntimeError("runner closed")
