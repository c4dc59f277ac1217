"""Shared by the workbench's tests: a generated province in the real ClickHouse (scans and
a registry with coordinates), the API application with the workbench, its tokens, and
helpers to sign in and post forms as a browser would."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from tracegen import INSERT_COLUMNS, Province, generate, rows_for_insert

from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.writer import INSERT_SETTINGS
from tracing.api.app import build_app
from tracing.api.metrics import ApiMetrics
from tracing.audit import read_audit
from tracing.runner import ClickHouseRunner, RunnerPool
from tracing.settings import ApiOptions, Principal, WorkbenchOptions
from tracing.workbench.localtime import input_value

TOKENS = {
    "tok-tracer": Principal("Nguyen Van A", "tracer"),
    "tok-sup1": Principal("Tran Thi B", "supervisor"),
    "tok-sup2": Principal("Le Van C", "supervisor"),
    "tok-auditor": Principal("Pham Thi D", "auditor"),
}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Env:
    app: Any
    province: Province
    case: str
    from_ms: int
    to_ms: int
    pool: RunnerPool
    audit_runner: ClickHouseRunner

    def audit(self) -> list[dict[str, object]]:
        return read_audit(self.audit_runner, 0, limit=100_000)

    @property
    def period(self) -> dict[str, str]:
        return {"from": input_value(self.from_ms), "to": input_value(self.to_ms)}


def insert_province(settings: ClickHouseSettings, p: Province, seed: int = 1) -> None:
    rng = random.Random(seed)
    client = connect(settings)
    try:
        client.execute(
            f"INSERT INTO scans ({INSERT_COLUMNS}) VALUES",
            rows_for_insert(p),
            settings=INSERT_SETTINGS,
        )
        registry = [
            (
                r.premises_id,
                r.name,
                r.category,
                r.district,
                r.ward,
                r.agency,
                f"{i} Đường 16/4, {r.ward}",
                11.5 + rng.random() * 0.2,  # Phan Rang-Tháp Chàm and around
                108.9 + rng.random() * 0.2,
                r.dwell,
                1,
            )
            for i, r in enumerate(p.premises.values())
        ]
        client.execute(
            "INSERT INTO premises (premises_id, name, category, district, ward, agency,"
            " address, lat, lon, dwell_minutes, version) VALUES",
            registry,
        )
    finally:
        client.disconnect()


def make_env(
    settings: ClickHouseSettings, options: WorkbenchOptions | None = None, seed: int = 11
) -> Iterator[Env]:
    p = generate(seed, persons=700, premises=50, days=3, cases=3)
    insert_province(settings, p)
    pool = RunnerPool(lambda: ClickHouseRunner(settings), size=3)
    app = build_app(
        pool,
        ApiOptions(),
        ApiMetrics(CollectorRegistry()),
        retention_days=28,
        tokens=TOKENS,
        workbench=options or WorkbenchOptions(),
    )
    runner = ClickHouseRunner(settings)
    try:
        yield Env(app, p, p.cases[0], p.start_ms, p.start_ms + p.days * 86_400_000, pool, runner)
    finally:
        runner.close()
        pool.close()


async def sign_in(client: Any, token: str) -> str:
    """Sign in as a browser does; the session's CSRF token."""
    r = await client.get("/login")
    assert r.status == 200
    csrf = CSRF.search(await r.text())
    assert csrf
    r = await client.post(
        "/login", data={"csrf": csrf.group(1), "token": token}, allow_redirects=False
    )
    assert r.status == 303, await r.text()
    r = await client.get("/cases" if TOKENS[token].role != "auditor" else "/audit")
    assert r.status == 200
    found = CSRF.search(await r.text())
    assert found
    return found.group(1)
