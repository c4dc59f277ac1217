"""Every authenticated request to the tracer API leaves exactly one audit row, on the real
ClickHouse: each endpoint (and an unknown path) times each kind of failure (forbidden,
every kind of malformed parameter, 404, 405, a failed query, a query stopped by its
memory limit, a client that leaves a streamed answer), counted request by request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
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
from tracing.runner import ClickHouseRunner, QueryLimitExceeded, QueryLimits, RunnerPool
from tracing.settings import ApiOptions, Principal

TOKENS = {
    "tok-tracer": Principal("Nguyen Van A", "tracer"),
    "tok-auditor": Principal("Tran Thi B", "auditor"),
}
MIN = 60_000
DAY = 86_400_000


@pytest.fixture
def period(clickhouse_settings: ClickHouseSettings) -> dict[str, str]:
    t0 = now_ms() - 2 * DAY
    insert_scans(
        clickhouse_settings,
        [
            ("e1", "CASE", "NT-1", t0, "checkin"),
            ("e2", "A", "NT-1", t0 + 10 * MIN, "checkin"),
            ("e3", "F2", "NT-2", t0 + 20 * MIN, "checkin"),
            ("e4", "A", "NT-2", t0 + 25 * MIN, "checkin"),
        ],
    )
    return {"from": iso_utc(t0 - 60 * MIN), "to": iso_utc(t0 + 6 * 60 * MIN)}


def _count(runner: ClickHouseRunner) -> int:
    return int(runner.query("SELECT count() FROM audit_log", {})[0][0])


def _q(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in params)


# (name, how the query string of a good request is changed): every one a 422.
MALFORMED: list[tuple[str, list[tuple[str, str]]]] = [
    ("arabic-indic digits", [("limit", "١٢٣")]),
    ("fullwidth digits", [("limit", "\uff11\uff12")]),
    ("superscript digit", [("limit", "²")]),
    ("5,000 digits", [("limit", "9" * 5000)]),
    ("NaN", [("limit", "NaN")]),
    ("inf", [("limit", "inf")]),
    ("empty", [("limit", "")]),
    ("huge offset", [("offset", str(2**31 + 1))]),
    ("offset of 30 digits", [("offset", "1" * 30)]),
    ("unknown parameter", [("lmit", "5")]),
    ("blank-padded", [("limit", " 5")]),
    ("underscored", [("limit", "1_0")]),
]
TIME_MALFORMED: list[tuple[str, str]] = [
    ("bad ISO time", "2025-13-45T00:00:00Z"),
    ("no offset", "2025-01-01T00:00:00"),
    ("arabic-indic epoch", "١٧٦٣٠٠٠٠٠٠٠٠٠"),
    ("5,000-digit epoch", "1" * 5000),
    ("empty time", ""),
]


def _requests(period: dict[str, str]) -> Iterator[tuple[str, str, str, str, int]]:
    """(label, method, path with query, token, expected status) for every endpoint and
    failure kind that needs no change of the database."""
    good = [("from", period["from"]), ("to", period["to"])]
    since = [("since", "2020-01-01T00:00:00Z")]
    endpoints = [
        ("trace json", "/v1/trace/CASE", [*good, ("depth", "2")], "tok-tracer", "tok-auditor"),
        ("trace csv", "/v1/trace/CASE", [*good, ("format", "csv")], "tok-tracer", "tok-auditor"),
        ("premises json", "/v1/premises/NT-1/visitors", good, "tok-tracer", "tok-auditor"),
        (
            "premises csv",
            "/v1/premises/NT-1/visitors",
            [*good, ("format", "csv")],
            "tok-tracer",
            "tok-auditor",
        ),
        ("audit", "/v1/audit", since, "tok-auditor", "tok-tracer"),
    ]
    for name, path, params, token, wrong in endpoints:
        yield f"{name}: ok", "GET", f"{path}?{_q(params)}", token, 200
        yield f"{name}: forbidden", "GET", f"{path}?{_q(params)}", wrong, 403
        yield f"{name}: 405", "POST", f"{path}?{_q(params)}", token, 405
        yield f"{name}: no token", "GET", f"{path}?{_q(params)}", "", 401
        yield f"{name}: unknown token", "GET", f"{path}?{_q(params)}", "nope", 401
        for kind, change in MALFORMED:
            names = {k for k, _ in change}
            bad = [p for p in params if p[0] not in names] + change
            yield f"{name}: {kind}", "GET", f"{path}?{_q(bad)}", token, 422
        time_param = "since" if name == "audit" else "from"
        for kind, value in TIME_MALFORMED:
            bad = [(k, value if k == time_param else v) for k, v in params]
            yield f"{name}: {kind}", "GET", f"{path}?{_q(bad)}", token, 422
        repeated = [*params, params[0]]
        yield f"{name}: repeated", "GET", f"{path}?{_q(repeated)}", token, 422
    long_id = "P" * 65
    yield "trace: id too long", "GET", f"/v1/trace/{long_id}?{_q(good)}", "tok-tracer", 422
    yield "trace: control char", "GET", f"/v1/trace/A%01B?{_q(good)}", "tok-tracer", 422
    swapped = _q([("from", period["to"]), ("to", period["from"])])
    yield "trace: from > to", "GET", f"/v1/trace/CASE?{swapped}", "tok-tracer", 422
    yield "unknown path", "GET", "/v1/nope", "tok-tracer", 404
    yield "unknown path, odd bytes", "GET", "/v1/trace/A/%FF%00/x", "tok-tracer", 404
    yield "unknown path, auditor", "DELETE", "/v1/audit/x", "tok-auditor", 404
    yield "unknown path, no token", "GET", "/v1/nope", "", 401


def _app(pool: RunnerPool, audit_pool: RunnerPool | None = None, **options: Any) -> Any:
    return build_app(
        pool,
        ApiOptions(**options),
        ApiMetrics(CollectorRegistry()),
        retention_days=28,
        tokens=TOKENS,
        audit_pool=audit_pool,
    )


async def _ask(
    c: TestClient[Any, Any], method: str, url: str, token: str
) -> tuple[int, dict[str, Any] | str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with c.request(method, url, headers=headers) as r:
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, await r.text()


def test_one_audit_row_per_request(
    clickhouse_settings: ClickHouseSettings, period: dict[str, str]
) -> None:
    """Each request, one at a time: its status, and the audit log one row longer (none
    for a request without a known token)."""
    pool = RunnerPool(lambda: ClickHouseRunner(clickhouse_settings), size=2)
    # reads of the log through a connection that cannot read it: /v1/audit fails
    broken = RunnerPool(
        lambda: ClickHouseRunner(clickhouse_settings.with_database("no_such_db")), size=1
    )
    counter = ClickHouseRunner(clickhouse_settings)
    seen: list[str] = []

    async def check(c: TestClient[Any, Any], label: str, method: str, url: str, token: str,
                    status: int) -> dict[str, Any] | str:  # fmt: skip
        before = _count(counter)
        got, body = await _ask(c, method, url, token)
        assert got == status, (label, got, body)
        if status != 200:
            assert isinstance(body, dict) and body["detail"], (label, body)
        assert _count(counter) - before == (0 if status == 401 else 1), label
        seen.append(label)
        return body

    async def main() -> None:
        async with TestClient(TestServer(_app(pool))) as c:
            for label, method, url, token, status in _requests(period):
                await check(c, label, method, url, token, status)
        async with TestClient(TestServer(_app(pool, audit_pool=broken))) as c:
            since = "/v1/audit?since=2020-01-01T00:00:00Z"
            body = await check(c, "audit: ClickHouse fails", "GET", since, "tok-auditor", 503)
            assert isinstance(body, dict) and body["error"] == "query_failed"
        client = connect(clickhouse_settings)
        try:
            client.execute("RENAME TABLE scans TO scans_away")
        finally:
            client.disconnect()
        async with TestClient(TestServer(_app(pool))) as c:
            for path in ("/v1/trace/CASE", "/v1/premises/NT-1/visitors"):
                for fmt in ("json", "csv"):
                    url = f"{path}?{_q([('from', period['from']), ('to', period['to'])])}"
                    url += f"&format={fmt}"
                    label = f"{path} {fmt}: ClickHouse fails"
                    body = await check(c, label, "GET", url, "tok-tracer", 503)
                    assert isinstance(body, dict) and body["error"] == "query_failed"

    try:
        asyncio.run(main())
        rows = read_audit(counter, 0, limit=10_000)
    finally:
        counter.close()
        pool.close()
        broken.close()
    assert len(seen) > 5 * 20  # every endpoint times every kind ran
    failed = [r for r in rows if not r["ok"]]
    assert all(r["error"] for r in failed)
    assert {r["action"] for r in rows} == {"trace", "trace_premises", "read_audit", "other"}
    assert any("Unknown table" in str(r["error"]) for r in failed)
    others = [r["subject_id"] for r in rows if r["action"] == "other"]
    assert "GET /v1/nope" in others and "DELETE /v1/audit/x" in others


def test_a_query_stopped_by_its_memory_limit_is_a_503_with_the_limit(
    clickhouse_settings: ClickHouseSettings, period: dict[str, str]
) -> None:
    """A premises with 300,000 visitors; the API's runners may use 8 MiB a query: reading
    and grouping its visitors needs more even though grouping spills to disk from half the
    limit (at 64 MiB a spilled grouping could finish under the limit), the audit row's
    insert far less."""
    client = connect(clickhouse_settings)
    at = (now_ms() - DAY) // 1000
    try:
        client.execute(
            "INSERT INTO scans (event_id, person_id, premises_id, scanned_at, kind, gateway_id,"
            " processed_at, premises_name, category, district, ward, agency, dwell_minutes)"
            f" SELECT concat('b', toString(number)), concat('P', toString(number)), 'BIG',"
            f" toDateTime64({at} + number % 3600, 3, 'UTC'), 'checkin', 'gw', now64(3),"
            " 'Chợ lớn', 'market', 'd', 'w', 'a', 45 FROM numbers(300000)"
        )
    finally:
        client.disconnect()
    limits = QueryLimits(max_execution_s=60, max_memory_bytes=8 * 2**20)
    pool = RunnerPool(lambda: ClickHouseRunner(clickhouse_settings, limits=limits), size=1)
    counter = ClickHouseRunner(clickhouse_settings)
    frm, to = iso_utc((at - 3600) * 1000), iso_utc((at + 7200) * 1000)

    async def main() -> None:
        async with TestClient(TestServer(_app(pool))) as c:
            for fmt in ("json", "csv"):
                url = f"/v1/premises/BIG/visitors?from={frm}&to={to}&format={fmt}"
                status, body = await _ask(c, "GET", url, "tok-tracer")
                assert status == 503, body
                assert isinstance(body, dict) and body["error"] == "query_limit"
                assert "memory limit of 8 MiB" in body["detail"]

    try:
        asyncio.run(main())
        rows = read_audit(counter, 0)
    finally:
        counter.close()
        pool.close()
    assert len(rows) == 2
    assert all(not r["ok"] and "memory limit of 8 MiB" in str(r["error"]) for r in rows)


def test_the_runner_names_the_time_limit(clickhouse_settings: ClickHouseSettings) -> None:
    runner = ClickHouseRunner(clickhouse_settings, limits=QueryLimits(max_execution_s=0.5))
    try:
        with pytest.raises(QueryLimitExceeded, match=r"time limit of 0\.5 s"):
            runner.query("SELECT count() FROM numbers(1000000000000)", {})
        with pytest.raises(QueryLimitExceeded, match=r"time limit of 0\.5 s"):
            list(runner.iter_query("SELECT number FROM numbers(1000000000000)", {}))
        assert runner.query("SELECT 1", {}) == [(1,)]  # the connection is usable again
    finally:
        runner.close()


def test_a_stream_left_unread_frees_its_connection(clickhouse_settings: ClickHouseSettings) -> None:
    runner = ClickHouseRunner(clickhouse_settings)
    try:
        rows = runner.iter_query("SELECT number FROM numbers(10000000)", {})
        assert next(rows) == (0,)
        assert runner.query("SELECT 2", {}) == [(2,)]
        assert sum(1 for _ in runner.iter_query("SELECT number FROM numbers(100000)", {})) == (
            100_000
        )
    finally:
        runner.close()


def test_a_client_leaving_a_stream_leaves_one_row(
    clickhouse_settings: ClickHouseSettings,
) -> None:
    """200,000 visitors streamed as CSV; the client reads the first chunk and leaves: one
    audit row saying how many rows had left, and the pool serves the next question."""
    client = connect(clickhouse_settings)
    at = (now_ms() - DAY) // 1000
    try:
        client.execute(
            "INSERT INTO scans (event_id, person_id, premises_id, scanned_at, kind, gateway_id,"
            " processed_at, premises_name, category, district, ward, agency, dwell_minutes)"
            f" SELECT concat('b', toString(number)), concat('P', toString(number)), 'BIG',"
            f" toDateTime64({at} + number % 3600, 3, 'UTC'), 'checkin', 'gw', now64(3),"
            " 'Chợ lớn', 'market', 'd', 'w', 'a', 45 FROM numbers(200000)"
        )
    finally:
        client.disconnect()
    pool = RunnerPool(lambda: ClickHouseRunner(clickhouse_settings), size=1)
    counter = ClickHouseRunner(clickhouse_settings)
    frm, to = iso_utc((at - 3600) * 1000), iso_utc((at + 7200) * 1000)
    url = f"/v1/premises/BIG/visitors?from={frm}&to={to}&format=csv"

    async def main() -> None:
        async with TestClient(TestServer(_app(pool, max_json_rows=1000))) as c:
            r = await c.get(url, headers={"Authorization": "Bearer tok-tracer"})
            assert r.status == 200
            first = await r.content.readany()
            assert first.startswith(b"person_id,")
            r.close()  # leave mid-stream
            deadline = time.monotonic() + 60
            while _count(counter) < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            # the same question as JSON is too large; the CSV streams it whole
            status, body = await _ask(c, "GET", url.replace("csv", "json"), "tok-tracer")
            assert status == 422 and isinstance(body, dict) and body["error"] == "too_large"
            status, text = await _ask(c, "GET", url, "tok-tracer")
            assert status == 200 and isinstance(text, str)
            assert len(text.splitlines()) == 200_001

    try:
        asyncio.run(main())
        rows = read_audit(counter, 0)
    finally:
        counter.close()
        pool.close()
    assert len(rows) == 3
    left = rows[0]
    assert not left["ok"] and str(left["error"]).startswith("499 the client left after")
    assert 0 < int(str(left["rows"])) < 200_000
    assert not rows[1]["ok"] and str(rows[1]["error"]).startswith("422")
    assert rows[2]["ok"] and rows[2]["rows"] == 200_000


def test_csv_stream_read_by_a_plain_client(
    clickhouse_settings: ClickHouseSettings, period: dict[str, str]
) -> None:
    """A depth-2 CSV through a real socket: chunked, ordered like the JSON answer."""
    pool = RunnerPool(lambda: ClickHouseRunner(clickhouse_settings), size=1)

    async def main() -> None:
        async with TestClient(TestServer(_app(pool))) as c:
            q = _q([("from", period["from"]), ("to", period["to"]), ("depth", "2")])
            status, doc = await _ask(c, "GET", f"/v1/trace/CASE?{q}", "tok-tracer")
            assert status == 200 and isinstance(doc, dict)
            async with aiohttp.ClientSession() as s:
                url = c.make_url(f"/v1/trace/CASE?{q}&format=csv")
                async with s.get(url, headers={"Authorization": "Bearer tok-tracer"}) as r:
                    assert r.headers.get("Transfer-Encoding") == "chunked"
                    text = await r.text()
            lines = text.splitlines()[1:]
            assert [line.split(",")[0] for line in lines] == [
                x["person_id"] for x in doc["contacts"]
            ]
            assert [x["degree"] for x in doc["contacts"]] == [1, 2]

    try:
        asyncio.run(main())
    finally:
        pool.close()
