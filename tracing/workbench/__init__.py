"""The tracers' workbench: server-rendered pages beside the tracer API, on its port, with
its tokens, roles and audit log (Vietnamese first, English on request, local times, no
asset from elsewhere, the core search without JavaScript).

    GET  /login, POST /login, POST /logout          sign-in with an API token: a session
    GET  /trace?person=&from=&to=&rule=&depth=...   the case view (depth 2: a job)
    GET  /trace/export?...&format=csv|xlsx          the contacts as a file
    GET  /jobs/{id}, POST /jobs/{id}/cancel         a depth-2 job: progress, answer, cancel
    GET  /premises/{id}?from=&to=                   who scanned there, scans per hour, map
    GET  /cases, POST /cases, POST /followup        case records and follow-up statuses
    GET  /sites, POST /sites/propose, POST /sites/{id}/{approve|reject|withdraw}
    GET  /audit                                     the audit log (role auditor)
    GET  /exposure-sites, GET /v1/exposure-sites    approved exposure sites (public)
    POST /v1/exposure-sites[/{id}/{decision}]       proposals and decisions (bearer token)
    GET  /docs/api                                  the API's OpenAPI document, readable
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from aiohttp import web

from sinks.schema import MIGRATIONS
from tracing.api.app import TracerApi
from tracing.runner import RunnerPool
from tracing.settings import TRACING_ROLES, WorkbenchOptions
from tracing.workbench import sites_api, views_other, views_trace
from tracing.workbench.jobs import Jobs
from tracing.workbench.web import HERE, Route, Workbench

__all__ = ["WORKBENCH_SCHEMA", "Workbench", "add_workbench"]

# The migration that makes the workbench's tables: `scantrace api` refuses an older schema.
WORKBENCH_SCHEMA = next(m.version for m in MIGRATIONS if m.name == "workbench")

AUDITOR = frozenset({"auditor"})
ANYONE = frozenset({"tracer", "supervisor", "auditor"})


def add_workbench(
    app: web.Application,
    api: TracerApi,
    options: WorkbenchOptions,
    openapi: Mapping[str, object],
    *,
    job_pool: RunnerPool,
) -> Workbench:
    jobs = Jobs(
        job_pool,
        max_jobs=options.max_jobs,
        max_rows=options.job_max_rows,
        tables=api.tables,
    )
    wb = Workbench(api, options, jobs, openapi)

    def page(
        method: str,
        path: str,
        name: str,
        handler: Callable[..., Any],
        route: Route,
    ) -> None:
        app.router.add_route(method, path, partial(handler, wb), name=f"wb.{name}")
        wb.routes[f"wb.{name}"] = route
        api.web_routes.add(f"wb.{name}")

    public = Route(None)
    page("GET", "/", "index", views_other.index, public)
    page("GET", "/login", "login_form", views_other.login_form, public)
    page("POST", "/login", "login", views_other.login, public)
    page("GET", "/exposure-sites", "public_sites", views_other.public_page, public)
    page("GET", "/docs/api", "api_docs", views_other.api_docs, public)
    page("POST", "/logout", "logout", views_other.logout, Route("sign_out", ANYONE))
    page("GET", "/trace", "trace", views_trace.trace, Route("trace"))
    page("GET", "/trace/export", "export", views_trace.export_trace, Route("export"))
    page("GET", "/jobs/{job_id}", "job", views_trace.job_page, Route("trace_job"))
    page(
        "GET",
        "/jobs/{job_id}/status",
        "job_status",
        views_trace.job_status,
        Route("trace_job", audited=False),
    )
    page("POST", "/jobs/{job_id}/cancel", "job_cancel", views_trace.job_cancel, Route("trace_job"))
    page(
        "GET",
        "/premises/{premises_id}",
        "premises",
        views_trace.premises_page,
        Route("trace_premises"),
    )
    page("GET", "/cases", "cases", views_other.cases_page, Route("cases"))
    page("POST", "/cases", "case_create", views_other.case_create, Route("case_create"))
    page("POST", "/followup", "followup", views_other.set_status, Route("followup"))
    page("GET", "/sites", "sites", views_other.sites_page, Route("page", TRACING_ROLES))
    page("POST", "/sites/propose", "site_propose", views_other.site_propose, Route("site_propose"))
    page(
        "POST",
        "/sites/{proposal_id}/{decision}",
        "site_decide",
        views_other.site_decide,
        Route("site_decide"),
    )
    page("GET", "/audit", "audit", views_other.audit_page, Route("read_audit", AUDITOR))
    app.router.add_static("/static", HERE / "static", name="wb.static", append_version=False)
    wb.routes["wb.static"] = public
    api.web_routes.add("wb.static")

    endpoints = sites_api.SitesApi(wb, api)
    app.router.add_post("/v1/exposure-sites", endpoints.propose, name="exposure_propose")
    app.router.add_post(
        "/v1/exposure-sites/{proposal_id}/{decision}", endpoints.decide, name="exposure_decide"
    )
    app.router.add_get(
        "/v1/exposure-sites", endpoints.public, name="exposure_public", allow_head=False
    )
    app.middlewares.append(wb.middleware())

    async def sweep(app: web.Application) -> Any:
        import asyncio
        import contextlib

        async def loop() -> None:
            while True:
                await asyncio.sleep(60)
                wb.sessions.sweep()

        task = asyncio.get_running_loop().create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        jobs.close()

    app.cleanup_ctx.append(sweep)
    return wb
