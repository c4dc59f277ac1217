"""The tracer HTTP API as an aiohttp Application, above the `QueryRunner` seam.

    GET /v1/trace/{person_id}?from=ISO&to=ISO[&rule=&window_min=&buffer_min=
        &min_overlap_min=&merge_gap_min=&depth=][&limit=&offset=][&format=json|csv]
    GET /v1/premises/{premises_id}/visitors?from=ISO&to=ISO[&limit=&offset=][&format=]
    GET /v1/audit?since=ISO[&limit=&actor=]                   (role auditor)
    GET /openapi.json, /healthz, /metrics                     (no token)

Bearer tokens map to named tracers with a role: `tracer` may query, `auditor` may read
the audit log, anything else gets 403. Every other path needs a token too: without a
known one, 401 (so nobody learns which paths exist).

Audit: every request that passes authentication leaves exactly one audit row, written in
one place (`_middleware`), whatever happens: an answer, 403, 404, 405, 422 (any malformed
parameter: unknown, repeated, empty, not ASCII digits, out of range, a bad time), a failed
or limited query (503), a client that leaves. The row of an answer sent whole (JSON, an
error) is written before the answer leaves, and a failure to write it turns the answer
into 503: no personal data leaves unaudited. The row of a streamed answer (CSV) is
written when its rows have been sent, before the final chunk, so that it says how many
rows left and how the stream ended (completed, cut by a failure, or the client left); if
that write fails the response is cut before its final chunk (the client sees an
incomplete answer), and it is logged and counted (`scantrace_api_audit_failures_total`).

Bounds: every query runs under the runner's time and memory limits (503 `query_limit`
with the limit named). Answers are read from ClickHouse as they come (`iter_query`):
- `format=csv` streams the whole answer, any size, a chunk at a time from a worker thread
  to the response with at most two chunks in flight; a failure before the first row is a
  503 like any other, a failure after it cuts the response (no final chunk: the client
  sees an incomplete body, never a complete-looking short file).
- JSON is paged (`limit`, `offset`). The whole answer of a question (person or premises,
  period, rule) is read once, at most `max_json_rows` rows (a larger one is refused with a
  pointer to CSV), and kept in a small cache bounded by rows and age (`AnswerCache`), so
  that the following pages are cut from it instead of running the query again (shared by
  the tracers: an answer does not depend on who asks, and every page is audited). SQL
  `LIMIT/OFFSET` was not chosen: ClickHouse would still group every row of a depth-2
  answer for every page, and the page's total needs them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar, cast

from aiohttp import web
from multidict import MultiMapping
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.auth import BearerTokens
from ingest.contract import now_ms
from ingest.http import HttpError as ApiError
from ingest.http import json_response as _json
from tracing.api.cache import AnswerCache
from tracing.api.metrics import ApiMetrics
from tracing.api.openapi import openapi_document
from tracing.audit import Action, Actor, AuditRecord, AuditWriter, read_audit
from tracing.formatting import contacts_csv, premises_json, trace_json, visitors_csv
from tracing.models import Contact, PremisesResult, TraceResult, Visitor, iso_utc
from tracing.rules import Rule, RuleError
from tracing.runner import QueryLimitExceeded, QueryRunner, RunnerPool
from tracing.settings import TRACING_ROLES, ApiOptions, Principal, WorkbenchOptions
from tracing.sql import TraceTables
from tracing.trace import (
    TraceInputError,
    check_question,
    error_text,
    parse_int,
    parse_time,
    stream_premises,
    stream_trace,
)

log = logging.getLogger(__name__)

METRICS_KEY: Final = web.AppKey("metrics", ApiMetrics)
CSV_CHUNK_BYTES: Final = 64 * 1024
T = TypeVar("T")

# Routes anyone may call; every other request needs a token and is audited.
PUBLIC_ROUTES: Final = frozenset({"healthz", "metrics", "openapi", "exposure_public"})
ACTIONS: Final[Mapping[str, Action]] = {
    "trace": "trace",
    "premises": "trace_premises",
    "audit": "read_audit",
    "exposure_propose": "site_propose",
    "exposure_decide": "site_decide",
}
PERIOD_PARAMS: Final = frozenset({"from", "to", "limit", "offset", "format"})
TRACE_PARAMS: Final = PERIOD_PARAMS | {
    "rule",
    "window_min",
    "buffer_min",
    "min_overlap_min",
    "merge_gap_min",
    "depth",
    "cap_at_next_scan",
}
AUDIT_PARAMS: Final = frozenset({"since", "limit", "actor"})
MAX_OFFSET: Final = 2**31
MAX_AUDIT_ROWS: Final = 100_000
# Not an HTTP status sent (nobody is listening): how the audit row names a request whose
# client left before its answer was complete (nginx's convention).
CLIENT_LEFT: Final = 499
AUDITOR: Final = frozenset({"auditor"})


class TokenAuth(BearerTokens[Principal]):
    """Bearer tokens to principals (the tracer's name and role)."""

    __slots__ = ()

    def principal(self, authorization: str | None) -> Principal | None:
        return self.lookup(authorization)


class AnswerTooLarge(Exception):
    """More rows than a JSON answer may have."""


@dataclass
class AuditScope:
    """What the audit row of one authenticated request will say; filled in as the
    request is understood, written once by `_middleware`."""

    actor: Actor
    action: Action
    subject: str
    at: int
    started: float = field(default_factory=time.perf_counter)
    period_from: int = 0
    period_to: int = 0
    rule: dict[str, object] = field(default_factory=dict)
    rows: int = 0
    # The reason of a failure; for a streamed answer, set when the stream was cut.
    error: str = ""
    written: bool = False  # the row was written (or its one attempt failed)

    def record(self) -> AuditRecord:
        return AuditRecord(
            self.actor,
            self.action,
            self.subject[:256],
            self.period_from,
            self.period_to,
            self.at,
            self.rule,
            rows=self.rows,
            ok=not self.error,
            error=self.error,
            duration_ms=round((time.perf_counter() - self.started) * 1000),
        )


AUDIT_KEY: Final = web.RequestKey("audit", AuditScope)


def _shown(name: str) -> str:
    """A caller's parameter name, safe to quote in a reason."""
    return ascii(name[:40])


class Params:
    """A request's query string, checked before anything runs: every name known, none
    given twice, none empty (422 with the reason otherwise)."""

    def __init__(self, query: MultiMapping[str], allowed: frozenset[str]) -> None:
        seen: set[str] = set()
        for name, value in query.items():
            if name not in allowed:
                raise ApiError(422, "invalid", f"unknown parameter {_shown(name)}")
            if name in seen:
                raise ApiError(422, "invalid", f"{name} is given more than once")
            if value == "":
                raise ApiError(422, "invalid", f"{name} is empty")
            seen.add(name)
        self.query = query

    def get(self, name: str) -> str | None:
        return self.query.get(name)

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.query.get(name)
        if raw is None:
            return default
        try:
            return parse_int(raw, name, lo, hi)
        except TraceInputError as exc:
            raise ApiError(422, "invalid", str(exc)) from None

    def boolean(self, name: str) -> bool | None:
        raw = self.query.get(name)
        if raw is None:
            return None
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise ApiError(422, "invalid", f"{name} must be true or false")

    def time(self, name: str) -> int:
        raw = self.query.get(name)
        if raw is None:
            raise ApiError(422, "invalid", f"{name} is required (ISO-8601 with offset)")
        try:
            return parse_time(raw, name)
        except TraceInputError as exc:
            raise ApiError(422, "invalid", str(exc)) from None

    def rule(self) -> Rule:
        d = Rule()
        name = self.query.get("rule", d.name)
        try:
            return Rule(
                name,  # type: ignore[arg-type]
                window_min=self.integer("window_min", d.window_min, 0, 7 * 1440),
                buffer_min=self.integer("buffer_min", d.buffer_min, 0, 1440),
                min_overlap_min=self.integer("min_overlap_min", d.min_overlap_min, 0, 1440),
                merge_gap_min=self.integer("merge_gap_min", d.merge_gap_min, 0, 1440),
                depth=self.integer("depth", d.depth, 1, 2),
                cap_at_next_scan=self.boolean("cap_at_next_scan"),
            )
        except RuleError as exc:
            raise ApiError(422, "invalid", str(exc)) from None

    def format(self) -> str:
        fmt = self.query.get("format", "json")
        if fmt not in ("json", "csv"):
            raise ApiError(422, "invalid", "format must be json or csv")
        return fmt


def _take(items: Iterator[T], most: int) -> list[T]:
    out: list[T] = []
    for item in items:
        if len(out) == most:
            raise AnswerTooLarge
        out.append(item)
    return out


class _End:
    """The last item of a stream."""


@dataclass(frozen=True, slots=True)
class _Failed:
    exc: BaseException


class _Channel:
    """Chunks of a streamed answer from the worker thread that reads them to the event
    loop that sends them: at most `depth` in flight (the reader waits for the sender, so a
    slow client holds two chunks, not the answer), and abandoned by the sender when it
    stops early (the reader then stops at its next chunk and closes its runner)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int = 2) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._credits = threading.Semaphore(depth)
        self._abandoned = threading.Event()

    def put(self, item: object) -> bool:
        """From the reader's thread: False when the sender is gone."""
        while not self._credits.acquire(timeout=0.5):
            if self._abandoned.is_set():
                return False
        if self._abandoned.is_set():
            return False
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server is gone
            return False
        return True

    async def get(self) -> object:
        item = await self._queue.get()
        self._credits.release()
        return item

    def abandon(self) -> None:
        self._abandoned.set()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()


def _csv_chunks(
    rows: Iterator[T], lines: Callable[[list[T], bool], str]
) -> Iterator[tuple[str, int]]:
    """(CSV text, rows in it) of about CSV_CHUNK_BYTES each, the header in the first."""
    header = True
    batch: list[T] = []
    size = 0
    for row in rows:
        batch.append(row)
        size += 200  # about a row's CSV line; the exact size does not matter
        if size >= CSV_CHUNK_BYTES:
            yield lines(batch, header), len(batch)
            header, batch, size = False, [], 0
    if batch or header:
        yield lines(batch, header), len(batch)


def _contact_lines(batch: list[Contact], header: bool) -> str:
    return contacts_csv(batch, header=header)


def _visitor_lines(batch: list[Visitor], header: bool) -> str:
    return visitors_csv(batch, header=header)


class TracerApi:
    def __init__(
        self,
        pool: RunnerPool,
        options: ApiOptions,
        auth: TokenAuth,
        metrics: ApiMetrics,
        *,
        retention_days: int,
        tables: TraceTables | None = None,
        audit_pool: RunnerPool | None = None,
    ) -> None:
        self.pool = pool
        # The audit log is read as another ClickHouse user than the one tracing (which
        # may not read it); None: the same connections.
        self.audit_pool = audit_pool or pool
        self.options = options
        self.auth = auth
        self.metrics = metrics
        self.retention_days = retention_days
        self.tables = tables or TraceTables()
        self.cache: AnswerCache[TraceResult | PremisesResult] = AnswerCache(
            options.answer_cache_rows, options.answer_ttl_s
        )
        # Routes of the workbench: sessions, not bearer tokens (`tracing.workbench`).
        self.web_routes: set[str] = set()

    # -- the audit row ---------------------------------------------------------------

    def open_scope(self, request: web.Request, route: str | None) -> AuditScope:
        """The audit scope of a request that is not public: 401 without a known token."""
        who = self.auth.principal(request.headers.get("Authorization"))
        if who is None:
            raise ApiError(401, "unauthorized", "missing or unknown bearer token")
        action = ACTIONS.get(route or "", "other")
        subject = "" if action != "other" else f"{request.method} {request.path}"
        scope = AuditScope(Actor(who.name, who.role, "api"), action, subject, now_ms())
        request[AUDIT_KEY] = scope
        return scope

    def _write_audit(self, record: AuditRecord) -> None:
        with self.pool.runner() as runner:
            AuditWriter(runner, self.tables).write(record)

    async def write_audit(self, scope: AuditScope) -> None:
        """Write the scope's row in a worker thread, once (a second call does nothing);
        shielded, so that a request cancelled meanwhile (its client left) still leaves
        its row. Raises when the row could not be written."""
        if scope.written:
            return
        scope.written = True
        try:
            await asyncio.shield(asyncio.to_thread(self._write_audit, scope.record()))
        except Exception as exc:
            self.metrics.audit_failures.inc()
            log.error("audit row not written: %s", error_text(exc, 2000))
            raise

    def read_audit(self, since_ms: int, limit: int, actor: str | None) -> list[dict[str, object]]:
        """The audit log's rows (blocking): the one place that reads them."""
        with self.audit_pool.runner() as runner:
            return read_audit(runner, since_ms, limit=limit, actor=actor, tables=self.tables)

    # -- handlers --------------------------------------------------------------------

    def _role(self, scope: AuditScope, roles: frozenset[str], what: str) -> None:
        if scope.actor.role not in roles:
            raise ApiError(403, "forbidden", f"role {scope.actor.role!r} may not {what}")

    def _question(self, scope: AuditScope, params: Params, subject: str) -> tuple[int, int]:
        from_ms, to_ms = params.time("from"), params.time("to")
        scope.period_from, scope.period_to = from_ms, to_ms
        try:
            check_question(subject, from_ms, to_ms, self.retention_days)
        except TraceInputError as exc:
            raise ApiError(422, "invalid", str(exc)) from None
        return from_ms, to_ms

    def _page(self, params: Params) -> tuple[int, int]:
        limit = params.integer("limit", self.options.page_size, 1, self.options.max_page_size)
        offset = params.integer("offset", 0, 0, MAX_OFFSET)
        return limit, offset

    async def trace(self, request: web.Request) -> web.StreamResponse:
        scope = request[AUDIT_KEY]
        person_id = scope.subject = request.match_info["person_id"]
        self._role(scope, TRACING_ROLES, "query")
        params = Params(request.query, TRACE_PARAMS)
        from_ms, to_ms = self._question(scope, params, person_id)
        rule = params.rule()
        scope.rule = rule.echo()
        fmt = params.format()
        limit, offset = self._page(params)
        if fmt == "csv":

            def rows(runner: QueryRunner) -> Iterator[tuple[str, int]]:
                answer = stream_trace(runner, person_id, from_ms, to_ms, rule, self.tables)
                return _csv_chunks(answer.contacts, _contact_lines)

            return await self._stream(request, scope, f"trace-{person_id}.csv", rows)

        result = await self.trace_answer(scope, person_id, from_ms, to_ms, rule)
        page = result.contacts[offset : offset + limit]
        body = trace_json(result, page)
        return self._paged(scope, body, offset, limit, len(page), result.rows)

    async def premises(self, request: web.Request) -> web.StreamResponse:
        scope = request[AUDIT_KEY]
        premises_id = scope.subject = request.match_info["premises_id"]
        self._role(scope, TRACING_ROLES, "query")
        params = Params(request.query, PERIOD_PARAMS)
        from_ms, to_ms = self._question(scope, params, premises_id)
        fmt = params.format()
        limit, offset = self._page(params)
        if fmt == "csv":

            def rows(runner: QueryRunner) -> Iterator[tuple[str, int]]:
                visitors = stream_premises(runner, premises_id, from_ms, to_ms, self.tables)
                return _csv_chunks(visitors, _visitor_lines)

            return await self._stream(request, scope, f"visitors-{premises_id}.csv", rows)

        result = await self.premises_answer(scope, premises_id, from_ms, to_ms)
        page_v = result.visitors[offset : offset + limit]
        body = premises_json(result, page_v)
        return self._paged(scope, body, offset, limit, len(page_v), result.rows)

    async def audit(self, request: web.Request) -> web.StreamResponse:
        scope = request[AUDIT_KEY]
        self._role(scope, AUDITOR, "read the audit log")
        params = Params(request.query, AUDIT_PARAMS)
        since = params.time("since")
        limit = params.integer("limit", 1000, 1, MAX_AUDIT_ROWS)
        actor = params.get("actor")
        scope.subject = actor or ""
        scope.period_from, scope.period_to = since, scope.at
        scope.rule = {"limit": limit}
        rows = await asyncio.to_thread(self.read_audit, since, limit, actor)
        for r in rows:
            for k in ("at", "period_from", "period_to"):
                r[k] = iso_utc(int(r[k]))  # type: ignore[call-overload]
        scope.rows = len(rows)
        return _json(200, {"since": iso_utc(since), "entries": rows})

    # -- answers ---------------------------------------------------------------------

    async def trace_answer(
        self, scope: AuditScope, person_id: str, from_ms: int, to_ms: int, rule: Rule
    ) -> TraceResult:
        """The whole answer of a trace (at most `max_json_rows` contacts), from the cache
        or read once: the API's JSON pages and the workbench's pages share it."""

        def answer(runner: QueryRunner) -> TraceResult:
            s = stream_trace(runner, person_id, from_ms, to_ms, rule, self.tables)
            contacts = _take(s.contacts, self.options.max_json_rows)
            return TraceResult(s.case, s.period_from, s.period_to, s.rule, s.visits, contacts)

        key = ("trace", person_id, from_ms, to_ms, rule)
        result = await self._answer(scope, key, answer)
        assert isinstance(result, TraceResult)
        return result

    async def premises_answer(
        self, scope: AuditScope, premises_id: str, from_ms: int, to_ms: int
    ) -> PremisesResult:
        def answer(runner: QueryRunner) -> PremisesResult:
            visitors = stream_premises(runner, premises_id, from_ms, to_ms, self.tables)
            kept = _take(visitors, self.options.max_json_rows)
            return PremisesResult(premises_id, from_ms, to_ms, kept)

        key = ("trace_premises", premises_id, from_ms, to_ms)
        result = await self._answer(scope, key, answer)
        assert isinstance(result, PremisesResult)
        return result

    def _paged(
        self,
        scope: AuditScope,
        body: dict[str, object],
        offset: int,
        limit: int,
        returned: int,
        total: int,
    ) -> web.Response:
        scope.rows = returned
        nxt = offset + returned
        body["page"] = {
            "offset": offset,
            "limit": limit,
            "returned": returned,
            "total": total,
            "next_offset": nxt if nxt < total else None,
        }
        return _json(200, body)

    async def _answer(
        self,
        scope: AuditScope,
        key: tuple[object, ...],
        work: Callable[[QueryRunner], TraceResult | PremisesResult],
    ) -> TraceResult | PremisesResult:
        """The whole answer of a question, from the cache or read once."""
        cached = self.cache.get(key)
        self.metrics.answer_cache.labels("hit" if cached is not None else "miss").inc()
        if cached is not None:
            return cached

        def run() -> TraceResult | PremisesResult:
            with self.pool.runner() as runner:
                return work(runner)

        self.metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(run)
        except AnswerTooLarge:
            most = self.options.max_json_rows
            raise ApiError(
                422,
                "too_large",
                f"the answer has more than {most} rows: ask for format=csv (streamed, any"
                " size) or a narrower question",
            ) from None
        finally:
            self.metrics.in_flight.dec()
        self.metrics.query_latency.labels(scope.action).observe(time.perf_counter() - started)
        self.metrics.rows.labels(scope.action).observe(result.rows)
        self.cache.put(key, result, result.rows)
        return result

    async def _stream(
        self,
        request: web.Request,
        scope: AuditScope,
        filename: str,
        chunks: Callable[[QueryRunner], Iterator[tuple[str, int]]],
    ) -> web.StreamResponse:
        """Send the chunks a worker thread reads (`_Channel`); see the module docstring."""
        channel = _Channel(asyncio.get_running_loop())

        def read() -> None:
            try:
                with self.pool.runner() as runner:
                    if channel.abandoned:  # the client left while this waited for a runner
                        raise _Abandoned
                    for item in chunks(runner):
                        if not channel.put(item):
                            raise _Abandoned
                channel.put(_End())
            except _Abandoned:
                pass
            except Exception as exc:
                channel.put(_Failed(exc))

        self.metrics.in_flight.inc()
        started = time.perf_counter()
        reader = asyncio.get_running_loop().run_in_executor(None, read)
        response: web.StreamResponse | None = None
        try:
            item = await channel.get()
            if isinstance(item, _Failed):  # nothing sent yet: an error answer
                raise item.exc
            response = web.StreamResponse(
                status=200,
                headers={
                    "Content-Type": "text/csv; charset=utf-8",
                    "Content-Disposition": f'attachment; filename="{_safe_filename(filename)}"',
                },
            )
            response.enable_chunked_encoding()
            await response.prepare(request)
            while not isinstance(item, _End):
                if isinstance(item, _Failed):
                    scope.error = (
                        f"503 the answer was cut after {scope.rows} rows: {error_text(item.exc)}"
                    )
                    log.warning("streamed answer cut: %s", error_text(item.exc))
                    with contextlib.suppress(Exception):  # its row first, as for a whole one
                        await self.write_audit(scope)
                    _cut(request)
                    return response
                text, n = cast(tuple[str, int], item)
                await response.write(text.encode("utf-8"))
                scope.rows += n
                item = await channel.get()
            try:  # before the final chunk: a complete answer has its audit row
                await self.write_audit(scope)
            except Exception:
                _cut(request)
                return response
            await response.write_eof()
        except ConnectionError:
            scope.error = f"{CLIENT_LEFT} the client left after {scope.rows} rows"
            if response is None:
                raise
            return response
        except asyncio.CancelledError:  # the client left (aiohttp cancels the handler)
            scope.error = f"{CLIENT_LEFT} the client left after {scope.rows} rows"
            raise
        finally:
            channel.abandon()
            self.metrics.in_flight.dec()
            with contextlib.suppress(Exception):
                reader.add_done_callback(_ignore_result)
        self.metrics.query_latency.labels(scope.action).observe(time.perf_counter() - started)
        self.metrics.rows.labels(scope.action).observe(scope.rows)
        return response


class _Abandoned(Exception):
    """The sender stopped: the reader closes its runner (mid-answer)."""


def _ignore_result(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _cut(request: web.Request) -> None:
    """End a streamed response without its final chunk: the client sees a broken body."""
    transport = request.transport
    if transport is not None:
        transport.close()


def _safe_filename(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:100]


def _failure(exc: Exception) -> tuple[ApiError, str]:
    """An exception a handler let out, as the answer and the audit row's reason."""
    if isinstance(exc, QueryLimitExceeded):
        detail = f"{exc}: ask a narrower question (a shorter period, depth 1), or use the CLI"
        return ApiError(503, "query_limit", detail), f"503 {detail}"
    log.error("query failed: %s", error_text(exc, 2000))
    return ApiError(503, "query_failed", type(exc).__name__), f"503 {error_text(exc)}"


def _middleware(api: TracerApi) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route.name
        if route in api.web_routes:  # the workbench's pages audit themselves
            return await handler(request)
        scope: AuditScope | None = None
        try:
            if route not in PUBLIC_ROUTES:
                scope = api.open_scope(request, route)
            response = await handler(request)
        except ApiError as exc:
            response = _error(scope, exc, f"{exc.status} {exc.detail}")
        except web.HTTPException as exc:  # the router's 404 and 405
            response = _error(scope, ApiError(exc.status, "http", exc.reason), "")
        except asyncio.CancelledError:
            if scope is not None:
                scope.error = scope.error or f"{CLIENT_LEFT} the client left before the answer"
                with contextlib.suppress(Exception):
                    await api.write_audit(scope)
            raise
        except Exception as exc:
            error, reason = _failure(exc)
            response = _error(scope, error, reason)
        if scope is not None:
            try:
                await api.write_audit(scope)
            except Exception:
                if not response.prepared:
                    response = _json(
                        503,
                        {"error": "audit_failed", "detail": "the audit log cannot be written"},
                    )
        api.metrics.requests.labels(route or "other", str(response.status)).inc()
        return response

    return middleware


def _error(scope: AuditScope | None, exc: ApiError, reason: str) -> web.Response:
    if scope is not None:
        scope.error = reason or f"{exc.status} {exc.detail}"
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _json(exc.status, {"error": exc.code, "detail": exc.detail}, headers)


def build_app(
    pool: RunnerPool,
    options: ApiOptions,
    metrics: ApiMetrics,
    *,
    retention_days: int,
    tokens: Mapping[str, Principal] | None = None,
    tables: TraceTables | None = None,
    audit_pool: RunnerPool | None = None,
    workbench: WorkbenchOptions | None = None,
    job_pool: RunnerPool | None = None,
) -> web.Application:
    """The API application and the workbench beside it; the caller owns (and closes) the
    runner pools. `audit_pool` (default: `pool`) is what `/v1/audit` and the workbench's
    audit page read the log through; `job_pool` (default: `pool`) runs depth-2 jobs."""
    # Imported here: the workbench builds on this module (its audit scope, its answers).
    from tracing.workbench import add_workbench

    auth = TokenAuth(options.token_map() if tokens is None else tokens)
    api = TracerApi(
        pool,
        options,
        auth,
        metrics,
        retention_days=retention_days,
        tables=tables,
        audit_pool=audit_pool,
    )
    wb_options = workbench or WorkbenchOptions()
    middlewares = [_middleware(api)]
    app = web.Application(middlewares=middlewares)
    app[METRICS_KEY] = metrics
    document = openapi_document(retention_days, options)
    add_workbench(app, api, wb_options, document, job_pool=job_pool or pool)

    async def healthz(request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def openapi(request: web.Request) -> web.Response:
        return _json(200, document)

    async def metrics_view(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    # No HEAD on the questions: it would run (and audit) a query to send no answer.
    app.router.add_get("/v1/trace/{person_id}", api.trace, name="trace", allow_head=False)
    app.router.add_get(
        "/v1/premises/{premises_id}/visitors", api.premises, name="premises", allow_head=False
    )
    app.router.add_get("/v1/audit", api.audit, name="audit", allow_head=False)
    app.router.add_get("/openapi.json", openapi, name="openapi")
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/metrics", metrics_view, name="metrics")
    return app
