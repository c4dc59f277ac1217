"""The tracer API's request handling over `tracing.testing`'s fake ClickHouse: pages cut
from one answer, failures before and during a stream, an audit log that cannot be
written, a client that leaves; one audit row each time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from tracing.api.app import build_app
from tracing.api.metrics import ApiMetrics
from tracing.runner import QueryLimitExceeded, RunnerPool
from tracing.settings import ApiOptions, Principal
from tracing.testing import FakeClickHouse

TOKENS = {"tok": Principal("Nguyen Van A", "tracer")}
AUTH = {"Authorization": "Bearer tok"}
PERIOD = "from=2025-11-13T00:00:00Z&to=2025-11-14T00:00:00Z"


def serve(
    db: FakeClickHouse,
    body: Callable[[TestClient[Any, Any], CollectorRegistry], Awaitable[None]],
    **options: Any,
) -> None:
    pool = RunnerPool(db.runner, size=2)
    registry = CollectorRegistry()
    app = build_app(
        pool, ApiOptions(**options), ApiMetrics(registry), retention_days=28, tokens=TOKENS
    )

    async def main() -> None:
        async with TestClient(TestServer(app)) as client:
            await body(client, registry)

    try:
        asyncio.run(main())
    finally:
        pool.close()


def test_pages_are_cut_from_one_answer() -> None:
    db = FakeClickHouse(contacts=7)

    async def body(c: TestClient[Any, Any], registry: CollectorRegistry) -> None:
        seen: list[str] = []
        offset: int | None = 0
        while offset is not None:
            r = await c.get(f"/v1/trace/C?{PERIOD}&depth=2&offset={offset}", headers=AUTH)
            doc = await r.json()
            seen += [x["person_id"] for x in doc["contacts"]]
            offset = doc["page"]["next_offset"]
        assert len(seen) == 14 == len(set(seen))
        hits = registry.get_sample_value("scantrace_api_answer_cache_total", {"result": "hit"})
        assert hits == 4.0  # pages 2-5 of 5

    serve(db, body, page_size=3)
    assert db.asked.count("contacts") == 1 and db.asked.count("contacts2") == 1
    assert [r["rows"] for r in db.audit_rows()] == [3, 3, 3, 3, 2]


def test_a_json_answer_too_large_points_to_csv() -> None:
    db = FakeClickHouse(visitors=11)

    async def body(c: TestClient[Any, Any], registry: CollectorRegistry) -> None:
        r = await c.get(f"/v1/premises/P/visitors?{PERIOD}", headers=AUTH)
        assert r.status == 422
        doc = await r.json()
        assert doc["error"] == "too_large" and "format=csv" in doc["detail"]
        r = await c.get(f"/v1/premises/P/visitors?{PERIOD}&format=csv", headers=AUTH)
        assert r.status == 200 and len((await r.text()).splitlines()) == 12

    serve(db, body, max_json_rows=10)
    assert [(r["ok"], r["rows"]) for r in db.audit_rows()] == [(False, 0), (True, 11)]


@pytest.mark.parametrize(
    ("exc", "code"),
    [(RuntimeError("Code: 60. Unknown table"), "query_failed"),
     (QueryLimitExceeded("the query was stopped at its time limit of 1 s"), "query_limit")],
)  # fmt: skip
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_failure_before_any_row_is_a_503_with_its_reason(
    exc: Exception, code: str, fmt: str
) -> None:
    db = FakeClickHouse(fail={"visitors": exc})

    async def body(c: TestClient[Any, Any], registry: CollectorRegistry) -> None:
        r = await c.get(f"/v1/premises/P/visitors?{PERIOD}&format={fmt}", headers=AUTH)
        assert r.status == 503
        doc = await r.json()
        assert doc["error"] == code
        if code == "query_limit":
            assert "time limit of 1 s" in doc["detail"]

    serve(db, body)
    (row,) = db.audit_rows()
    assert not row["ok"] and str(row["error"]).startswith("503")


def test_a_failure_mid_stream_cuts_the_response() -> None:
    db = FakeClickHouse(
        visitors=20_000, fail={"visitors": RuntimeError("connection reset")}, fail_after_rows=5000
    )

    async def body(c: TestClient[Any, Any], registry: CollectorRegistry) -> None:
        r = await c.get(f"/v1/premises/P/visitors?{PERIOD}&format=csv", headers=AUTH)
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()  # no final chunk: never mistaken for a complete file

    serve(db, body)
    (row,) = db.audit_rows()
    assert not row["ok"] and str(row["error"]).startswith("503 the answer was cut after")
    assert 0 < int(str(row["rows"])) <= 5000


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_no_answer_leaves_without_its_audit_row(fmt: str) -> None:
    db = FakeClickHouse(visitors=2000, fail={"audit_insert": RuntimeError("audit_log gone")})

    async def body(c: TestClient[Any, Any], registry: CollectorRegistry) -> None:
        r = await c.get(f"/v1/premises/P/visitors?{PERIOD}&format={fmt}", headers=AUTH)
        if fmt == "json":
            assert r.status == 503 and (await r.json())["error"] == "audit_failed"
        else:  # the rows went out before the row was due: the answer is cut
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        failures = registry.get_sample_value("scantrace_api_audit_failures_total")
        assert failures == 1.0

    serve(db, body)
    assert db.asked.count("audit_insert") == 1  # one attempt, never a second row


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_client_that_leaves_mid_query_leaves_one_row(fmt: str) -> None:
    db = FakeClickHouse(delay_s=0.5)

    async def body(c: TestClient[Any, Any], registry: CollectorRegistry) -> None:
        with pytest.raises(asyncio.TimeoutError):
            await c.get(
                f"/v1/trace/C?{PERIOD}&format={fmt}",
                headers=AUTH,
                timeout=aiohttp.ClientTimeout(total=0.2),
            )
        for _ in range(100):
            if db.audit_rows():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # the query ends meanwhile: still one row

    serve(db, body)
    (row,) = db.audit_rows()
    assert not row["ok"] and str(row["error"]).startswith("499 the client left")


def test_head_runs_no_question() -> None:
    """HEAD would run and audit a query to send no answer (and the client would be gone
    before its row): 405, audited like any refused request."""
    db = FakeClickHouse()

    async def body(c: TestClient[Any, Any], registry: CollectorRegistry) -> None:
        for path in (f"/v1/trace/C?{PERIOD}&format=csv", f"/v1/premises/P/visitors?{PERIOD}"):
            r = await c.head(path, headers=AUTH)
            assert r.status == 405
        assert (await c.head("/healthz")).status == 200

    serve(db, body)
    assert [r["error"] for r in db.audit_rows()] == ["405 Method Not Allowed"] * 2
    assert "visitors" not in db.asked and "timeline" not in db.asked
