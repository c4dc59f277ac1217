"""The two tracer queries, run through a `QueryRunner`, and the audited `Tracer` facade.

`trace_person` runs the case's timeline (which also returns the case's scan times in the
period), the F1 contacts (seeded with the case's rows as bound values, so it reads `scans`
once, by premises and time), and (depth 2) the F2 contacts, a query seeded with every F1
person and the earliest time of their contact. Under scan-window with a second connection
the F1 query is seeded by a plain read of the case's scans (`sql.case_scans`) and the
timeline runs beside it. Python only moves rows into models and parameters.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Final, TypeVar

from ingest.contract import now_ms
from ingest.errors import InvalidInput, TerminalError, TransientError
from ingest.timeparse import INTEGER, TimeInputError, ascii_int, parse_strict
from sinks.schema import MIGRATIONS
from tracing import sql
from tracing.audit import Action, Actor, AuditRecord, AuditWriter
from tracing.models import Contact, PremisesResult, TraceResult, Visit, Visitor
from tracing.rules import Rule
from tracing.runner import QueryRunner, Row
from tracing.sql import TraceTables

DAY_MS: Final = 86_400_000
T = TypeVar("T")
MAX_SUBJECT_LEN: Final = 64


class TraceInputError(InvalidInput):
    """The question cannot be asked (bad period, id or rule): HTTP 422, CLI exit 2."""


def parse_int(value: str, name: str, lo: int, hi: int) -> int:
    """A query parameter as an integer in [lo, hi], or `TraceInputError` with the reason:
    the one integer rule of the API and of `parse_time`."""
    if INTEGER.fullmatch(value) is None:
        raise TraceInputError(f"{name} must be an integer (ASCII digits) from {lo} to {hi}")
    number = ascii_int(value)
    if number is None or not lo <= number <= hi:
        raise TraceInputError(f"{name} must be from {lo} to {hi}")
    return number


def parse_time(value: str, name: str) -> int:
    """ISO-8601 with an offset (or epoch ms digits) to epoch ms, or `TraceInputError`: the
    strict form of `ingest.timeparse` (an API answer must not depend on the server's time
    zone; the command line takes the lenient forms too)."""
    try:
        return parse_strict(value, name)
    except TimeInputError as exc:
        raise TraceInputError(str(exc)) from None


def check_question(subject: str, from_ms: int, to_ms: int, retention_days: int) -> None:
    if not subject or len(subject) > MAX_SUBJECT_LEN or not subject.isprintable():
        raise TraceInputError(
            f"the id must be a printable string of 1-{MAX_SUBJECT_LEN} characters"
        )
    if from_ms > to_ms:
        raise TraceInputError("the period's start (from) is after its end (to)")
    if to_ms - from_ms > retention_days * DAY_MS:
        raise TraceInputError(
            f"the period is longer than the {retention_days}-day retention of scans"
        )


# The schema the tracer reads: the last of the migrations that make its by-person paths
# (`scans_by_person`, `places_by_person`), each recorded only once its copy is complete,
# so a tracer started before or during one refuses instead of answering from a missing or
# partial table.
SCHEMA_VERSION: Final = max(
    m.version for m in MIGRATIONS if m.name in ("scans_by_person", "places_by_person")
)


class SchemaTooOld(TerminalError):
    """The database lacks a migration the tracer needs (`scantrace db migrate`)."""


def check_schema(runner: QueryRunner, needs: int = SCHEMA_VERSION) -> None:
    """Raise `SchemaTooOld` unless the database has migration `needs` applied."""
    try:
        rows = runner.query("SELECT max(version) FROM schema_migrations", {})
    except TransientError:  # ClickHouse down or not reachable: not a schema to migrate
        raise
    except Exception as exc:
        raise SchemaTooOld(f"no schema to read ({error_text(exc, 200)}): run migrations") from exc
    have = int(rows[0][0]) if rows else 0
    if have < needs:
        raise SchemaTooOld(
            f"the database is at schema version {have}, the tracer needs {needs}:"
            " run `scantrace db migrate`"
        )


def _contact_rows(rows: Iterable[Row], degree: int) -> Iterator[Contact]:
    # Positional, from rows in sql.CONTACT_COLUMNS order: a large answer is thousands of
    # rows, and the named tuple's positional constructor is its cheapest path.
    for person, premises, via, c_from, c_to, x_from, x_to, overlap, name, district, cat in rows:
        yield Contact(
            person,
            degree,
            via if degree > 1 else None,
            premises,
            name,
            district,
            cat,
            c_from,
            c_to,
            x_from,
            x_to,
            overlap,
        )


def _contacts(rows: list[Row], degree: int) -> list[Contact]:
    return list(_contact_rows(rows, degree))


def _answer_order(c: Contact) -> tuple[int, int, str, str]:
    """The order of an answer's contacts: by degree, then as `sql.CONTACT_ORDER`."""
    return (c.degree, c.contact_time_from, c.person_id, c.premises_id)


def _timeline(
    runner: QueryRunner,
    person_id: str,
    from_ms: int,
    to_ms: int,
    rule: Rule,
    tables: TraceTables,
) -> tuple[list[sql.CaseVisit], list[Visit]]:
    """The case's visits with a scan in the period: as the degree-1 query's seeds and as
    the answer's timeline."""
    case: list[sql.CaseVisit] = []
    visits: list[Visit] = []
    for p, t0, t1, n, name, district, cat, times in runner.query(
        *sql.case_visits(rule, person_id, from_ms, to_ms, tables)
    ):
        t0, t1 = int(t0), int(t1)
        case.append(
            sql.CaseVisit(
                premises_id=p,
                time_from=t0,
                time_to=t1,
                premises_name=name,
                district=district,
                category=cat,
                period_times=tuple(int(t) for t in times),
            )
        )
        visits.append(
            Visit(
                premises_id=p,
                premises_name=name,
                district=district,
                category=cat,
                time_from=t0,
                time_to=t1,
                scans=int(n),
            )
        )
    return case, visits


def _degree1(
    runner: QueryRunner,
    person_id: str,
    from_ms: int,
    to_ms: int,
    rule: Rule,
    tables: TraceTables,
) -> tuple[list[Visit], list[Contact]]:
    """The timeline and the degree-1 contacts. Under scan-window the degree-1 query needs
    only the case's scans in the period, not its visits: with a second connection, one
    plain read of those, then the timeline and the degree-1 query side by side (each
    plans on one core; bench/RESULTS.md "Trace latency"). Otherwise one after the other,
    the timeline's visits as the seeds."""
    side = runner.sibling() if rule.name == "scan-window" else None
    if side is None:
        case, visits = _timeline(runner, person_id, from_ms, to_ms, rule, tables)
        spans = [(v.premises_id, v.time_from, v.time_to) for v in case]
    else:
        case = [
            sql.CaseVisit(p, int(t0), int(t1), name, district, cat, tuple(int(t) for t in ts))
            for p, t0, t1, name, district, cat, ts in runner.query(
                *sql.case_scans(person_id, from_ms, to_ms, tables)
            )
        ]
        # scan-window pairs a contact's scan with a case's scan in the period
        spans = [(v.premises_id, t, t) for v in case for t in v.period_times]
    if not case:  # no scan of the case in the period: nobody to find
        return [], []
    degree1 = sql.contacts(
        rule,
        [(person_id, from_ms)],
        to_ms,
        [person_id],
        tables,
        sql.seed_windows(rule, spans),
        case=case,
    )
    if side is None:
        return visits, _contacts(runner.query(*degree1), 1)
    with ThreadPoolExecutor(max_workers=1) as beside:
        timeline = beside.submit(_timeline, side, person_id, from_ms, to_ms, rule, tables)
        f1 = _contacts(runner.query(*degree1), 1)
        return timeline.result()[1], f1


def primed(items: Iterator[T]) -> Iterator[T]:
    """`items` with its first item already read: a streamed query has run when this
    returns (ClickHouse sends the first block of a grouped or sorted answer once the
    grouping is done), so its failures, limits included, come before any row is sent."""
    for first in items:
        return itertools.chain((first,), items)
    return iter(())


@dataclass(frozen=True, slots=True)
class TraceStream:
    """A trace whose contacts are read as ClickHouse sends them, in the answer's order.
    The timeline and the degree-1 contacts are read whole: a case's visits are few, and
    the degree-1 contacts are the degree-2 query's seeds. The degree-2 contacts (up to
    millions of rows) stream from the runner's `iter_query`, sorted by ClickHouse
    (`sql.in_contact_order`): read them to the end or close the runner."""

    case: str
    period_from: int
    period_to: int
    rule: Rule
    visits: list[Visit]
    contacts: Iterator[Contact]


def stream_trace(
    runner: QueryRunner,
    person_id: str,
    from_ms: int,
    to_ms: int,
    rule: Rule,
    tables: TraceTables | None = None,
) -> TraceStream:
    tables = tables or TraceTables()
    visits, f1 = _degree1(runner, person_id, from_ms, to_ms, rule, tables)
    f1.sort(key=_answer_order)
    contacts: Iterator[Contact] = iter(f1)
    if rule.depth >= 2 and f1:
        earliest: dict[str, int] = {}
        for c in f1:
            earliest[c.person_id] = min(
                earliest.get(c.person_id, c.contact_time_from), c.contact_time_from
            )
        seeds = sorted(earliest.items())
        exclude = [person_id, *earliest]
        degree2 = sql.in_contact_order(sql.contacts(rule, seeds, to_ms, exclude, tables))
        f2 = primed(_contact_rows(runner.iter_query(*degree2), 2))
        contacts = itertools.chain(f1, f2)
    return TraceStream(person_id, from_ms, to_ms, rule, visits, contacts)


def trace_person(
    runner: QueryRunner,
    person_id: str,
    from_ms: int,
    to_ms: int,
    rule: Rule,
    tables: TraceTables | None = None,
) -> TraceResult:
    s = stream_trace(runner, person_id, from_ms, to_ms, rule, tables)
    return TraceResult(s.case, s.period_from, s.period_to, s.rule, s.visits, list(s.contacts))


def stream_premises(
    runner: QueryRunner,
    premises_id: str,
    from_ms: int,
    to_ms: int,
    tables: TraceTables | None = None,
) -> Iterator[Visitor]:
    """The visitors of a premises as ClickHouse sends them (ordered by first scan, then
    person), the query run: read them to the end or close the runner."""
    rows = runner.iter_query(*sql.premises_visitors(premises_id, from_ms, to_ms, tables))
    return primed(
        Visitor(
            person_id=person,
            premises_id=premises_id,
            premises_name=name,
            district=district,
            category=cat,
            time_from=int(t0),
            time_to=int(t1),
            scans=int(n),
        )
        for person, t0, t1, n, name, district, cat in rows
    )


def trace_premises(
    runner: QueryRunner,
    premises_id: str,
    from_ms: int,
    to_ms: int,
    tables: TraceTables | None = None,
) -> PremisesResult:
    visitors = list(stream_premises(runner, premises_id, from_ms, to_ms, tables))
    return PremisesResult(premises_id, from_ms, to_ms, visitors)


@dataclass
class Tracer:
    """The queries as a tracer asks them: checked, run, and audited, success or failure.
    A failure is audited and then re-raised."""

    runner: QueryRunner
    audit: AuditWriter
    retention_days: int = 28
    tables: TraceTables | None = None
    clock: Callable[[], int] = now_ms

    def _audited(
        self,
        actor: Actor,
        action: Action,
        subject: str,
        from_ms: int,
        to_ms: int,
        rule: dict[str, object],
        run: Callable[[], TraceResult | PremisesResult],
    ) -> TraceResult | PremisesResult:
        at = self.clock()
        started = time.perf_counter()
        record = AuditRecord(actor, action, subject, from_ms, to_ms, at, rule)
        try:
            check_question(subject, from_ms, to_ms, self.retention_days)
            result = run()
        except Exception as exc:
            self.audit.write(_replace(record, ok=False, error=error_text(exc), started=started))
            raise
        self.audit.write(_replace(record, rows=result.rows, started=started))
        return result

    def trace(
        self, actor: Actor, person_id: str, from_ms: int, to_ms: int, rule: Rule
    ) -> TraceResult:
        result = self._audited(
            actor,
            "trace",
            person_id,
            from_ms,
            to_ms,
            rule.echo(),
            lambda: trace_person(self.runner, person_id, from_ms, to_ms, rule, self.tables),
        )
        assert isinstance(result, TraceResult)
        return result

    def trace_premises(
        self, actor: Actor, premises_id: str, from_ms: int, to_ms: int
    ) -> PremisesResult:
        result = self._audited(
            actor,
            "trace_premises",
            premises_id,
            from_ms,
            to_ms,
            {},
            lambda: trace_premises(self.runner, premises_id, from_ms, to_ms, self.tables),
        )
        assert isinstance(result, PremisesResult)
        return result


def error_text(exc: BaseException, limit: int = 500) -> str:
    """One line for the audit log: the exception's type and message, no stack trace (a
    ClickHouse server error carries the server's)."""
    text = str(exc).split("Stack trace:", 1)[0]
    return f"{type(exc).__name__}: {' '.join(text.split())}"[:limit]


def _replace(
    record: AuditRecord, *, started: float, rows: int = 0, ok: bool = True, error: str = ""
) -> AuditRecord:
    """The record with the query's outcome and its duration since `started`."""
    duration_ms = round((time.perf_counter() - started) * 1000)
    return replace(record, rows=rows, ok=ok, error=error, duration_ms=duration_ms)
