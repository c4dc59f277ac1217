"""`scantrace premises import|export`: the premises registry (compacted topic `premises`)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import click

from ingest.admin import ensure_topics
from ingest.registry import (
    RegistryFileError,
    RegistrySettings,
    import_registry,
    load_registry_csv,
    read_registry,
    write_registry_csv,
)


@click.group()
def premises() -> None:
    """The premises registry: import a CSV, export the current registry.

    Kafka from SCANTRACE_KAFKA__BOOTSTRAP (or the running local services).
    """


@premises.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Publish the valid rows even when some rows are invalid (they are listed)",
)
@click.option("--dry-run", is_flag=True, help="Validate and compare only; publish nothing")
def import_(file: Path, skip_invalid: bool, dry_run: bool) -> None:
    """Validate FILE.csv and publish its new and changed premises.

    Columns: premises_id,name,category,district,ward,agency,address,lat,lon (UTF-8).
    Unless --skip-invalid, nothing is published when any row is invalid. Unchanged rows
    are not published again: re-importing the same file changes nothing.
    """
    try:
        parsed = load_registry_csv(file)
    except (RegistryFileError, OSError) as exc:
        click.echo(f"{file}: {exc}", err=True)
        sys.exit(2)
    for error in parsed.errors:
        click.echo(f"{file}:{error}", err=True)
    if parsed.errors and not skip_invalid:
        click.echo(
            f"{file}: {parsed.invalid_lines} of {parsed.data_rows} rows invalid; nothing "
            "published (fix them, or use --skip-invalid)",
            err=True,
        )
        sys.exit(1)
    kafka = RegistrySettings().kafka
    try:
        if not dry_run:
            ensure_topics(kafka)
        result = import_registry(kafka, parsed, dry_run=dry_run)
    except (RuntimeError, TimeoutError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    action = "would publish" if dry_run else "published"
    click.echo(
        f"{file}: {result.data_rows} rows: {result.new} new, {result.updated} updated, "
        f"{result.unchanged} unchanged, {result.invalid} invalid (skipped); "
        f"{action} {result.new + result.updated if dry_run else result.published} "
        f"to {kafka.premises}"
    )


@premises.command("export")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="CSV file to write [default: standard output]",
)
def export(out: Path | None) -> None:
    """Write the current registry as CSV (latest record per premises_id), UTF-8."""
    kafka = RegistrySettings().kafka
    try:
        registry = read_registry(kafka)
    except (RuntimeError, TimeoutError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if out is not None:
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
