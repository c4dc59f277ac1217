"""The workbench on the real ClickHouse through HTTP, as a browser without JavaScript
uses it: sessions, CSRF, roles, the case view against the API's answer, follow-up, the
four-eyes exposure sites and their public list, depth-2 jobs, and one audit row for every
page view and change."""

from __future__ import annotations

import asyncio
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
