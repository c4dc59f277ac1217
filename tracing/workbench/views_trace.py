"""The case view (`/trace`), its exports, depth-2 jobs, and the premises view."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from ingest.http import HttpError as ApiError
from ingest.premises import Premises
from tracing.models import TraceResult
from tracing.rules import Rule
from tracing.runner import QueryRunner
from tracing.trace import TraceInputError, check_question, parse_int
from tracing.workbench import export, followup, i18n, localtime, maps, queries
from tracing.workbench.contacts import Status, anchors, group
from tracing.workbench.followup import CaseRecord
from tracing.workbench.forms import TraceForm, read_form, rule_fields, rule_names
from tracing.workbench.jobs import Job, JobTooLarge
from tracing.workbench.web import SESSION_KEY, PageError, Workbench, redirect, url

CSV_TYPE: Final = "text/csv; charset=utf-8"
XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass
class CaseContext:
    """What the case view shows besides the answer (read in one go)."""

    record: CaseRecord | None
    statuses: dict[str, Status]
    confirmed: frozenset[str]
    registry: dict[str, Premises]


def _case_context(runner: QueryRunner, result: TraceResult) -> CaseContext:
    record = followup.case_of(runner, result.case)
    statuses = followup.statuses(runner, record.case_id) if record else {}
    confirmed = followup.confirmed_persons(runner) - {result.case}
    registry = queries.premises_rows(runner, [v.premises_id for v in result.visits])
    return CaseContext(record, statuses, confirmed, registry)


async def read(wb: Workbench, work: Any) -> Any:
    """`work(runner)` in a worker thread on a connection of the API's pool."""

    def run() -> Any:
        with wb.api.pool.runner() as runner:
            return work(runner)

    return await asyncio.to_thread(run)


def _form_page(
    wb: Workbench, request: web.Request, form: TraceForm, status: int = 200
) -> web.Response:
    return wb.render(
        request,
        "trace.html",
        status=status,
        form=form,
        rule_fields=rule_fields(),
        rule_names=rule_names(),
        result=None,
    )


def _scope_question(wb: Workbench, request: web.Request, form: TraceForm) -> None:
    scope = wb.scope(request)
    scope.subject = form.person
    scope.period_from, scope.period_to = form.from_ms, form.to_ms
    scope.rule = form.rule.echo()


async def trace(wb: Workbench, request: web.Request) -> web.StreamResponse:
    form = read_form(request.query, wb.api.retention_days)
    scope = wb.scope(request)
    if not form.person:
        scope.action, scope.subject = "page", "/trace"
        return _form_page(wb, request, form)
    _scope_question(wb, request, form)
    if form.errors:
        scope.error = "422 " + "; ".join(form.errors)
        return _form_page(wb, request, form, 422)
    if form.rule.depth == 2:
        job = _start_job(wb, request, form)
        scope.action = "trace_job"
        scope.rule = {**scope.rule, "job": job.job_id}
        return redirect(f"/jobs/{job.job_id}")
    try:
        result = await wb.api.trace_answer(scope, form.person, form.from_ms, form.to_ms, form.rule)
    except ApiError as exc:
        raise PageError(
            exc.status, "too_large" if exc.code == "too_large" else "failed", exc.detail
        ) from None
    return await result_page(wb, request, form, result, None)


def _start_job(wb: Workbench, request: web.Request, form: TraceForm) -> Job:
    session = request[SESSION_KEY]
    job = Job(
        job_id=secrets.token_hex(6),
        person_id=form.person,
        from_ms=form.from_ms,
        to_ms=form.to_ms,
        rule=form.rule,
    )
    try:
        return wb.jobs.start(session.jobs, job)
    except JobTooLarge as exc:
        raise PageError(429, "too_many_jobs", str(exc)) from None


def _page_number(request: web.Request) -> int:
    raw = request.query.get("page", "1")
    try:
        return parse_int(raw, "page", 1, 1_000_000)
    except TraceInputError:
        raise PageError(422, "bad_page") from None


async def result_page(
    wb: Workbench,
    request: web.Request,
    form: TraceForm,
    result: TraceResult,
    job: Job | None,
) -> web.Response:
    ctx: CaseContext = await read(wb, lambda r: _case_context(r, result))
    grouped = group(result, ctx.statuses, ctx.confirmed)
    size = wb.options.page_rows
    page = _page_number(request)
    pages = max(1, -(-result.rows // size))
    page = min(page, pages)
    lo, hi = (page - 1) * size, page * size
    wb.scope(request).rows = max(0, min(hi, result.rows) - lo)
    base = f"/jobs/{job.job_id}" if job else "/trace"
    link = (lambda **kw: url(base, **kw)) if job else (lambda **kw: url(base, **form.query(**kw)))
    return wb.render(
        request,
        "trace.html" if job is None else "job.html",
        form=form,
        rule_fields=rule_fields(),
        rule_names=rule_names(),
        result=result,
        job=job,
        grouped=grouped,
        anchors=anchors(grouped),
        case=ctx,
        lo=lo,
        hi=hi,
        page=page,
        pages=pages,
        link=link,
        export_link=_export_link(form, job),
        map=_map(wb, result, ctx.registry, None),
        strips=_strips(result),
        question=form.query(),
    )


def _export_link(form: TraceForm, job: Job | None) -> Any:
    def link(fmt: str) -> str:
        if job:
            return url("/trace/export", job=job.job_id, format=fmt)
        return url("/trace/export", **form.query(format=fmt))

    return link


def _map(
    wb: Workbench,
    result: TraceResult,
    registry: dict[str, Premises],
    current: str | None,
) -> maps.Map | None:
    places: list[maps.Place] = []
    seen: set[str] = set()
    for i, v in enumerate(result.visits, start=1):
        p = registry.get(v.premises_id)
        if p is None or p.lat is None or p.lon is None or v.premises_id in seen:
            continue
        seen.add(v.premises_id)
        places.append(
            maps.Place(v.premises_id, p.name, p.lat, p.lon, str(i), v.premises_id == current)
        )
    return maps.draw_map(places, wb.options.map_tile_url)


def _strips(result: TraceResult) -> list[tuple[int, list[maps.Span]]]:
    spans = [(v.time_from, v.time_to, str(i)) for i, v in enumerate(result.visits, start=1)]
    out = []
    for day in localtime.days(result.period_from, result.period_to):
        out.append((day, maps.day_strip(day, spans)))
    return out


async def job_page(wb: Workbench, request: web.Request) -> web.StreamResponse:
    job = _job(request)
    scope = wb.scope(request)
    scope.subject = job.person_id
    scope.period_from, scope.period_to = job.from_ms, job.to_ms
    scope.rule = {**job.rule.echo(), "job": job.job_id}
    form = read_form(_job_query(job), wb.api.retention_days)
    if job.result is None:
        return wb.render(request, "job.html", job=job, result=None, form=form)
    return await result_page(wb, request, form, job.result, job)


def _job_query(job: Job) -> Any:
    from multidict import MultiDict

    form = TraceForm({}, job.person_id, job.from_ms, job.to_ms, job.rule)
    return MultiDict(form.query())


def _job(request: web.Request) -> Job:
    session = request[SESSION_KEY]
    job: Job | None = session.jobs.get(request.match_info["job_id"])
    if job is None:  # another session's job, or one that ended with its session
        raise PageError(404, "no_job")
    return job


async def job_status(wb: Workbench, request: web.Request) -> web.StreamResponse:
    job = _job(request)
    return web.Response(
        text=json.dumps(job.progress()),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def job_cancel(wb: Workbench, request: web.Request) -> web.StreamResponse:
    job = _job(request)
    scope = wb.scope(request)
    scope.subject = job.person_id
    scope.rule = {"job": job.job_id, "cancel": True}
    wb.jobs.cancel(job)
    return redirect(f"/jobs/{job.job_id}")


async def export_trace(wb: Workbench, request: web.Request) -> web.StreamResponse:
    fmt = request.query.get("format", "csv")
    if fmt not in ("csv", "xlsx"):
        raise PageError(422, "bad_format")
    scope = wb.scope(request)
    if "job" in request.query:
        job = request[SESSION_KEY].jobs.get(request.query["job"])
        if job is None or job.result is None:
            raise PageError(404, "no_job")
        result = job.result
        scope.subject, scope.period_from, scope.period_to = job.person_id, job.from_ms, job.to_ms
    else:
        form = read_form(request.query, wb.api.retention_days)
        if not form.asked:
            raise PageError(422, "bad_question", "; ".join(form.errors))
        _scope_question(wb, request, form)
        try:
            result = await wb.api.trace_answer(
                scope, form.person, form.from_ms, form.to_ms, form.rule
            )
        except ApiError as exc:
            raise PageError(exc.status, "failed", exc.detail) from None
    scope.rule = {**result.rule.echo(), "format": fmt}
    ctx: CaseContext = await read(wb, lambda r: _case_context(r, result))
    grouped = group(result, ctx.statuses, ctx.confirmed)
    t = i18n.translator(wb.lang(request))
    cells = export.rows(grouped, t)
    scope.rows = len(cells)
    name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in result.case)[:60]
    if fmt == "csv":
        body, ctype = export.to_csv(export.header(t), cells), CSV_TYPE
    else:
        body = await asyncio.to_thread(export.to_xlsx, export.header(t), cells, t("export.sheet"))
        ctype = XLSX_TYPE
    return web.Response(
        body=body,
        headers={
            "Content-Type": ctype,
            "Content-Disposition": f'attachment; filename="tiep-xuc-{name}.{fmt}"',
        },
    )


async def premises_page(wb: Workbench, request: web.Request) -> web.StreamResponse:
    premises_id = request.match_info["premises_id"]
    form = read_form(request.query, wb.api.retention_days)
    scope = wb.scope(request)
    scope.subject = premises_id
    from_ms = localtime.parse_local(form.values["from"]) if not form.errors else 0
    to_ms = localtime.parse_local(form.values["to"]) if not form.errors else 0
    scope.period_from, scope.period_to = from_ms, to_ms
    try:
        check_question(premises_id, from_ms, to_ms, wb.api.retention_days)
    except TraceInputError as exc:
        raise PageError(422, "bad_question", str(exc)) from None
    try:
        answer = await wb.api.premises_answer(scope, premises_id, from_ms, to_ms)
    except ApiError as exc:
        raise PageError(exc.status, "failed", exc.detail) from None
    scope.rows = answer.rows
    case_map = None
    if form.asked:  # came from a case: its visited premises on the map (read: audited)
        scope.rule = {"case": form.person}
        rule = Rule(form.rule.name, **{f.name: getattr(form.rule, f.name) for f in rule_fields()})
        case = await wb.api.trace_answer(scope, form.person, form.from_ms, form.to_ms, rule)
        ids = [v.premises_id for v in case.visits]
        registry = await read(wb, lambda r: queries.premises_rows(r, [*ids, premises_id]))
        case_map = _map(wb, case, registry, premises_id)
    else:
        registry = await read(wb, lambda r: queries.premises_rows(r, [premises_id]))
    hours = await read(wb, lambda r: queries.scans_per_hour(r, premises_id, from_ms, to_ms))
    return wb.render(
        request,
        "premises.html",
        premises_id=premises_id,
        premises=registry.get(premises_id),
        answer=answer,
        chart=maps.hourly_chart(hours, from_ms, to_ms),
        map=case_map,
        form=form,
        from_ms=from_ms,
        to_ms=to_ms,
    )
