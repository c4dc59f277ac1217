"""The workbench on the real ClickHouse through HTTP, as a browser without JavaScript
uses it: sessions, CSRF, roles, the case view against the API's answer, follow-up, the
four-eyes exposure sites and their public list, depth-2 jobs, and one audit row for every
page view and change."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from workbench_kit import Env, make_env, sign_in

from sinks.clickhouse_settings import ClickHouseSettings
from tracing.models import iso_utc

PERSON = re.compile(r'<span class="pid person">([^<]+)</span>')


@pytest.fixture
def env(clickhouse_settings: ClickHouseSettings) -> Iterator[Env]:
    yield from make_env(clickhouse_settings)


Body = Callable[..., Awaitable[None]]


def run(env: Env, body: Body, users: int = 1) -> None:
    async def main() -> None:
        server = TestServer(env.app)
        await server.start_server()
        clients = [TestClient(server) for _ in range(users)]
        try:
            for c in clients:
                await c.start_server()
            await body(*clients)
        finally:
            for c in clients:
                await c.close()
            await server.close()

    asyncio.run(main())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def api_contacts(c: TestClient[Any, Any], env: Env, rule: str, depth: int = 1) -> set[str]:
    r = await c.get(
        f"/v1/trace/{env.case}",
        params={
            "from": iso_utc(env.from_ms),
            "to": iso_utc(env.to_ms),
            "rule": rule,
            "depth": str(depth),
            "limit": "10000",
        },
        headers=bearer("tok-tracer"),
    )
    assert r.status == 200, await r.text()
    return {x["person_id"] for x in (await r.json())["contacts"]}


def test_the_case_view_shows_the_contacts_the_api_returns(env: Env) -> None:
    async def body(c: TestClient[Any, Any]) -> None:
        await sign_in(c, "tok-tracer")
        for rule in ("scan-window", "overlap"):
            r = await c.get("/trace", params={"person": env.case, "rule": rule, **env.period})
            html = await r.text()
            assert r.status == 200, html
            shown = set(PERSON.findall(html))
            assert shown == await api_contacts(c, env, rule)
            assert shown, "the generated case has contacts"

    run(env, body)


PROTECTED_GETS = (
    "/trace",
    "/trace?person=X",
    "/trace/export?person=X&format=csv",
    "/jobs/1-00001",
    "/jobs/1-00001/status",
    "/premises/NT-000001",
    "/cases",
    "/sites",
    "/audit",
)
PROTECTED_POSTS = (
    "/logout",
    "/cases",
    "/followup",
    "/sites/propose",
    "/sites/abc/approve",
    "/jobs/1-00001/cancel",
)


def test_without_a_session_every_page_redirects_to_login(env: Env) -> None:
    async def body(c: TestClient[Any, Any]) -> None:
        for path in PROTECTED_GETS:
            r = await c.get(path, allow_redirects=False)
            assert r.status == 303, path
            assert r.headers["Location"].startswith("/login?next="), path
        for path in PROTECTED_POSTS:
            r = await c.post(path, data={"csrf": "x"}, allow_redirects=False)
            assert r.status == 303 and r.headers["Location"].startswith("/login"), path
        # a forged or expired session cookie is no session
        c.session.cookie_jar.update_cookies({"scantrace_session": "forged"})
        r = await c.get("/cases", allow_redirects=False)
        assert r.status == 303
        # the public pages need none
        for path in ("/login", "/exposure-sites", "/docs/api", "/static/workbench.css"):
            r = await c.get(path)
            assert r.status == 200, path
        r = await c.get("/v1/exposure-sites")
        assert r.status == 200 and (await r.json())["sites"] == []
        # the OpenAPI document covers the new endpoints, and its page renders it locally
        doc = await (await c.get("/openapi.json")).json()
        assert {"get", "post"} <= set(doc["paths"]["/v1/exposure-sites"])
        assert doc["paths"]["/v1/exposure-sites"]["get"]["security"] == []
        assert "post" in doc["paths"]["/v1/exposure-sites/{id}/{decision}"]
        page = await (await c.get("/docs/api")).text()
        assert "POST /v1/exposure-sites/{id}/{decision}" in page and "//" not in page.replace(
            "http://", ""
        ).replace("https://", "")  # nothing loaded from elsewhere
        # Vietnamese by default, English on request (remembered)
        assert "Địa điểm có nguy cơ phơi nhiễm" in await (await c.get("/exposure-sites")).text()
        r = await c.get("/exposure-sites", params={"lang": "en"})
        assert "<h1>Exposure sites</h1>" in await r.text()
        assert 'lang="en"' in await (await c.get("/login")).text()

    run(env, body)
    assert env.audit() == []  # nobody signed in: nothing to audit


def test_sign_in_cookie_csrf_and_sign_out(env: Env) -> None:
    async def body(c: TestClient[Any, Any]) -> None:
        r = await c.get("/login")
        form_token = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        assert form_token
        # the sign-in form's own token: a post without it does not sign in
        r = await c.post("/login", data={"token": "tok-tracer"}, allow_redirects=False)
        assert r.status == 403
        # (every answer of the form carries a new token of its own)
        form_token = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        assert form_token
        r = await c.post(
            "/login", data={"csrf": form_token.group(1), "token": "nope"}, allow_redirects=False
        )
        assert r.status == 401
        csrf = await sign_in(c, "tok-tracer")
        cookie = next(m for m in c.session.cookie_jar if m.key == "scantrace_session")
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
        assert not cookie["secure"]  # plain HTTP on loopback
        # a state-changing POST without the CSRF token is refused and changes nothing
        r = await c.post("/cases", data={"person_id": "P1", "confirmed_on": "2026-12-01"})
        assert r.status == 403
        r = await c.post(
            "/cases", data={"person_id": "P1", "confirmed_on": "2026-12-01", "csrf": "wrong"}
        )
        assert r.status == 403
        r = await c.get("/cases")
        assert "P1" not in await r.text()
        r = await c.post("/logout", data={"csrf": csrf}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/login"
        r = await c.get("/cases", allow_redirects=False)
        assert r.status == 303  # the session is over on the server, not only the cookie

    run(env, body)
    rows = env.audit()
    assert [r["action"] for r in rows] == ["sign_in", "cases", "case_create", "case_create",
                                           "cases", "sign_out"]  # fmt: skip
    refused = [r for r in rows if r["action"] == "case_create"]
    assert all(not r["ok"] and str(r["error"]).startswith("403") for r in refused)
    assert all(r["channel"] == "web" and r["actor"] == "Nguyen Van A" for r in rows)


def test_secure_cookie_behind_a_trusted_tls_proxy(clickhouse_settings: ClickHouseSettings) -> None:
    from tracing.settings import WorkbenchOptions

    gen = make_env(clickhouse_settings, WorkbenchOptions(trusted_proxies="127.0.0.1"), seed=3)
    env = next(gen)
    try:

        async def body(c: TestClient[Any, Any]) -> None:
            r = await c.get("/login", headers={"X-Forwarded-Proto": "https"})
            token = re.search(r'name="csrf" value="([^"]+)"', await r.text())
            assert token and "Secure" in r.headers["Set-Cookie"]
            # (the client talks plain HTTP to the "proxy": it keeps Secure cookies to itself)
            login = r.cookies["scantrace_login"].value
            r = await c.post(
                "/login",
                data={"csrf": token.group(1), "token": "tok-tracer"},
                headers={"X-Forwarded-Proto": "https", "Cookie": f"scantrace_login={login}"},
                allow_redirects=False,
            )
            assert r.status == 303
            session_cookie = [h for h in r.headers.getall("Set-Cookie") if "scantrace_session" in h]
            assert session_cookie and "Secure" in session_cookie[0]
            assert "HttpOnly" in session_cookie[0] and "SameSite=Strict" in session_cookie[0]

        run(env, body)
    finally:
        gen.close()


def test_follow_up_statuses_and_cases_elsewhere(env: Env) -> None:
    other = env.province.cases[1]

    async def body(c: TestClient[Any, Any]) -> None:
        csrf = await sign_in(c, "tok-tracer")
        q = {"person": env.case, "rule": "overlap", **env.period}
        r = await c.get("/trace", params=q)
        contacts = PERSON.findall(await r.text())
        assert contacts
        for person in (env.case, contacts[0]):  # a contact is a confirmed case elsewhere
            r = await c.post(
                "/cases",
                data={"csrf": csrf, "person_id": person, "confirmed_on": "2026-12-01",
                      "notes": "=cmd|' /C calc'!A0"},
            )  # fmt: skip
            assert r.status == 200
        r = await c.get("/trace", params=q)
        html = await r.text()
        case_id = re.search(r'name="case_id" value="([^"]+)"', html)
        assert case_id and 'class="badge"' in html
        r = await c.post(
            "/followup",
            data={"csrf": csrf, "case_id": case_id.group(1), "person_id": contacts[1],
                  "status": "quarantined"},
        )  # fmt: skip
        assert r.status == 200
        r = await c.get("/trace", params=q)
        row = re.search(
            rf'data-person="{re.escape(contacts[1])}".*?</tr>', await r.text(), re.DOTALL
        )
        assert row and 'value="quarantined" selected' in row.group(0)
        assert "Nguyen Van A" in row.group(0)  # who changed it
        r = await c.post(
            "/followup",
            data={"csrf": csrf, "case_id": case_id.group(1), "person_id": contacts[1],
                  "status": "cured"},
        )  # fmt: skip
        assert r.status == 422
        r = await c.get("/cases")
        assert other not in await r.text()
        assert env.case in await r.text()

    run(env, body)
    actions = [r["action"] for r in env.audit()]
    assert actions.count("case_create") == 2 and actions.count("followup") == 2


def _no_person_id(text: str, env: Env) -> None:
    persons = {s.person_id for s in env.province.scans}
    leaked = [p for p in persons if p in text]
    assert not leaked, leaked[:5]


def test_exposure_sites_four_eyes_and_the_public_list(env: Env) -> None:
    period = {"from": iso_utc(env.from_ms), "to": iso_utc(env.to_ms)}

    async def body(c: TestClient[Any, Any], s1: TestClient[Any, Any]) -> None:
        # the API: a tracer proposes the case's visits
        r = await c.post(
            "/v1/exposure-sites",
            json={"person_id": env.case, **period},
            headers=bearer("tok-tracer"),
        )
        assert r.status == 201, await r.text()
        first = (await r.json())["id"]
        for token, status in (("tok-tracer", 403), ("tok-auditor", 403)):
            r = await c.post(f"/v1/exposure-sites/{first}/approve", headers=bearer(token))
            assert r.status == status, token
        # a supervisor proposes chosen visits; they may not approve their own proposal
        mine = {s.premises_id for s in env.province.scans if s.person_id == env.case}
        visit = next(s for s in env.province.scans if s.premises_id not in mine)
        visits = [{"premises_id": visit.premises_id, "from": iso_utc(visit.t),
                   "to": iso_utc(visit.t + 3_600_000)}]  # fmt: skip
        r = await c.post("/v1/exposure-sites", json={"visits": visits}, headers=bearer("tok-sup1"))
        assert r.status == 201
        second = (await r.json())["id"]
        r = await c.post(f"/v1/exposure-sites/{second}/approve", headers=bearer("tok-sup1"))
        assert r.status == 403 and "four eyes" in (await r.json())["detail"]
        r = await c.get("/v1/exposure-sites")
        assert (await r.json())["sites"] == []  # nothing public before approval
        # another supervisor approves, in the workbench (session, CSRF)
        csrf = await sign_in(s1, "tok-sup2")
        r = await s1.post(f"/sites/{second}/approve", data={"csrf": csrf})
        assert r.status == 200
        r = await s1.post(f"/sites/{first}/approve", data={"csrf": csrf})
        assert r.status == 200
        r = await s1.post(f"/sites/{first}/approve", data={"csrf": csrf})
        assert r.status == 409  # approved already
        r = await c.get("/v1/exposure-sites")
        assert r.status == 200
        assert "public" in r.headers["Cache-Control"] and r.headers["ETag"]
        raw = await r.text()
        doc = json.loads(raw)
        assert visit.premises_id in {x["premises_id"] for x in doc["sites"]}
        assert all(x["window_start"].endswith("+07:00") for x in doc["sites"])
        assert set(doc["sites"][0]) == {"premises_id", "name", "address", "district",
                                        "category", "window_start", "window_end",
                                        "approved_at"}  # fmt: skip
        _no_person_id(raw, env)
        assert first not in raw and second not in raw  # nor a proposal (case) id
        r2 = await c.get("/v1/exposure-sites", headers={"If-None-Match": r.headers["ETag"]})
        assert r2.status == 304
        page = await (await c.get("/exposure-sites")).text()
        _no_person_id(page, env)
        assert env.province.premises[visit.premises_id].name in page
        # withdrawal removes it from both
        r = await c.post(f"/v1/exposure-sites/{second}/withdraw", headers=bearer("tok-sup2"))
        assert r.status == 200
        doc = await (await c.get("/v1/exposure-sites")).json()
        assert visit.premises_id not in {x["premises_id"] for x in doc["sites"]}
        assert doc["sites"]  # the first proposal's sites stay
        page = await (await c.get("/exposure-sites")).text()
        assert f'data-premises="{visit.premises_id}"' not in page
        # the tracers' list shows where a proposal came from; the public one never does
        r = await s1.get("/sites")
        assert env.case in await r.text()

    run(env, body, users=2)
    rows = env.audit()
    decide = [r for r in rows if r["action"] == "site_decide"]
    assert [(r["channel"], r["ok"]) for r in decide] == [
        ("api", False), ("api", False), ("api", False), ("web", True), ("web", True),
        ("web", False), ("api", True),
    ]  # fmt: skip
    assert [r["ok"] for r in rows if r["action"] == "site_propose"] == [True, True]


async def _wait_job(c: TestClient[Any, Any], job: str) -> dict[str, Any]:
    for _ in range(600):
        r = await c.get(f"/jobs/{job}/status")
        assert r.status == 200
        progress: dict[str, Any] = await r.json()
        if progress["done"]:
            return progress
        await asyncio.sleep(0.2)
    raise AssertionError("the job did not finish")


def test_every_page_view_and_change_leaves_one_audit_row(env: Env) -> None:
    import csv
    import io

    from tracing.trace import parse_time
    from tracing.workbench.localtime import local

    q = {"person": env.case, **env.period}
    expected: list[str] = []

    async def body(c: TestClient[Any, Any], a: TestClient[Any, Any]) -> None:
        csrf = await sign_in(c, "tok-tracer")
        expected.extend(["sign_in", "cases"])
        steps = [
            ("/trace", {}, "page"),
            ("/trace", q, "trace"),
            ("/trace", {**q, "rule": "overlap", "window_min": "x"}, "trace"),  # 422
            (f"/premises/{env.province.scans[0].premises_id}", env.period, "trace_premises"),
            ("/cases", {}, "cases"),
            ("/sites", {}, "page"),
        ]
        for path, params, action in steps:
            r = await c.get(path, params=params)
            assert r.status in (200, 422), (path, await r.text())
            expected.append(action)
        r = await c.get("/trace/export", params={**q, "format": "csv"})
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
        expected.append("export")
        table = list(csv.reader(io.StringIO((await r.text()).lstrip("\ufeff"))))
        assert table[0][:4] == ["Mã người", "Cấp", "Qua F1", "Mức nguy cơ"]
        api = await api_contacts(c, env, "scan-window")
        expected.append("trace")  # the API's answer, for comparison
        assert {row[0] for row in table[1:]} == api
        page = await (await c.get("/trace", params=q)).text()
        total = re.search(r'id="total-contacts">([\d.]+)<', page)
        assert total and len(table) - 1 == int(total.group(1).replace(".", ""))
        expected.append("trace")
        # local times: the first contact's time as Vietnam wall time
        r = await c.get(
            f"/v1/trace/{env.case}",
            params={"from": iso_utc(env.from_ms), "to": iso_utc(env.to_ms), "limit": "1"},
            headers=bearer("tok-tracer"),
        )
        expected.append("trace")
        one = (await r.json())["contacts"][0]
        at = local(parse_time(one["contact_time_from"], "t"))
        row = next(x for x in table[1:] if x[0] == one["person_id"] and x[6] == one["premises_id"])
        assert row[12] == f"{at:%Y-%m-%d %H:%M:%S}"
        r = await c.get("/trace/export", params={**q, "format": "xlsx"})
        assert r.status == 200 and (await r.read())[:2] == b"PK"
        expected.append("export")
        r = await c.post(
            "/cases", data={"csrf": csrf, "person_id": env.case, "confirmed_on": "2026-12-01"}
        )
        expected.extend(["case_create", "cases"])  # the change, then the page it leads to
        r = await c.get("/trace", params={**q, "depth": "2"}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/jobs/")
        expected.append("trace_job")
        job = r.headers["Location"].rsplit("/", 1)[1]
        progress = await _wait_job(c, job)  # polls: not audited
        assert progress["state"] == "done", progress
        shown: set[str] = set()
        html, link = "", f"/jobs/{job}"
        while link:  # every page of the answer
            r = await c.get(link)
            html = await r.text()
            expected.append("trace_job")
            shown |= set(PERSON.findall(html))
            nxt = re.search(r'<a href="([^"]+)" rel="next">', html)
            link = nxt.group(1).replace("&amp;", "&") if nxt else ""
        assert 'rel="prev"' in html  # more than one page
        assert shown == await api_contacts(c, env, "scan-window", 2)
        expected.append("trace")
        assert 'data-degree="2"' in html
        r = await c.post("/logout", data={"csrf": csrf}, allow_redirects=False)
        expected.append("sign_out")
        await sign_in(a, "tok-auditor")
        expected.extend(["sign_in", "read_audit"])
        r = await a.get("/trace")
        assert r.status == 403  # an auditor does not trace
        expected.append("trace")
        r = await a.get("/audit")
        assert "Nguyen Van A" in await r.text()
        expected.append("read_audit")

    run(env, body, users=2)
    rows = env.audit()
    assert [r["action"] for r in rows] == expected
    web_rows = [r for r in rows if r["channel"] == "web"]
    assert all(r["subject_id"] == env.case for r in web_rows if r["action"] == "trace_job")
    job_rows = [r for r in web_rows if r["action"] == "trace_job"]
    assert job_rows[-1]["rows"] > 0  # the answer's rows shown
