"""The exposure sites in the JSON API: proposals and decisions with a bearer token
(audited by the API's middleware like every authenticated request), and the public,
unauthenticated list of approved sites (cached, with cache headers; no person or case
id in it, ever)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from aiohttp import web

from ingest.contract import now_ms
from ingest.http import HttpError as ApiError
from ingest.http import json_response as _json
from tracing.api.app import AUDIT_KEY, TracerApi
from tracing.rules import Rule
from tracing.settings import TRACING_ROLES
from tracing.trace import TraceInputError, check_question
from tracing.workbench import exposure_sites as sites
from tracing.workbench.exposure_sites import SiteError, Window
from tracing.workbench.views_other import decide, parse_iso, public_list
from tracing.workbench.views_trace import read
from tracing.workbench.web import Workbench

MAX_BODY: Final = 64 * 1024


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "body_too_large", f"at most {MAX_BODY} bytes")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "body_too_large", f"at most {MAX_BODY} bytes")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ApiError(422, "invalid", "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise ApiError(422, "invalid", "the body must be a JSON object")
    return doc


class SitesApi:
    def __init__(self, wb: Workbench, api: TracerApi) -> None:
        self.wb = wb
        self.api = api

    async def propose(self, request: web.Request) -> web.StreamResponse:
        scope = request[AUDIT_KEY]
        if scope.actor.role not in TRACING_ROLES:
            raise ApiError(403, "forbidden", f"role {scope.actor.role!r} may not propose sites")
        doc = await _body(request)
        try:
            windows, person = await self._windows(scope, doc)
            scope.subject = person
            pid = await read(
                self.wb,
                lambda r: sites.propose(r, windows, scope.actor.name, now_ms(), person),
            )
        except SiteError as exc:
            raise ApiError(exc.status, "refused", exc.detail) from None
        scope.rule = {"proposal": pid, "sites": len(windows)}
        scope.rows = len(windows)
        return _json(201, {"id": pid, "sites": len(windows)})

    async def _windows(self, scope: Any, doc: dict[str, Any]) -> tuple[list[Window], str]:
        person = doc.get("person_id", "")
        if not isinstance(person, str):
            raise SiteError(422, "person_id must be a string")
        if "visits" in doc:
            visits = doc["visits"]
            if not isinstance(visits, list):
                raise SiteError(422, "visits must be a list")
            out = []
            for v in visits:
                if not isinstance(v, dict) or not isinstance(v.get("premises_id"), str):
                    raise SiteError(422, 'a visit is {"premises_id": ..., "from": ..., "to": ...}')
                t0, t1 = parse_iso(v.get("from"), "from"), parse_iso(v.get("to"), "to")
                out.append(Window(v["premises_id"], t0, t1))
            return out, person
        from_ms, to_ms = parse_iso(doc.get("from"), "from"), parse_iso(doc.get("to"), "to")
        scope.period_from, scope.period_to = from_ms, to_ms
        try:
            check_question(person, from_ms, to_ms, self.api.retention_days)
        except TraceInputError as exc:
            raise SiteError(422, str(exc)) from None
        case = await self.api.trace_answer(scope, person, from_ms, to_ms, Rule())
        return [Window(v.premises_id, v.time_from, v.time_to) for v in case.visits], person

    async def decide(self, request: web.Request) -> web.StreamResponse:
        scope = request[AUDIT_KEY]
        pid = scope.subject = request.match_info["proposal_id"]
        decision = request.match_info["decision"]
        scope.rule = {"decision": decision}
        if decision not in sites.DECISIONS:
            raise ApiError(404, "not_found", "approve, reject or withdraw")
        try:
            await decide(self.wb, pid, decision, scope.actor.name, scope.actor.role)
        except SiteError as exc:
            raise ApiError(exc.status, "refused", exc.detail) from None
        return _json(200, {"id": pid, "state": sites.DECISIONS[decision]})

    async def public(self, request: web.Request) -> web.StreamResponse:
        found, read_at = await public_list(self.wb)
        body = {"sites": found, "read_at": read_at}
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        etag = '"' + hashlib.sha256(json.dumps(found).encode()).hexdigest()[:32] + '"'
        headers = {
            "Cache-Control": f"public, max-age={int(self.wb.options.public_cache_s)}",
            "ETag": etag,
            "Access-Control-Allow-Origin": "*",
        }
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=text, content_type="application/json", headers=headers)
