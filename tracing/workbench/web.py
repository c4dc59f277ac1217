"""The workbench's plumbing: who is signed in, the audit row of every page and change,
CSRF, rendering (Jinja2, autoescaped), languages and the security headers.

Every route of the workbench is public (the sign-in form, the public exposure sites, the
static files, the API's documentation) or needs a session: without one a request is sent
to `/login` and nothing else happens. A request with a session leaves exactly one audit
row (channel `web`), written before its answer leaves, whatever happens (a refused CSRF
token, a 403, a failed query); a failure to write it turns the answer into 503. The one
exception is a depth-2 job's progress poll (`job_status`): it shows no personal data (a
state and counts) and would write a row every few seconds; the job's pages are audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jinja2
from aiohttp import web

from ingest.contract import now_ms
from ingest.errors import ScantraceError, loggable
from tracing.api.app import AUDIT_KEY, AuditScope, TracerApi
from tracing.audit import Action, Actor
from tracing.report.i18n import CATEGORIES, Labels
from tracing.settings import TRACING_ROLES, WorkbenchOptions
from tracing.trace import error_text
from tracing.workbench import i18n, localtime
from tracing.workbench.jobs import Jobs
from tracing.workbench.sessions import (
    LANG_COOKIE,
    SESSION_COOKIE,
    Session,
    SessionStore,
    Throttle,
    is_tls,
    same,
    set_cookie,
)

log = logging.getLogger(__name__)

HERE: Final = Path(__file__).parent
SESSION_KEY: Final = web.RequestKey("wb_session", Session)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Scripts and styles from this server only; no frames; forms post here only. Images may
# also come from a configured tile server (`img_src`).
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:{tiles};"
    " frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)


class PageError(ScantraceError):
    """An answer other than the page: status and a message key of `i18n`."""

    def __init__(self, status: int, key: str, detail: str = "") -> None:
        super().__init__(detail or key)
        self.status = status
        self.key = key
        self.detail = detail


@dataclass
class Route:
    """A workbench route: its audit action (None: public, no session needed)."""

    action: Action | None
    roles: frozenset[str] = TRACING_ROLES
    audited: bool = True


@dataclass
class Workbench:
    api: TracerApi
    options: WorkbenchOptions
    jobs: Jobs
    openapi: Mapping[str, object]
    routes: dict[str, Route] = field(default_factory=dict)
    throttle: Throttle = field(default_factory=Throttle)
    sessions: SessionStore = field(init=False)
    env: jinja2.Environment = field(init=False)
    public_cache: dict[str, tuple[float, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sessions = SessionStore(
            self.options.session_idle_s,
            self.options.max_sessions,
            on_end=lambda s: self.jobs.drop(s.jobs),
        )
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        tiles = self.options.map_tile_url
        origin = ""
        if tiles:
            parts = urllib.parse.urlsplit(tiles)
            origin = f" {parts.scheme}://{parts.netloc}"
        self.csp = CSP.format(tiles=origin)

    # -- sessions and requests ---------------------------------------------------------

    def tls(self, request: web.Request) -> bool:
        return is_tls(request, self.options.proxies())

    def session(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE))

    def lang(self, request: web.Request) -> str:
        asked = request.query.get("lang") or request.cookies.get(LANG_COOKIE, "")
        return asked if asked in i18n.LANGS else "vi"

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            name = request.match_info.route.name or ""
            route = self.routes.get(name)
            if route is None:
                return await handler(request)
            if route.action is None:
                response = await self._public(request, handler)
            else:
                response = await self._signed_in(request, handler, route)
            self._headers(request, response)
            return response

        return middleware

    async def _public(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except PageError as exc:
            return self.error_page(request, exc)
        except Exception as exc:
            log.error("workbench page failed: %s", loggable(exc))
            return self.error_page(request, PageError(503, "failed", type(exc).__name__))

    async def _signed_in(
        self, request: web.Request, handler: Handler, route: Route
    ) -> web.StreamResponse:
        session = self.session(request)
        if session is None:
            target = request.path_qs if request.method == "GET" else "/"
            return redirect("/login?" + urllib.parse.urlencode({"next": target}))
        request[SESSION_KEY] = session
        who = session.principal
        scope = AuditScope(Actor(who.name, who.role, "web"), route.action or "page", "", now_ms())
        if route.action == "page":
            scope.subject = request.path[:256]
        request[AUDIT_KEY] = scope
        try:
            if session.principal.role not in route.roles:
                raise PageError(403, "forbidden", f"role {who.role!r}")
            if request.method == "POST":
                form = await request.post()
                if not same(str(form.get("csrf", "")), session.csrf):
                    raise PageError(403, "csrf", "missing or wrong CSRF token")
            response = await handler(request)
        except PageError as exc:
            scope.error = f"{exc.status} {exc.detail or exc.key}"
            response = self.error_page(request, exc)
        except asyncio.CancelledError:
            scope.error = scope.error or "499 the client left before the answer"
            if route.audited:
                with contextlib.suppress(Exception):
                    await self.api.write_audit(scope)
            raise
        except Exception as exc:
            log.error("workbench page failed: %s", loggable(exc))
            scope.error = f"503 {error_text(exc)}"
            response = self.error_page(request, PageError(503, "failed", type(exc).__name__))
        if route.audited:
            try:
                await self.api.write_audit(scope)
            except Exception:
                response = self.error_page(request, PageError(503, "audit_failed"))
        return response

    def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        h = response.headers
        h.setdefault("Content-Security-Policy", self.csp)
        h.setdefault("X-Content-Type-Options", "nosniff")
        # Addresses of these pages hold person ids: never sent to another site.
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Cache-Control", "no-store")
        lang = request.query.get("lang")
        if lang in i18n.LANGS and not response.prepared:
            set_cookie(response, LANG_COOKIE, lang, secure=self.tls(request), max_age=365 * 86400)

    # -- rendering ---------------------------------------------------------------------

    def context(self, request: web.Request, **values: Any) -> dict[str, Any]:
        lang = self.lang(request)
        session = request.get(SESSION_KEY)
        t = i18n.translator(lang)
        labels = Labels("vi" if lang == "vi" else "en")
        return {
            "lang": lang,
            "t": t,
            "session": session,
            "csrf": session.csrf if session else "",
            "path": request.path,
            "switch_url": switch_lang(request, "en" if lang == "vi" else "vi"),
            "time": lambda ms, seconds=False: localtime.text(ms, lang, seconds=seconds),
            "number": labels.integer,
            "category": lambda key: CATEGORIES["vi" if lang == "vi" else "en"].get(key, key),
            "url": url,
            **values,
        }

    def render(
        self, request: web.Request, template: str, status: int = 200, **values: Any
    ) -> web.Response:
        html = self.env.get_template(template).render(self.context(request, **values))
        return web.Response(status=status, text=html, content_type="text/html", charset="utf-8")

    def error_page(self, request: web.Request, exc: PageError) -> web.Response:
        return self.render(request, "error.html", status=exc.status, error=exc)

    def scope(self, request: web.Request) -> AuditScope:
        return request[AUDIT_KEY]


def redirect(location: str, status: int = 303) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


def local_path(target: str, default: str = "/trace") -> str:
    """`target` if it is a path on this server (never another site's address)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def url(path: str, **query: object) -> str:
    """`path` with a query string of the values that are not None or empty."""
    kept = [(k, str(v)) for k, v in query.items() if v is not None and v != ""]
    return path + ("?" + urllib.parse.urlencode(kept) if kept else "")


def switch_lang(request: web.Request, lang: str) -> str:
    query = [(k, v) for k, v in request.query.items() if k != "lang"]
    return request.path + "?" + urllib.parse.urlencode([*query, ("lang", lang)])


def field_text(form: Mapping[str, object], name: str, most: int = 256) -> str:
    value = form.get(name, "")
    return value.strip()[:most] if isinstance(value, str) else ""
