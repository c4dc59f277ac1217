"""`scantrace report weekly|daily`: the compliance report from the daily rollup.

Exit status: 0 written, 2 a bad argument (week, date, population file), 1 the query
failed or the optional extra `report` is missing (the message names `pip install
'scantrace[report]'`).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Final

import click

from scantrace.commands import OUT_DIR, made_parent
from tracing.report.extras import MissingExtra, require
from tracing.report.i18n import Lang
from tracing.report.model import Period, Report

FORMATS: Final = ("html", "csv", "json", "xlsx")


def read_population(path: Path) -> dict[str, int]:
    """`district,population` (UTF-8, a BOM allowed) to {district: people}; ValueError with
    the line number when a line is not one."""
    out: dict[str, int] = {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip().lower() for c in reader.fieldnames or ()]
        if fields[:2] != ["district", "population"]:
            raise ValueError(f"{path.name}: the header must be district,population")
        for line, row in enumerate(reader, start=2):
            values = list(row.values())
            district = str(values[0] or "").strip()
            text = str(values[1] or "").strip().replace("_", "")
            if not district or not text.isdigit():
                raise ValueError(f"{path.name} line {line}: expected district,population")
            out[district] = int(text)
    return out


def _options(f: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        [
            click.option(
                "--format", "fmt", type=click.Choice(FORMATS), default="html", help="Output format"
            ),
            click.option(
                "--out",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="Output file [default: out/scantrace-report-<period>.<format>; csv also "
                "writes <name>-inactive.csv]",
            ),
            click.option(
                "--lang", type=click.Choice(["vi", "en"]), default="vi", help="Labels language"
            ),
            click.option(
                "--population",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                default=None,
                help="CSV district,population: adds distinct scanners per population",
            ),
        ]
    ):
        f = option(f)
    return f


@click.group()
def report() -> None:
    """Compliance reports per agency, district and premises category (Asia/Ho_Chi_Minh)."""


@report.command()
@click.option("--week", required=True, help="ISO week, e.g. 2021-W46 (Monday to Sunday)")
@_options
def weekly(week: str, fmt: str, out: Path | None, lang: str, population: Path | None) -> None:
    """The report of one ISO week, compared with the week before."""
    try:
        period = Period.week(week)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--week") from None
    _run(period, fmt, out, lang, population)


@report.command()
@click.option("--date", "day", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Local day")
@_options
def daily(day: datetime, fmt: str, out: Path | None, lang: str, population: Path | None) -> None:
    """The report of one day, compared with the day before."""
    _run(Period.day(day.date()), fmt, out, lang, population)


def _run(period: Period, fmt: str, out: Path | None, lang: str, population: Path | None) -> None:
    try:
        require(fmt)
    except MissingExtra as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    people: dict[str, int] | None = None
    if population is not None:
        try:
            people = read_population(population)
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.BadParameter(str(exc), param_hint="--population") from None

    from ingest.contract import now_ms
    from tracing.report.build import build_report
    from tracing.report.queries import collect
    from tracing.runner import ClickHouseRunner
    from tracing.settings import TracerSettings

    try:
        runner = ClickHouseRunner(TracerSettings().clickhouse)
    except RuntimeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    try:
        data = collect(runner, period)
    except Exception as exc:  # one line for the user, whatever the driver raised
        click.echo(f"error: query failed: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    finally:
        runner.close()
    result = build_report(
        period,
        registered=data.registered,
        now=data.now,
        before=data.before,
        daily=data.daily,
        inactive=data.inactive,
        population=people,
        generated_at_ms=now_ms(),
    )
    target = made_parent(out or OUT_DIR / f"scantrace-report-{period.label}.{fmt}")
    for path in write(result, fmt, target, lang):
        click.echo(f"wrote {path}")


def write(result: Report, fmt: str, target: Path, lang: str) -> list[Path]:
    """Render `result` as `fmt` into `target`; returns the files written."""
    language: Lang = "en" if lang == "en" else "vi"
    if fmt == "html":
        from tracing.report.render_html import render_html

        target.write_text(render_html(result, language), encoding="utf-8")
        return [target]
    if fmt == "json":
        from tracing.report.render_json import render_json

        target.write_text(render_json(result, language), encoding="utf-8")
        return [target]
    if fmt == "xlsx":
        from tracing.report.render_xlsx import render_xlsx

        target.write_bytes(render_xlsx(result, language))
        return [target]
    from tracing.report.render_csv import render_csv

    summary, inactive = render_csv(result, language)
    second = target.with_name(f"{target.stem}-inactive{target.suffix or '.csv'}")
    target.write_text(summary, encoding="utf-8", newline="")
    second.write_text(inactive, encoding="utf-8", newline="")
    return [target, second]
