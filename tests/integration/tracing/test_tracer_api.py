"""The tracer HTTP API on the real ClickHouse: auth (401/403), validation (422), answers,
paging, streamed CSV, OpenAPI, metrics, and one audit row per query, failed ones too."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from tracegen import insert_scans

from ingest.contract import now_ms
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from tracing.api.app import build_app
from tracing.api.metrics import ApiMetrics
from tracing.audit import read_audit
from tracing.models import iso_utc
from tracing.runner import ClickHouseRunner, RunnerPool
from tracing.settings import ApiOptions, Principal

TOKENS = {
    "tok-tracer": Principal("Nguyen Van A", "tracer"),
    "tok-auditor": Principal("Tran Thi B", "auditor"),
    "tok-intern": Principal("Le Van C", "intern"),
}
T0 = 1_763_000_000_000  # fixed scan times well inside the retention of a fresh table
MIN = 60_000
ROWS = [
    # event, person, premises, t, kind
    ("e1", "CASE", "NT-1", T0, "checkin"),
    ("e2", "A", "NT-1", T0 + 30 * MIN, "checkin"),
    ("e3", "B", "NT-1", T0 + 61 * MIN, "checkin"),  # just outside 60 min
    ("e4", '=HYPERLINK("x")', "NT-1", T0 - 60 * MIN, "checkin"),  # on the edge: in
    ("e5", "A", "NT-2", T0 + 200 * MIN, "checkin"),
    ("e6", "F2", "NT-2", T0 + 210 * MIN, "checkin"),
]


@pytest.fixture
def api_env(clickhouse_settings: ClickHouseSettings) -> Iterator[dict[str, Any]]:
    base = now_ms() - 3 * 86_400_000
    shift = base - T0
    market = ("+Chợ Phan Rang", "market", "Phan Rang-Tháp Chàm", "Phường Đô Vinh", "UBND", 45)
    insert_scans(
        clickhouse_settings,
        [(e, p, prem, t + shift, k) for e, p, prem, t, k in ROWS],
        {"NT-1": market, "NT-2": ("Shop", *market[1:])},
    )
    pool = RunnerPool(lambda: ClickHouseRunner(clickhouse_settings), size=2)
    registry = CollectorRegistry()
    options = ApiOptions(page_size=2, max_page_size=5)
    app = build_app(pool, options, ApiMetrics(registry), retention_days=28, tokens=TOKENS)
    audit_runner = ClickHouseRunner(clickhouse_settings)
    try:
        yield {
            "app": app,
            "registry": registry,
            "from": iso_utc(T0 + shift - 2 * 3_600_000),
            "to": iso_utc(T0 + shift + 6 * 3_600_000),
            "audit": lambda: read_audit(audit_runner, 0, limit=1000),
        }
    finally:
        audit_runner.close()
        pool.close()


def run(env: dict[str, Any], body: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(env["app"])) as client:
            await body(client)

    asyncio.run(main())


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_trace_answers_and_audits(api_env: dict[str, Any]) -> None:
    env = api_env

    async def body(c: TestClient[Any, Any]) -> None:
        r = await c.get(
            "/v1/trace/CASE",
            params={"from": env["from"], "to": env["to"], "depth": "2", "limit": "5"},
            headers=auth("tok-tracer"),
        )
        assert r.status == 200, await r.text()
        doc = await r.json()
        assert doc["case"] == "CASE"
        assert doc["rule"]["name"] == "scan-window" and doc["rule"]["window_min"] == 60
        got = {(x["person_id"], x["premises_id"], x["degree"]) for x in doc["contacts"]}
        assert got == {
            ("A", "NT-1", 1),
            ('=HYPERLINK("x")', "NT-1", 1),
            ("F2", "NT-2", 2),  # with A at NT-2, after A's contact
            ("B", "NT-1", 2),  # 61 min after the case (out), 31 min after A (in)
        }
        f2 = [x for x in doc["contacts"] if x["degree"] == 2]
        assert {x["via_person_id"] for x in f2} == {"A"}
        assert all(x["contact_time_from"].endswith("Z") for x in f2)
        assert doc["page"] == {
            "offset": 0,
            "limit": 5,
            "returned": 4,
            "total": 4,
            "next_offset": None,
        }
        assert len(doc["visits"]) == 1

    run(env, body)
    rows = env["audit"]()
    assert len(rows) == 1
    (row,) = rows
    assert row["actor"] == "Nguyen Van A" and row["role"] == "tracer"
    assert row["channel"] == "api" and row["action"] == "trace"
    assert row["subject_id"] == "CASE" and row["ok"] is True and row["rows"] == 4
    assert row["rule"]["depth"] == 2


def test_paging_and_streamed_csv(api_env: dict[str, Any]) -> None:
    env = api_env

    async def body(c: TestClient[Any, Any]) -> None:
        seen: list[str] = []
        offset: int | None = 0
        while offset is not None:
            r = await c.get(
                "/v1/trace/CASE",
                params={"from": env["from"], "to": env["to"], "depth": "2", "offset": offset},
                headers=auth("tok-tracer"),
            )
            doc = await r.json()
            assert doc["page"]["limit"] == 2  # the configured page size
            seen += [x["person_id"] for x in doc["contacts"]]
            offset = doc["page"]["next_offset"]
        assert len(seen) == 4 == len(set(seen))
        r = await c.get(
            "/v1/trace/CASE",
            params={"from": env["from"], "to": env["to"], "format": "csv"},
            headers=auth("tok-tracer"),
        )
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/csv")
        assert r.headers.get("Transfer-Encoding") == "chunked"
        table = list(csv.reader(io.StringIO(await r.text())))
        assert table[0][0] == "person_id"
        cells = [cell for row in table[1:] for cell in row]
        assert '\'=HYPERLINK("x")' in cells and "'+Chợ Phan Rang" in cells
        assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for cell in cells)
        r = await c.get(
            "/v1/premises/NT-1/visitors",
            params={"from": env["from"], "to": env["to"], "limit": "5"},
            headers=auth("tok-tracer"),
        )
        doc = await r.json()
        assert {v["person_id"] for v in doc["visitors"]} == {"CASE", "A", "B", '=HYPERLINK("x")'}

    run(env, body)
    rows = env["audit"]()
    assert len(rows) == 4 and all(r["ok"] for r in rows)  # 2 pages, csv, premises
    assert [r["action"] for r in rows].count("trace_premises") == 1


def test_401_403_422_and_audit(api_env: dict[str, Any]) -> None:
    env = api_env
    good = {"from": env["from"], "to": env["to"]}

    async def body(c: TestClient[Any, Any]) -> None:
        r = await c.get("/v1/trace/CASE", params=good)
        assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        r = await c.get("/v1/trace/CASE", params=good, headers=auth("nope"))
        assert r.status == 401
        r = await c.get("/v1/trace/CASE", params=good, headers={"Authorization": "Basic x"})
        assert r.status == 401
        for token in ("tok-auditor", "tok-intern"):
            r = await c.get("/v1/trace/CASE", params=good, headers=auth(token))
            assert r.status == 403, token
        r = await c.get("/v1/audit", params={"since": env["from"]}, headers=auth("tok-tracer"))
        assert r.status == 403
        r = await c.get("/v1/audit", params={"since": env["from"]}, headers=auth("tok-intern"))
        assert r.status == 403
        bad: list[dict[str, str]] = [
            {"from": env["to"], "to": env["from"]},  # from > to
            {"from": "2025-01-01T00:00:00Z", "to": "2025-03-01T00:00:00Z"},  # > retention
            {"from": "yesterday", "to": env["to"]},
            {"from": "2025-01-01T00:00:00", "to": env["to"]},  # no offset
            {"to": env["to"]},
            {**good, "rule": "vibes"},
            {**good, "depth": "3"},
            {**good, "cap_at_next_scan": "maybe"},
            {**good, "window_min": "-5"},
            {**good, "limit": "6"},
            {**good, "format": "xlsx"},
        ]
        for params in bad:
            r = await c.get("/v1/trace/CASE", params=params, headers=auth("tok-tracer"))
            assert r.status == 422, params
            doc = await r.json()
            assert doc["error"] == "invalid" and doc["detail"], params
        r = await c.get(
            "/v1/premises/NT-1/visitors",
            params={"from": env["to"], "to": env["from"]},
            headers=auth("tok-tracer"),
        )
        assert r.status == 422
        assert "after" in (await r.json())["detail"]

    run(env, body)
    rows = env["audit"]()
    # 401s have no identity to audit; every 403 and 422 is one failed row, the refused
    # reads of the audit log included.
    assert len(rows) == 2 + 2 + 11 + 1
    assert not any(r["ok"] for r in rows)
    assert {r["actor"] for r in rows} == {"Tran Thi B", "Le Van C", "Nguyen Van A"}
    assert all(r["error"] for r in rows)
    assert sum(r["error"].startswith("403") for r in rows) == 4
    assert [r["action"] for r in rows].count("read_audit") == 2


def test_failed_query_is_audited(api_env: dict[str, Any], clickhouse_settings: Any) -> None:
    env = api_env
    client = connect(clickhouse_settings)
    try:
        client.execute("RENAME TABLE scans TO scans_away")
    finally:
        client.disconnect()

    async def body(c: TestClient[Any, Any]) -> None:
        r = await c.get(
            "/v1/trace/CASE",
            params={"from": env["from"], "to": env["to"]},
            headers=auth("tok-tracer"),
        )
        assert r.status == 503
        assert (await r.json())["error"] == "query_failed"

    run(env, body)
    (row,) = env["audit"]()
    assert row["ok"] is False and row["action"] == "trace" and "Unknown table" in row["error"]
    assert "\n" not in row["error"] and "Stack trace" not in row["error"]


def test_auditor_reads_the_log_openapi_metrics(api_env: dict[str, Any]) -> None:
    env = api_env

    async def body(c: TestClient[Any, Any]) -> None:
        r = await c.get(
            "/v1/trace/CASE",
            params={"from": env["from"], "to": env["to"], "rule": "overlap",
                    "cap_at_next_scan": "false"},
            headers=auth("tok-tracer"),
        )  # fmt: skip
        assert r.status == 200
        assert (await r.json())["rule"]["cap_at_next_scan"] is False
        r = await c.get("/v1/audit", params={"since": env["from"]}, headers=auth("tok-auditor"))
        assert r.status == 200
        entries = (await r.json())["entries"]
        assert len(entries) == 1 and entries[0]["rule"]["name"] == "overlap"
        assert entries[0]["rule"]["cap_at_next_scan"] is False
        assert entries[0]["at"].endswith("Z")
        r = await c.get("/openapi.json")
        doc = await r.json()
        assert doc["openapi"].startswith("3.")
        assert {"/v1/trace/{person_id}", "/v1/premises/{premises_id}/visitors", "/v1/audit"} <= set(
            doc["paths"]
        )
        json.dumps(doc)
        r = await c.get("/healthz")
        assert r.status == 200
        r = await c.get("/metrics")
        text = await r.text()
        assert "scantrace_api_requests_total" in text
        assert "scantrace_api_query_latency_seconds" in text

    run(env, body)
    registry: CollectorRegistry = env["registry"]
    assert (
        registry.get_sample_value(
            "scantrace_api_requests_total", {"endpoint": "trace", "status": "200"}
        )
        == 1.0
    )
    assert (
        registry.get_sample_value("scantrace_api_query_latency_seconds_count", {"query": "trace"})
        == 1.0
    )


def test_serve_listens_and_stops(clickhouse_settings: ClickHouseSettings) -> None:
    """`scantrace api`'s server: binds, answers with the configured tokens, stops on its
    stop event (SIGTERM does the same)."""
    import aiohttp
    from pydantic import SecretStr

    from tracing.api.server import serve
    from tracing.settings import TracerSettings

    settings = TracerSettings(clickhouse=clickhouse_settings).with_api(
        port=0, tokens=SecretStr('{"tok": {"name": "A", "role": "auditor"}}')
    )

    async def main() -> None:
        stop = asyncio.Event()
        bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve(settings, stop=stop, registry=CollectorRegistry(), on_listening=bound.set_result)
        )
        port = await asyncio.wait_for(bound, 30)
        async with aiohttp.ClientSession() as s:
            url = f"http://127.0.0.1:{port}"
            async with s.get(f"{url}/healthz") as r:
                assert r.status == 200
            async with s.get(f"{url}/v1/audit?since=2020-01-01T00:00:00Z") as r:
                assert r.status == 401
            async with s.get(
                f"{url}/v1/audit?since=2020-01-01T00:00:00Z", headers=auth("tok")
            ) as r:
                assert r.status == 200 and (await r.json())["entries"] == []
        stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(main())
