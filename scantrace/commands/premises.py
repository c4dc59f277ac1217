"""`scantrace premises import|export`: the premises registry (compacted topic `premises`)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import click

from ingest.admin import ensure_topics
from ingest.errors import InvalidInput
from ingest.kafka_probe import check_kafka
from ingest.registry import (
    RegistrySettings,
    import_registry,
    load_registry_csv,
    read_registry,
    write_registry_csv,
)
from scantrace import progress
from scantrace.commands import InputFile


@click.group()
def premises() -> None:
    """The premises registry: import a CSV, export the current registry.

    Kafka from SCANTRACE_KAFKA__BOOTSTRAP (or the running local services).
    """


@premises.command("import")
@click.argument("file", type=InputFile())
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Publish the valid rows even when some rows are invalid (they are listed)",
)
@click.option("--dry-run", is_flag=True, help="Validate and compare only; publish nothing")
@click.option("--json", "as_json", is_flag=True, help="The outcome as one JSON object")
def import_(file: Path, skip_invalid: bool, dry_run: bool, as_json: bool) -> None:
    """Validate FILE.csv and publish its new and changed premises.

    Columns: premises_id,name,category,district,ward,agency,address,lat,lon (UTF-8).
    Unless --skip-invalid, nothing is published when any row is invalid. Unchanged rows
    are not published again: re-importing the same file changes nothing.
    """
    parsed = load_registry_csv(file)
    for error in parsed.errors:
        click.echo(f"{file}:{error}", err=True)
    if parsed.errors and not skip_invalid:
        raise InvalidInput(
            f"{file}: {parsed.invalid_lines} of {parsed.data_rows} rows invalid; nothing published",
            hint="fix them, or use --skip-invalid",
        )
    kafka = RegistrySettings().kafka
    check_kafka(kafka, [kafka.premises])  # one line, not a client's retries, when it is down
    if not dry_run:
        ensure_topics(kafka)
    with _Follow("publishing premises") as follow:
        result = import_registry(kafka, parsed, dry_run=dry_run, acknowledged=follow)
    would = result.new + result.updated
    if as_json:
        click.echo(
            json.dumps(
                {
                    "file": str(file),
                    "topic": kafka.premises,
                    "dry_run": dry_run,
                    "rows": result.data_rows,
                    "new": result.new,
                    "updated": result.updated,
                    "unchanged": result.unchanged,
                    "invalid": result.invalid,
                    "published": would if dry_run else result.published,
                    "version": result.version,
                }
            )
        )
        return
    action = "would publish" if dry_run else "published"
    click.echo(
        f"{file}: {result.data_rows} rows: {result.new} new, {result.updated} updated, "
        f"{result.unchanged} unchanged, {result.invalid} invalid (skipped); "
        f"{action} {would if dry_run else result.published} to {kafka.premises}"
    )


class _Follow:
    """`acknowledged(done, total)` drawn as a progress bar (on a terminal)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.stack = contextlib.ExitStack()
        self.bar: progress.Progress | None = None
        self.done = 0

    def __enter__(self) -> _Follow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = self.stack.enter_context(progress.bar(total, self.label))
        self.bar.update(done - self.done)
        self.done = done


@premises.command("export")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True, path_type=Path),
    default=None,
    help="CSV file to write, - for standard output [default: standard output]",
)
def export(out: Path | None) -> None:
    """Write the current registry as CSV (latest record per premises_id), UTF-8."""
    kafka = RegistrySettings().kafka
    check_kafka(kafka, [kafka.premises])
    registry = read_registry(kafka)
    if out is not None and str(out) != "-":
        with out.open("w", encoding="utf-8", newline="") as fh:
            count = write_registry_csv(registry.values(), fh)
    else:
        stream = io.TextIOWrapper(click.get_binary_stream("stdout"), encoding="utf-8", newline="")
        try:
            count = write_registry_csv(registry.values(), stream)
            stream.flush()
        finally:
            stream.detach()
    click.echo(f"exported {count} premises from {kafka.premises}", err=True)
