"""`scantrace report weekly|daily|send`: the compliance report from the rollups, one
edition per unit, as HTML, PDF, CSV, JSON or xlsx, and its delivery by e-mail.

Exit status: 0 written (or sent), 2 a bad argument (week, date, population, headcount or
recipients file, edition), 1 the query, the PDF printer or the mail server failed, or the
optional extra `report` is missing (the message names `pip install 'scantrace[report]'`).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from scantrace.commands import OUT_DIR, made_parent, one_line
from tracing.report.extras import MissingExtra, require
from tracing.report.i18n import Lang
from tracing.report.model import DIMENSIONS, Dimension, Period, Report

if TYPE_CHECKING:
    from tracing.report.settings import ReportSettings

FORMATS: Final = ("html", "pdf", "csv", "json", "xlsx")


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


def read_headcount(path: Path) -> dict[str, int]:
    """`agency,headcount` (UTF-8, a BOM allowed) to {agency: staff}; ValueError with the
    line number when a line is not one."""
    out: dict[str, int] = {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [c.strip().lower() for c in next(reader, [])]
        if header[:2] != ["agency", "headcount"]:
            raise ValueError(f"{path.name}: the header must be agency,headcount")
        for line, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            agency = row[0].strip() if row else ""
            text = row[1].strip().replace("_", "") if len(row) > 1 else ""
            if not agency or not text.isdigit() or int(text) == 0:
                raise ValueError(f"{path.name} line {line}: expected agency,headcount (> 0)")
            if agency in out:
                raise ValueError(f"{path.name} line {line}: {agency} is listed twice")
            out[agency] = int(text)
    return out


@dataclass(frozen=True)
class Options:
    """What shapes a report, from the command line."""

    lang: str = "vi"
    population: Path | None = None
    headcount: Path | None = None
    by: tuple[Dimension, ...] = ()
    weeks: int = 8
    cross: bool = False


def _options(f: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        [
            click.option(
                "--lang", type=click.Choice(["vi", "en"]), default="vi", help="Labels language"
            ),
            click.option(
                "--population",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                default=None,
                help="CSV district,population: adds distinct scanners per population",
            ),
            click.option(
                "--headcount",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                default=None,
                help="CSV agency,headcount: adds each agency's staff scanning at its offices",
            ),
            click.option(
                "--by",
                type=click.Choice(DIMENSIONS),
                multiple=True,
                help="Tables to show, several allowed [default: agency, district (ward when "
                "the registry has no districts), category]",
            ),
            click.option(
                "--weeks",
                type=click.IntRange(1, 104),
                default=8,
                show_default=True,
                help="Weeks of the trend",
            ),
            click.option("--cross", is_flag=True, help="Add the agency by district table"),
        ]
    ):
        f = option(f)
    return f


def _output_options(f: Callable[..., None]) -> Callable[..., None]:
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
                "--edition",
                default=None,
                help="One unit only: agency=NAME, district=NAME or ward=NAME",
            ),
            click.option(
                "--editions",
                type=click.Choice(["agency", "district", "ward"]),
                default=None,
                help="One file per unit of this kind and an index, into --out-dir",
            ),
            click.option(
                "--out-dir",
                type=click.Path(file_okay=False, path_type=Path),
                default=None,
                help="Folder of --editions [default: out/scantrace-report-<period>]",
            ),
        ]
    ):
        f = option(f)
    return f


@click.group()
def report() -> None:
    """Compliance reports per agency, district, ward and premises category
    (Asia/Ho_Chi_Minh)."""


@report.command()
@click.option("--week", required=True, help="ISO week, e.g. 2021-W46 (Monday to Sunday)")
@_output_options
@_options
def weekly(week: str, **kwargs: Any) -> None:
    """The report of one ISO week, compared with the week before."""
    _run(_week(week), **kwargs)


@report.command()
@click.option("--date", "day", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Local day")
@_output_options
@_options
def daily(day: datetime, **kwargs: Any) -> None:
    """The report of one day, compared with the day before."""
    _run(Period.day(day.date()), **kwargs)


@report.command()
@click.option("--week", required=True, help="ISO week, e.g. 2021-W46; `last` for the last one")
@click.option(
    "--recipients",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV email,edition (edition: province, agency=NAME, district=NAME, ward=NAME)",
)
@click.option("--dry-run", is_flag=True, help="List what would be sent, send nothing")
@_options
def send(week: str, recipients: Path, dry_run: bool, **kwargs: Any) -> None:
    """E-mail each recipient their edition of a week's report: PDF, with its HTML
    attached (SMTP settings: SCANTRACE_REPORT__SMTP__*)."""
    from tracing.report.mail import read_recipients

    period = _week(week)
    try:
        people = read_recipients(recipients)
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.BadParameter(str(exc), param_hint="--recipients") from None
    _check_extra("pdf")
    settings = _settings()
    result = _report(period, Options(**kwargs), settings)
    from tracing.report.delivery import deliver

    try:
        for line in deliver(result, people, settings.report, Options(**kwargs).lang, dry_run):
            click.echo(line)
    except (OSError, ValueError, RuntimeError) as exc:  # SMTP, DNS, Chromium: one line
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)


def _week(text: str) -> Period:
    if text == "last":
        from datetime import timedelta

        from ingest.contract import now_ms
        from sinks.rollup import local_day

        year, week, _ = (local_day(now_ms()) - timedelta(days=7)).isocalendar()
        text = f"{year}-W{week:02d}"
    try:
        return Period.week(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--week") from None


def _check_extra(fmt: str) -> None:
    try:
        require(fmt)
    except MissingExtra as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _settings() -> ReportSettings:
    from pydantic import ValidationError

    from tracing.report.settings import ReportSettings

    try:
        return ReportSettings()
    except ValidationError as exc:
        click.echo(f"error: {one_line(exc)}", err=True)
        sys.exit(2)


def _report(period: Period, opts: Options, settings: ReportSettings) -> Report:
    people: dict[str, int] | None = None
    if opts.population is not None:
        try:
            people = read_population(opts.population)
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.BadParameter(str(exc), param_hint="--population") from None
    staff: dict[str, int] | None = None
    if opts.headcount is not None:
        try:
            staff = read_headcount(opts.headcount)
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.BadParameter(str(exc), param_hint="--headcount") from None

    from ingest.contract import now_ms
    from tracing.report.build import build_report
    from tracing.report.queries import collect
    from tracing.runner import ClickHouseRunner

    try:
        runner = ClickHouseRunner(settings.clickhouse)
    except RuntimeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    try:
        data = collect(runner, period, opts.weeks)
    except Exception as exc:  # one line for the user, whatever the driver raised
        click.echo(f"error: query failed: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    finally:
        runner.close()
    return build_report(
        period,
        data,
        population=people,
        generated_at_ms=now_ms(),
        dimensions=opts.by or None,
        headcount=staff,
        trend_weeks=opts.weeks,
        cross=opts.cross,
        province=settings.report.province,
        authority=settings.report.authority,
    )


def _run(
    period: Period,
    fmt: str,
    out: Path | None,
    edition: str | None,
    editions: str | None,
    out_dir: Path | None,
    **kwargs: Any,
) -> None:
    from tracing.report.editions import edition as cut
    from tracing.report.editions import parse_edition

    _check_extra(fmt)
    unit: tuple[str, str] = ("", "")
    if edition is not None and editions is not None:
        raise click.UsageError("--edition and --editions exclude each other")
    if edition is not None:
        try:
            unit = parse_edition(edition)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--edition") from None
    opts = Options(**kwargs)
    settings = _settings()
    result = _report(period, opts, settings)
    try:
        if editions is not None:
            folder = out_dir or OUT_DIR / f"scantrace-report-{period.label}"
            paths = write_editions(result, editions, fmt, folder, opts.lang, settings)
        else:
            target = made_parent(out or OUT_DIR / f"scantrace-report-{period.label}.{fmt}")
            paths = write(cut(result, *unit), fmt, target, opts.lang, settings)
    except ValueError as exc:  # an edition the registry does not know
        raise click.BadParameter(str(exc), param_hint="--edition(s)") from None
    except RuntimeError as exc:  # the PDF printer
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for path in paths:
        click.echo(f"wrote {path}")


def write_editions(
    result: Report, dimension: str, fmt: str, folder: Path, lang: str, settings: ReportSettings
) -> list[Path]:
    """One file per unit of `dimension` and `index.html` linking them."""
    from tracing.report.editions import edition, file_stem, units
    from tracing.report.render_index import render_index

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    entries: list[tuple[str, str]] = []
    used: set[str] = set()
    for key in units(result, dimension):
        stem = file_stem(dimension, key)
        while stem in used:
            stem += "-2"
        used.add(stem)
        files = write(
            edition(result, dimension, key), fmt, folder / f"{stem}.{fmt}", lang, settings
        )
        written += files
        entries.append((key, files[0].name))
    index = folder / "index.html"
    index.write_text(render_index(result, dimension, entries, _lang(lang)), encoding="utf-8")
    return [*written, index]


def _lang(lang: str) -> Lang:
    return "en" if lang == "en" else "vi"


def write(
    result: Report, fmt: str, target: Path, lang: str, settings: ReportSettings | None = None
) -> list[Path]:
    """Render `result` as `fmt` into `target`; returns the files written."""
    language = _lang(lang)
    if fmt in ("html", "pdf"):
        from tracing.report.render_html import render_html

        html = render_html(result, language)
        if fmt == "html":
            target.write_text(html, encoding="utf-8")
        else:
            from tracing.report.pdf import html_to_pdf

            chromium = settings.report.chromium if settings else "/usr/bin/chromium"
            target.write_bytes(html_to_pdf(html, chromium))
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
