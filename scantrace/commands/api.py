"""`scantrace api` (the tracer HTTP API) and `scantrace audit` (read the audit log)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import replace
from pathlib import Path

import click

from ingest.contract import now_ms
from scantrace.commands import LOG_LEVEL, InputFile, server_overrides
from scantrace.commands.trace import cli_actor
from scantrace.logs import setup_logging
from scantrace.timeopts import START, TIME_HELP
from tracing.audit import AuditRecord, AuditWriter, read_audit
from tracing.models import iso_utc
from tracing.runner import ClickHouseRunner
from tracing.settings import TracerSettings
from tracing.trace import error_text


@click.command()
@click.option(
    "--host",
    default=None,
    help="Interface [default 127.0.0.1]",
    envvar="SCANTRACE_API__HOST",
    show_envvar=True,
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="TCP port [default 8090]",
    envvar="SCANTRACE_API__PORT",
    show_envvar=True,
)
@click.option(
    "--tokens-file",
    type=InputFile(),
    default=None,
    help='JSON {"TOKEN": {"name": "...", "role": "tracer|supervisor|auditor"}} '
    "(or the JSON itself in SCANTRACE_API__TOKENS)",
)
@LOG_LEVEL
def api(host: str | None, port: int | None, tokens_file: Path | None, log_level: str) -> None:
    """Tracer HTTP API and the tracers' workbench (web pages at /, same tokens).

    GET /v1/trace/{person}, /v1/premises/{id}/visitors, /v1/audit, /v1/exposure-sites;
    also /openapi.json, /docs/api, /healthz, /metrics. Every query and every page view is
    audited. Stops on SIGTERM.
    ClickHouse: SCANTRACE_CLICKHOUSE__URL (the tracer's user) and, for /v1/audit,
    SCANTRACE_AUDIT_CLICKHOUSE__URL (the auditor's).
    """
    from tracing.api.server import serve

    setup_logging(log_level, "api")
    settings = TracerSettings()
    settings = settings.with_api(**server_overrides(host, port, tokens_file))
    settings.api.token_map()
    settings.clickhouse.parts()
    settings.auditor_clickhouse().parts()
    asyncio.run(serve(settings))


@click.command()
@click.option(
    "--since", "since_ms", type=START, required=True, help=f"Entries at or after it, {TIME_HELP}"
)
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=1000, help="Most entries")
@click.option(
    "--actor", default=None, help="Only this tracer: an API name, or `user (uid N)` for the CLI"
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table")
def audit(since_ms: int, limit: int, actor: str | None, as_json: bool) -> None:
    """Read the audit log of tracer queries (CLI and API), oldest first (audited).
    ClickHouse from SCANTRACE_AUDIT_CLICKHOUSE__URL (the auditor's) and
    SCANTRACE_CLICKHOUSE__URL (the tracer's, which writes this reading's audit row).

    \b
    Example: scantrace audit --since -7d --actor "Nguyen Van A"
    """
    settings = TracerSettings()
    limits = settings.cli.limits()
    # The log is read as the auditor and the reading written as the tracer: the
    # auditor may only read it, the tracer only append to it.
    reader = ClickHouseRunner(settings.auditor_clickhouse(), limits=limits)
    writer = (
        ClickHouseRunner(settings.clickhouse, limits=limits)
        if settings.auditor_clickhouse() != settings.clickhouse
        else reader
    )
    # Reading the log is audited like any question: who read whose trail, since when.
    record = AuditRecord(
        cli_actor("auditor"), "read_audit", actor or "", since_ms, now_ms(), now_ms(),
        {"limit": limit},
    )  # fmt: skip
    started = time.perf_counter()
    try:
        rows = read_audit(reader, since_ms, limit=limit, actor=actor)
        record = replace(record, rows=len(rows))
    except Exception as exc:
        record = replace(record, ok=False, error=error_text(exc))
        raise
    finally:
        record = replace(record, duration_ms=round((time.perf_counter() - started) * 1000))
        try:
            # A failed reading is audited before its error is reported; a reading that
            # cannot be audited is not shown.
            with contextlib.suppress(Exception) if not record.ok else contextlib.nullcontext():
                AuditWriter(writer).write(record)
        finally:
            reader.close()
            if writer is not reader:
                writer.close()
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
