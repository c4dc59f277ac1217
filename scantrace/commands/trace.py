"""`scantrace trace` and `scantrace trace-premises`: the tracer's questions from a shell.

Every question is written to the audit log with the OS user as the tracer (from the
process's user id, not from USER or LOGNAME, which anyone can set), failed ones too. Every
query runs under the CLI's limits (`SCANTRACE_CLI__MAX_EXECUTION_S`,
`SCANTRACE_CLI__MAX_MEMORY_BYTES`). Exit status: 0 answered, 2 the question cannot be
asked, 1 the query failed (a limit hit included).
"""

from __future__ import annotations

import json
import os
import pwd
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from tracing.audit import Actor, AuditWriter
from tracing.formatting import (
    FORMATS,
    premises_csv,
    premises_json,
    premises_table,
    trace_csv,
    trace_json,
    trace_table,
)
from tracing.rules import RULES, Rule, RuleError
from tracing.runner import ClickHouseRunner, QueryLimitExceeded
from tracing.settings import TracerSettings
from tracing.sql import TraceTables
from tracing.trace import SchemaTooOld, TraceInputError, Tracer, check_schema, parse_time

T = TypeVar("T")

_PERIOD = [
    click.option(
        "--from", "from_", required=True, help="Start of the period, ISO-8601 with offset"
    ),
    click.option("--to", "to", required=True, help="End of the period, ISO-8601 with offset"),
    click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="table", help="Output format"
    ),
    click.option(
        "--out",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        default=None,
        help="Write the answer to this file instead of standard output",
    ),
]


def _with_period(f: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_PERIOD):
        f = option(f)
    return f


def os_user() -> str:
    """The user this process runs as, from its real user id: `name (uid N)`, or
    `uid N` for an id without a passwd entry (a container's)."""
    uid = os.getuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def cli_actor(role: str = "tracer") -> Actor:
    return Actor(name=os_user(), role=role, channel="cli")


def _ask(run: Callable[[Tracer], T]) -> T:
    settings = TracerSettings()
    try:
        runner = ClickHouseRunner(settings.clickhouse, limits=settings.cli.limits())
    except RuntimeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    try:
        check_schema(runner)
    except SchemaTooOld as exc:
        runner.close()
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    try:
        tables = TraceTables()
        tracer = Tracer(
            runner, AuditWriter(runner, tables), settings.clickhouse.retention_days, tables
        )
        return run(tracer)
    except TraceInputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except QueryLimitExceeded as exc:  # audited too
        click.echo(
            f"error: {exc}: ask a narrower question, or raise SCANTRACE_CLI__MAX_EXECUTION_S"
            " / SCANTRACE_CLI__MAX_MEMORY_BYTES",
            err=True,
        )
        sys.exit(1)
    except Exception as exc:  # the failure is audited; the user gets one line
        click.echo(f"error: query failed: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    finally:
        runner.close()


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        out.write_text(text, encoding="utf-8", newline="")


@click.command()
@click.argument("person_id")
@_with_period
@click.option("--rule", type=click.Choice(RULES), default="scan-window", help="Exposure rule")
@click.option("--window-min", type=int, default=60, help="scan-window: minutes either side")
@click.option("--buffer-min", type=int, default=0, help="overlap: widen the case's visits")
@click.option("--min-overlap-min", type=int, default=0, help="overlap: minimum minutes together")
@click.option("--merge-gap-min", type=int, default=30, help="Repeated scans within: one visit")
@click.option("--depth", type=click.IntRange(1, 2), default=1, help="1 = F1, 2 = F1 and F2")
@click.option(
    "--cap-at-next-scan/--no-cap-at-next-scan",
    default=None,
    help="A visit ends at the person's next scan elsewhere [default: on under overlap]",
)
def trace(
    person_id: str,
    from_: str,
    to: str,
    fmt: str,
    out: Path | None,
    rule: str,
    window_min: int,
    buffer_min: int,
    min_overlap_min: int,
    merge_gap_min: int,
    depth: int,
    cap_at_next_scan: bool | None,
) -> None:
    """Where was PERSON_ID in the period, and who was there at the same time (audited)."""
    try:
        the_rule = Rule(
            rule,  # type: ignore[arg-type]
            window_min=window_min,
            buffer_min=buffer_min,
            min_overlap_min=min_overlap_min,
            merge_gap_min=merge_gap_min,
            depth=depth,
            cap_at_next_scan=cap_at_next_scan,
        )
        from_ms, to_ms = parse_time(from_, "from"), parse_time(to, "to")
    except (RuleError, TraceInputError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    result = _ask(lambda t: t.trace(cli_actor(), person_id, from_ms, to_ms, the_rule))
    if fmt == "json":
        text = json.dumps(trace_json(result), ensure_ascii=False, indent=2) + "\n"
    elif fmt == "csv":
        text = trace_csv(result)
    else:
        text = trace_table(result)
    _emit(text, out)


@click.command("trace-premises")
@click.argument("premises_id")
@_with_period
def trace_premises(premises_id: str, from_: str, to: str, fmt: str, out: Path | None) -> None:
    """Everyone who scanned at PREMISES_ID in the period (audited)."""
    try:
        from_ms, to_ms = parse_time(from_, "from"), parse_time(to, "to")
    except TraceInputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    result = _ask(lambda t: t.trace_premises(cli_actor(), premises_id, from_ms, to_ms))
    if fmt == "json":
        text = json.dumps(premises_json(result), ensure_ascii=False, indent=2) + "\n"
    elif fmt == "csv":
        text = premises_csv(result)
    else:
        text = premises_table(result)
    _emit(text, out)
