"""Sign-in and sign-out, case records and follow-up, exposure sites (the tracers' and
the public pages), the audit log for auditors, and the API's documentation."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from aiohttp import web

from ingest.contract import now_ms
from tracing.api.app import AuditScope
from tracing.audit import Actor
from tracing.models import iso_utc
from tracing.trace import TraceInputError, check_question, parse_time
from tracing.workbench import exposure_sites as sites
from tracing.workbench import followup, localtime
from tracing.workbench.exposure_sites import SiteError, Window
from tracing.workbench.forms import read_form
from tracing.workbench.sessions import (
    LOGIN_COOKIE,
    LOGIN_COOKIE_S,
    SESSION_COOKIE,
    new_token,
    same,
    set_cookie,
)
from tracing.workbench.views_trace import read
from tracing.workbench.web import (
    SESSION_KEY,
    PageError,
    Workbench,
    field_text,
    local_path,
    redirect,
)

MAX_AUDIT_ROWS: Final = 2000
PUBLIC_KEY: Final = "sites"


async def index(wb: Workbench, request: web.Request) -> web.StreamResponse:
    return redirect("/trace")


def _login_form(
    wb: Workbench, request: web.Request, status: int = 200, error: str = ""
) -> web.Response:
    token = new_token()
    response = wb.render(
        request,
        "login.html",
        status=status,
        login_csrf=token,
        error=error,
        next=local_path(request.query.get("next", ""), ""),
    )
    set_cookie(response, LOGIN_COOKIE, token, secure=wb.tls(request), max_age=LOGIN_COOKIE_S)
    return response


async def login_form(wb: Workbench, request: web.Request) -> web.StreamResponse:
    return _login_form(wb, request)


async def login(wb: Workbench, request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not same(field_text(form, "csrf", 200), request.cookies.get(LOGIN_COOKIE, "")):
        return _login_form(wb, request, 403, "csrf")
    who_at = request.remote or ""
    if wb.throttle.blocked(who_at):
        return _login_form(wb, request, 429, "throttled")
    token = field_text(form, "token", 4096)
    principal = wb.api.auth.principal(f"Bearer {token}") if token else None
    if principal is None:
        wb.throttle.failed(who_at)
        return _login_form(wb, request, 401, "bad_token")
    wb.throttle.succeeded(who_at)
    old = request.cookies.get(SESSION_COOKIE)
    if old:  # a new session id at every sign-in (no fixation)
        wb.sessions.end(old)
    session = wb.sessions.create(principal)
    landing = "/audit" if principal.role == "auditor" else "/trace"
    response = redirect(local_path(field_text(form, "next", 2000), landing))
    set_cookie(response, SESSION_COOKIE, session.sid, secure=wb.tls(request))
    response.del_cookie(LOGIN_COOKIE, path="/")
    scope = AuditScope(Actor(principal.name, principal.role, "web"), "sign_in", "", now_ms())
    try:
        await wb.api.write_audit(scope)
    except Exception:  # no session without its audit row
        wb.sessions.end(session.sid)
        raise PageError(503, "audit_failed") from None
    return response


async def logout(wb: Workbench, request: web.Request) -> web.StreamResponse:
    session = request[SESSION_KEY]
    wb.sessions.end(session.sid)
    response = redirect("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


# -- cases and follow-up -------------------------------------------------------------


async def cases_page(wb: Workbench, request: web.Request) -> web.StreamResponse:
    def work(runner: Any) -> tuple[list[followup.CaseRecord], dict[str, dict[str, int]]]:
        return followup.list_cases(runner), followup.status_counts(runner)

    records, counts = await read(wb, work)
    wb.scope(request).rows = len(records)
    return wb.render(
        request,
        "cases.html",
        records=records,
        counts=counts,
        statuses=followup.STATUSES,
        today=f"{localtime.local(now_ms()):%Y-%m-%d}",
        form=read_form(request.query, wb.api.retention_days),
    )


async def case_create(wb: Workbench, request: web.Request) -> web.StreamResponse:
    form = await request.post()
    person = field_text(form, "person_id", 64)
    scope = wb.scope(request)
    scope.subject = person
    try:
        check_question(person, 0, 0, wb.api.retention_days)
        day = localtime.parse_local_date(field_text(form, "confirmed_on", 20))
    except (TraceInputError, localtime.LocalTimeError) as exc:
        raise PageError(422, "bad_case", str(exc)) from None
    notes = field_text(form, "notes", followup.MAX_NOTES)
    at, actor = now_ms(), request[SESSION_KEY].principal.name
    case_id = await read(wb, lambda r: followup.create_case(r, person, day, notes, actor, at))
    scope.rule = {"case_id": case_id, "confirmed_on": day.isoformat()}
    return redirect(local_path(field_text(form, "back", 2000), "/cases"))


async def set_status(wb: Workbench, request: web.Request) -> web.StreamResponse:
    form = await request.post()
    case_id = field_text(form, "case_id", 64)
    person = field_text(form, "person_id", 64)
    status = field_text(form, "status", 32)
    scope = wb.scope(request)
    scope.subject = person
    scope.rule = {"case_id": case_id, "status": status}
    if status not in followup.STATUSES or not person:
        raise PageError(422, "bad_status")
    actor = request[SESSION_KEY].principal.name

    def work(runner: Any) -> bool:
        if followup.get_case(runner, case_id) is None:
            return False
        followup.set_status(runner, case_id, person, status, actor, now_ms())
        return True

    if not await read(wb, work):
        raise PageError(404, "no_case")
    return redirect(local_path(field_text(form, "back", 2000), "/cases"))


# -- exposure sites --------------------------------------------------------------------


async def sites_page(wb: Workbench, request: web.Request) -> web.StreamResponse:
    found = await read(wb, lambda r: sites.proposals(r, with_cases=True))
    wb.scope(request).rows = len(found)
    return wb.render(request, "sites.html", proposals=found)


def visits_of(form: Any) -> list[Window]:
    """Checked visits of the case view: `premises|from ms|to ms` each."""
    out = []
    for raw in form.getall("visit", []):
        premises, _, rest = str(raw).partition("|")
        t0, _, t1 = rest.partition("|")
        if not (t0.isdigit() and t1.isdigit()):
            raise PageError(422, "bad_visit")
        out.append(Window(premises, int(t0), int(t1)))
    return out


async def site_propose(wb: Workbench, request: web.Request) -> web.StreamResponse:
    form = await request.post()
    person = field_text(form, "person_id", 64)
    scope = wb.scope(request)
    scope.subject = person
    windows = visits_of(form)
    actor = request[SESSION_KEY].principal.name
    try:
        pid = await read(wb, lambda r: sites.propose(r, windows, actor, now_ms(), person))
    except SiteError as exc:
        raise PageError(exc.status, "site_refused", exc.detail) from None
    scope.rule = {"proposal": pid, "sites": len(windows)}
    return redirect("/sites")


async def site_decide(wb: Workbench, request: web.Request) -> web.StreamResponse:
    pid = request.match_info["proposal_id"]
    decision = request.match_info["decision"]
    scope = wb.scope(request)
    scope.subject = pid
    scope.rule = {"decision": decision}
    if decision not in sites.DECISIONS:
        raise PageError(404, "not_found")
    who = request[SESSION_KEY].principal
    try:
        await decide(wb, pid, decision, who.name, who.role)
    except SiteError as exc:
        raise PageError(exc.status, "site_refused", exc.detail) from None
    return redirect("/sites")


async def decide(wb: Workbench, pid: str, decision: str, actor: str, role: str) -> None:
    """A decision on a proposal (the workbench's and the API's); raises `SiteError`."""

    def work(runner: Any) -> None:
        p = sites.get_proposal(runner, pid)
        if p is None:
            raise SiteError(404, "no such proposal")
        sites.decide(runner, p, decision, actor, role, now_ms())  # type: ignore[arg-type]

    await read(wb, work)
    wb.public_cache.clear()


async def public_list(wb: Workbench) -> tuple[list[dict[str, object]], str]:
    """The approved sites and when they were read, kept `public_cache_s` (the public
    endpoint is not authenticated: its load must not reach ClickHouse per request)."""
    cached = wb.public_cache.get(PUBLIC_KEY)
    now = time.monotonic()
    if cached is not None and now - cached[0] < wb.options.public_cache_s:
        return cached[1]  # type: ignore[no-any-return]
    since = now_ms() - wb.options.public_days * localtime.DAY_MS
    found = await read(wb, lambda r: sites.public_sites(r, since))
    value = (found, iso_utc(now_ms()))
    wb.public_cache[PUBLIC_KEY] = (now, value)
    return value


async def public_page(wb: Workbench, request: web.Request) -> web.StreamResponse:
    found, _ = await public_list(wb)
    response = wb.render(request, "public_sites.html", sites=found)
    # the same page for everyone (no session shown), but in the reader's language
    response.headers["Cache-Control"] = f"public, max-age={int(wb.options.public_cache_s)}"
    response.headers["Vary"] = "Cookie"
    return response


# -- the audit log and the API's documentation ------------------------------------------


async def audit_page(wb: Workbench, request: web.Request) -> web.StreamResponse:
    scope = wb.scope(request)
    raw = request.query.get("since", "")
    try:
        since = localtime.parse_local(raw) if raw else now_ms() - localtime.DAY_MS
    except localtime.LocalTimeError:
        raise PageError(422, "bad_time") from None
    actor = request.query.get("actor", "").strip()[:128] or None
    scope.subject = actor or ""
    scope.period_from, scope.period_to = since, scope.at
    rows = await asyncio.to_thread(wb.api.read_audit, since, MAX_AUDIT_ROWS, actor)
    scope.rows = len(rows)
    return wb.render(
        request,
        "audit.html",
        rows=rows,
        since=localtime.input_value(since),
        actor=actor or "",
    )


async def api_docs(wb: Workbench, request: web.Request) -> web.StreamResponse:
    return wb.render(request, "api_docs.html", doc=wb.openapi)


def parse_iso(value: object, name: str) -> int:
    if not isinstance(value, str):
        raise SiteError(422, f"{name} must be ISO-8601 with an offset")
    try:
        return parse_time(value, name)
    except TraceInputError as exc:
        raise SiteError(422, str(exc)) from None
