"""The tracer HTTP API as an aiohttp Application, above the `QueryRunner` seam.

    GET /v1/trace/{person_id}?from=ISO&to=ISO[&rule=&window_min=&buffer_min=
        &min_overlap_min=&merge_gap_min=&depth=][&limit=&offset=][&format=json|csv]
    GET /v1/premises/{premises_id}/visitors?from=ISO&to=ISO[&limit=&offset=][&format=]
    GET /v1/audit?since=ISO[&limit=&actor=]                   (role auditor)
    GET /openapi.json, /healthz, /metrics

Bearer tokens map to named tracers with a role: `tracer` may query, `auditor` may read
the audit log, anything else gets 403; an unknown or missing token 401. Input is checked
before anything runs: 422 with a reason (bad time, `from > to`, a period longer than the
retention, a rule parameter out of range). Every query, answered or failed (403 and 422
included), leaves one audit row; a query whose audit row cannot be written fails (503).

Large answers: JSON is paged (`limit`, `offset`; the answer's `page` says the total and
the next offset), CSV is streamed in chunks, the whole answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.auth import BearerTokens
from ingest.http import HttpError as ApiError
from ingest.http import json_response as _json
from tracing.api.metrics import ApiMetrics
from tracing.api.openapi import openapi_document
from tracing.audit import Action, Actor, read_audit
from tracing.formatting import premises_csv, premises_json, trace_csv, trace_json
from tracing.models import PremisesResult, TraceResult
from tracing.rules import Rule, RuleError
from tracing.runner import QueryRunner, RunnerPool
from tracing.settings import ApiOptions, Principal
from tracing.sql import TraceTables
from tracing.trace import TraceInputError, Tracer, parse_time

log = logging.getLogger(__name__)

METRICS_KEY: Final = web.AppKey("metrics", ApiMetrics)
CSV_CHUNK_BYTES: Final = 64 * 1024
T = TypeVar("T")


class TokenAuth(BearerTokens[Principal]):
    """Bearer tokens to principals (the tracer's name and role)."""

    __slots__ = ()

    def principal(self, authorization: str | None) -> Principal | None:
        return self.lookup(authorization)


def _int(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, "invalid", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(422, "invalid", f"{name} must be from {lo} to {hi}")
    return value


def _time(query: Mapping[str, str], name: str) -> int:
    raw = query.get(name)
    if not raw:
        raise ApiError(422, "invalid", f"{name} is required (ISO-8601 with offset)")
    try:
        return parse_time(raw, name)
    except TraceInputError as exc:
        raise ApiError(422, "invalid", str(exc)) from None


def _rule(query: Mapping[str, str]) -> Rule:
    d = Rule()
    try:
        return Rule(
            query.get("rule", d.name),  # type: ignore[arg-type]
            window_min=_int(query, "window_min", d.window_min, 0, 7 * 1440),
            buffer_min=_int(query, "buffer_min", d.buffer_min, 0, 1440),
            min_overlap_min=_int(query, "min_overlap_min", d.min_overlap_min, 0, 1440),
            merge_gap_min=_int(query, "merge_gap_min", d.merge_gap_min, 0, 1440),
            depth=_int(query, "depth", d.depth, 1, 2),
        )
    except RuleError as exc:
        raise ApiError(422, "invalid", str(exc)) from None


def _format(query: Mapping[str, str]) -> str:
    fmt = query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiError(422, "invalid", "format must be json or csv")
    return fmt


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

    def _tracer(self, runner: QueryRunner) -> Tracer:
        from tracing.audit import AuditWriter

        return Tracer(runner, AuditWriter(runner, self.tables), self.retention_days, self.tables)

    async def _in_thread(self, work: Callable[[Tracer], T]) -> T:
        def run() -> T:
            with self.pool.runner() as runner:
                return work(self._tracer(runner))

        return await asyncio.to_thread(run)

    def _principal(self, request: web.Request) -> Principal:
        who = self.auth.principal(request.headers.get("Authorization"))
        if who is None:
            raise ApiError(401, "unauthorized", "missing or unknown bearer token")
        return who

    def _page(self, query: Mapping[str, str]) -> tuple[int, int]:
        limit = _int(query, "limit", self.options.page_size, 1, self.options.max_page_size)
        offset = _int(query, "offset", 0, 0, 2**31)
        return limit, offset

    async def _query(
        self,
        request: web.Request,
        action: Action,
        subject: str,
        run: Callable[[Tracer, Actor, int, int, Rule], TraceResult | PremisesResult],
        with_rule: bool,
    ) -> web.StreamResponse:
        who = self._principal(request)
        actor = Actor(who.name, who.role, "api")
        query = request.query
        try:
            if who.role != "tracer":
                raise ApiError(403, "forbidden", f"role {who.role!r} may not query")
            rule = _rule(query) if with_rule else Rule()
            from_ms, to_ms = _time(query, "from"), _time(query, "to")
            fmt = _format(query)
            limit, offset = self._page(query)
        except ApiError as exc:
            # A refused question is still a question asked: audited.
            reason = f"{exc.status} {exc.detail}"
            await self._in_thread(lambda t: t.refused(actor, action, subject, reason))
            raise
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            result = await self._in_thread(lambda t: run(t, actor, from_ms, to_ms, rule))
        except TraceInputError as exc:  # audited by the Tracer
            raise ApiError(422, "invalid", str(exc)) from None
        finally:
            self.metrics.in_flight.dec()
        self.metrics.query_latency.labels(action).observe(time.perf_counter() - started)
        self.metrics.rows.labels(action).observe(result.rows)
        if fmt == "csv":
            text = trace_csv(result) if isinstance(result, TraceResult) else premises_csv(result)
            return await _stream_csv(request, text, f"{action}-{subject}.csv")
        if isinstance(result, TraceResult):
            page = result.contacts[offset : offset + limit]
            body = trace_json(result, page)
        else:
            page_v = result.visitors[offset : offset + limit]
            body = premises_json(result, page_v)
            page = page_v  # type: ignore[assignment]
        total = result.rows
        nxt = offset + len(page)
        body["page"] = {
            "offset": offset,
            "limit": limit,
            "returned": len(page),
            "total": total,
            "next_offset": nxt if nxt < total else None,
        }
        return _json(200, body)

    async def trace(self, request: web.Request) -> web.StreamResponse:
        person_id = request.match_info["person_id"]
        return await self._query(
            request,
            "trace",
            person_id,
            lambda t, a, f, to, r: t.trace(a, person_id, f, to, r),
            with_rule=True,
        )

    async def premises(self, request: web.Request) -> web.StreamResponse:
        premises_id = request.match_info["premises_id"]
        return await self._query(
            request,
            "trace_premises",
            premises_id,
            lambda t, a, f, to, r: t.trace_premises(a, premises_id, f, to),
            with_rule=False,
        )

    async def audit(self, request: web.Request) -> web.StreamResponse:
        who = self._principal(request)
        if who.role != "auditor":
            raise ApiError(403, "forbidden", f"role {who.role!r} may not read the audit log")
        since = _time(request.query, "since")
        limit = _int(request.query, "limit", 1000, 1, 100_000)
        actor = request.query.get("actor") or None

        def run() -> list[dict[str, object]]:
            with self.audit_pool.runner() as runner:
                return read_audit(runner, since, limit=limit, actor=actor, tables=self.tables)

        rows = await asyncio.to_thread(run)
        from tracing.models import iso_utc

        for r in rows:
            for k in ("at", "period_from", "period_to"):
                r[k] = iso_utc(int(r[k]))  # type: ignore[call-overload]
        return _json(200, {"since": iso_utc(since), "entries": rows})


async def _stream_csv(request: web.Request, text: str, filename: str) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{_safe_filename(filename)}"',
        },
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    data = text.encode("utf-8")
    for i in range(0, len(data), CSV_CHUNK_BYTES):
        await response.write(data[i : i + CSV_CHUNK_BYTES])
    await response.write_eof()
    return response


def _safe_filename(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:100]


def _errors(metrics: ApiMetrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        endpoint = request.match_info.route.name or "other"
        try:
            response = await handler(request)
        except ApiError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            response = _json(exc.status, {"error": exc.code, "detail": exc.detail}, headers)
        except web.HTTPException as exc:
            response = _json(exc.status, {"error": "http", "detail": exc.reason})
        except Exception as exc:
            log.exception("query failed")
            response = _json(503, {"error": "query_failed", "detail": f"{type(exc).__name__}"})
        metrics.requests.labels(endpoint, str(response.status)).inc()
        return response

    return middleware


def build_app(
    pool: RunnerPool,
    options: ApiOptions,
    metrics: ApiMetrics,
    *,
    retention_days: int,
    tokens: Mapping[str, Principal] | None = None,
    tables: TraceTables | None = None,
    audit_pool: RunnerPool | None = None,
) -> web.Application:
    """The API application; the caller owns (and closes) the runner pools."""
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
    app = web.Application(middlewares=[_errors(metrics)])
    app[METRICS_KEY] = metrics
    document = openapi_document(retention_days, options)

    async def healthz(request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def openapi(request: web.Request) -> web.Response:
        return _json(200, document)

    async def metrics_view(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_get("/v1/trace/{person_id}", api.trace, name="trace")
    app.router.add_get("/v1/premises/{premises_id}/visitors", api.premises, name="premises")
    app.router.add_get("/v1/audit", api.audit, name="audit")
    app.router.add_get("/openapi.json", openapi, name="openapi")
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/metrics", metrics_view, name="metrics")
    return app
