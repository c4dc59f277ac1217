"""`scantrace trace` and `scantrace trace-premises`: the tracer's questions from a shell.

Every question is written to the audit log with the OS user as the tracer (from the
process's user id, not from USER or LOGNAME, which anyone can set), failed ones too. The
question is checked before anything connects (times, period, id, the rule); a refused
question is still audited when ClickHouse can be reached. Every query runs under the
CLI's limits (`SCANTRACE_CLI__MAX_EXECUTION_S`, `SCANTRACE_CLI__MAX_MEMORY_BYTES`).
Failures become one line and an exit code (`scantrace.exits`): 0 answered (an answer of
nobody included), 2 the question cannot be asked, 3 ClickHouse not reachable, 1 the query
failed (a limit hit included).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from ingest.contract import now_ms
from ingest.errors import InvalidInput
from ingest.timeparse import check_period
from scantrace import progress
from scantrace.timeopts import END, START, TIME_HELP
from tracing.audit import Action, Actor, AuditRecord, AuditWriter
from tracing.formatting import (
    FORMATS,
    local_time,
    premises_csv,
    premises_json,
    premises_table,
    trace_csv,
    trace_json,
    trace_table,
)
from tracing.rules import RULES, Rule
from tracing.runner import ClickHouseRunner, QueryLimitExceeded
from tracing.settings import TracerSettings
from tracing.sql import TraceTables
from tracing.trace import Tracer, check_question, check_schema, error_text

T = TypeVar("T")

LIMIT_HINT = (
    "ask a narrower question, or raise SCANTRACE_CLI__MAX_EXECUTION_S / "
    "SCANTRACE_CLI__MAX_MEMORY_BYTES"
)

_PERIOD = [
    click.option(
        "--from", "from_ms", type=START, required=True, help=f"Start of the period, {TIME_HELP}"
    ),
    click.option(
        "--to",
        "to_ms",
        type=END,
        required=True,
        help="End of the period, in the same forms; a date means the end of that day",
    ),
    click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="table", help="Output format"
    ),
    click.option(
        "--out",
        type=click.Path(dir_okay=False, writable=True, allow_dash=True, path_type=Path),
        default=None,
        help="Write the answer to this file instead of standard output (- : standard output)",
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


def _checked(
    settings: TracerSettings,
    action: Action,
    subject: str,
    from_ms: int,
    to_ms: int,
    rule: dict[str, object],
) -> None:
    """The question's checks, before anything connects. A refused one is audited when
    ClickHouse can be reached (it read nothing; the refusal is still a question asked)."""
    try:
        check_period(from_ms, to_ms)
        check_question(subject, from_ms, to_ms, settings.clickhouse.retention_days)
    except InvalidInput as exc:
        record = AuditRecord(
            cli_actor(), action, subject, from_ms, to_ms, now_ms(), rule, ok=False,
            error=error_text(exc),
        )  # fmt: skip
        with contextlib.suppress(Exception):
            runner = ClickHouseRunner(settings.clickhouse, limits=settings.cli.limits())
            try:
                AuditWriter(runner, TraceTables()).write(record)
            finally:
                runner.close()
        raise


def _ask(settings: TracerSettings, run: Callable[[Tracer], T], label: str = "") -> T:
    runner = ClickHouseRunner(settings.clickhouse, limits=settings.cli.limits())
    try:
        check_schema(runner)
        tables = TraceTables()
        tracer = Tracer(
            runner, AuditWriter(runner, tables), settings.clickhouse.retention_days, tables
        )
        with progress.ticker(label) if label else contextlib.nullcontext():
            return run(tracer)
    except QueryLimitExceeded as exc:  # audited too
        exc.hint = LIMIT_HINT
        raise
    finally:
        runner.close()


def _emit(text: str, out: Path | None) -> None:
    if out is None or str(out) == "-":
        click.echo(text, nl=not text.endswith("\n"))
    else:
        out.write_text(text, encoding="utf-8", newline="")


def _say(text: str) -> None:
    """A remark for the person at the terminal, on standard error: the answer on standard
    output stays what its format says."""
    click.echo(text, err=True)


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
    from_ms: int,
    to_ms: int,
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
    """Where was PERSON_ID in the period, and who was there at the same time (audited).
    ClickHouse from SCANTRACE_CLICKHOUSE__URL (or the running local services); limits
    SCANTRACE_CLI__MAX_EXECUTION_S, SCANTRACE_CLI__MAX_MEMORY_BYTES.

    \b
    Example: scantrace trace P0a1b2c3 --from 2021-10-01 --to 2021-10-14
             scantrace trace P0a1b2c3 --from -14d --to now --depth 2 --format csv --out f1.csv
    """
    the_rule = Rule(
        rule,  # type: ignore[arg-type]
        window_min=window_min,
        buffer_min=buffer_min,
        min_overlap_min=min_overlap_min,
        merge_gap_min=merge_gap_min,
        depth=depth,
        cap_at_next_scan=cap_at_next_scan,
    )
    settings = TracerSettings()
    _checked(settings, "trace", person_id, from_ms, to_ms, the_rule.echo())
    label = "tracing F1 and F2 contacts" if depth == 2 else ""
    result = _ask(
        settings,
        lambda t: t.trace(cli_actor(), person_id, from_ms, to_ms, the_rule),
        label,
    )
    if not result.visits:
        _say(
            f"{person_id} has no scans from {local_time(from_ms)} to {local_time(to_ms)} "
            "(Asia/Ho_Chi_Minh): nobody to trace"
        )
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
def trace_premises(premises_id: str, from_ms: int, to_ms: int, fmt: str, out: Path | None) -> None:
    """Everyone who scanned at PREMISES_ID in the period (audited). ClickHouse from
    SCANTRACE_CLICKHOUSE__URL (or the running local services).

    \b
    Example: scantrace trace-premises NT-000123 --from yesterday --to today
    """
    settings = TracerSettings()
    _checked(settings, "trace_premises", premises_id, from_ms, to_ms, {})
    result = _ask(settings, lambda t: t.trace_premises(cli_actor(), premises_id, from_ms, to_ms))
    if not result.visitors:
        _say(
            f"nobody scanned at {premises_id} from {local_time(from_ms)} to {local_time(to_ms)} "
            "(Asia/Ho_Chi_Minh)"
        )
    if fmt == "json":
        text = json.dumps(premises_json(result), ensure_ascii=False, indent=2) + "\n"
    elif fmt == "csv":
        text = premises_csv(result)
    else:
        text = premises_table(result)
    _emit(text, out)
