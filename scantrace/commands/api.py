"""`scantrace api` (the tracer HTTP API) and `scantrace audit` (read the audit log)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from ingest.auth import TokensError
from scantrace.commands import server_overrides, setup_logging
from tracing.audit import read_audit
from tracing.models import iso_utc
from tracing.runner import ClickHouseRunner
from tracing.settings import TracerSettings
from tracing.trace import TraceInputError, parse_time


@click.command()
@click.option("--host", default=None, help="Interface [env: SCANTRACE_API__HOST; 127.0.0.1]")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="TCP port [env: SCANTRACE_API__PORT; default 8090]",
)
@click.option(
    "--tokens-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='JSON {"TOKEN": {"name": "...", "role": "tracer|auditor"}} '
    "[env: SCANTRACE_API__TOKENS holds the same JSON]",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    help="Logging level",
)
def api(host: str | None, port: int | None, tokens_file: Path | None, log_level: str) -> None:
    """Tracer HTTP API: GET /v1/trace/{person}, /v1/premises/{id}/visitors, /v1/audit.

    Also /openapi.json, /healthz, /metrics. Every query is audited. Stops on SIGTERM.
    ClickHouse: SCANTRACE_CLICKHOUSE__URL (the tracer's user) and, for /v1/audit,
    SCANTRACE_AUDIT_CLICKHOUSE__URL (the auditor's).
    """
    from tracing.api.server import serve

    setup_logging(log_level)
    try:
        settings = TracerSettings()
        settings = settings.with_api(**server_overrides(host, port, tokens_file))
        settings.api.token_map()
        settings.clickhouse.parts()
        settings.auditor_clickhouse().parts()
    except (ValidationError, TokensError, RuntimeError, ValueError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    asyncio.run(serve(settings))


@click.command()
@click.option("--since", required=True, help="ISO-8601 with offset: entries at or after it")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=1000, help="Most entries")
@click.option("--actor", default=None, help="Only this tracer (name or OS user)")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table")
def audit(since: str, limit: int, actor: str | None, as_json: bool) -> None:
    """Read the audit log of tracer queries (CLI and API), oldest first."""
    try:
        since_ms = parse_time(since, "since")
    except TraceInputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    settings = TracerSettings()
    try:
        runner = ClickHouseRunner(settings.auditor_clickhouse())
    except RuntimeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    try:
        rows = read_audit(runner, since_ms, limit=limit, actor=actor)
    finally:
        runner.close()
    for r in rows:
        for k in ("at", "period_from", "period_to"):
            r[k] = iso_utc(int(r[k]))  # type: ignore[call-overload]
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
        else:
            status = "ok" if r["ok"] else f"FAILED {r['error']}"
            click.echo(
                f"{r['at']}  {r['channel']:<3}  {r['actor']} ({r['role']})  {r['action']}"
                f" {r['subject_id']}  {r['period_from']}..{r['period_to']}"
                f"  rule={json.dumps(r['rule'], ensure_ascii=False)}  rows={r['rows']}  {status}"
            )
