"""`scantrace synth premises|scans|population`: the synthetic province, written to files
(`--out -`: standard output, the messages then on standard error)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import click

from ingest.errors import InvalidInput
from scantrace import progress
from scantrace import synth as gen
from scantrace.commands import OUT_DIR, InputFile, to_stdout, write_or_print
from scantrace.timeopts import DAY

PREMISES_CSV = str(OUT_DIR / "premises.csv")
_OUT = click.Path(dir_okay=False, allow_dash=True)


def _yesterday() -> date:
    return (datetime.now(tz=gen.TZ) - timedelta(days=1)).date()


def _said(text: str, out: str) -> None:
    """What was written: on standard error when the data went to standard output."""
    click.echo(text, err=to_stdout(out))


@click.group()
def synth() -> None:
    """Synthetic Ninh Thuận data, deterministic from a seed."""


@synth.command("premises")
@click.option("--seed", default=1, show_default=True)
@click.option("-n", "--count", default=3000, show_default=True, help="Number of premises")
@click.option("--out", type=_OUT, default=PREMISES_CSV, show_default=True, help="CSV, - = stdout")
def synth_premises(seed: int, count: int, out: str) -> None:
    """A premises registry CSV (the registry import format)."""
    premises = gen.generate_premises(seed, count)
    n = write_or_print(Path(out), lambda p: gen.write_premises_csv(premises, p), ".csv")
    _said(f"wrote {n} premises to {out}", out)


@synth.command("population")
@click.option(
    "--out", type=_OUT, default=str(OUT_DIR / "population.csv"), show_default=True, help="CSV"
)
def synth_population(out: str) -> None:
    """District populations (for the report's uptake rate)."""
    write_or_print(Path(out), gen.write_population_csv, ".csv")
    _said(f"wrote {len(gen.DISTRICT_POPULATION)} districts to {out}", out)


@synth.command("scans")
@click.option("--seed", default=1, show_default=True)
@click.option(
    "--premises",
    "premises_csv",
    type=InputFile(path_type=str),
    default=PREMISES_CSV,
    show_default=True,
)
@click.option(
    "--day",
    type=DAY,
    default=None,
    help="Local day in Asia/Ho_Chi_Minh: 2021-11-16, yesterday, -3d [default: yesterday]",
)
@click.option("--persons", default=115_000, show_default=True, help="App users")
@click.option("--scans", "count", type=int, default=None, help="Exact number of records")
@click.option(
    "--out",
    type=_OUT,
    default=str(OUT_DIR / "scans.msgpack"),
    show_default=True,
    help=".msgpack or .jsonl; - = JSON lines on standard output",
)
def synth_scans(
    seed: int, premises_csv: str, day: date | None, persons: int, count: int | None, out: str
) -> None:
    """A day of scans in arrival order, with duplicates, repeats, late and bad records."""
    premises = gen.read_premises_csv(premises_csv)
    try:
        with progress.ticker("generating scans"):
            scan_day = gen.generate_scans(
                seed, premises, day or _yesterday(), persons=persons, scans=count
            )
    except ValueError as exc:  # options that cannot make a day (too few persons, ...)
        raise InvalidInput(str(exc), hint="change --scans, --persons or --premises") from exc
    suffix = ".jsonl" if to_stdout(out) else Path(out).suffix
    n = write_or_print(Path(out), lambda p: gen.write_scans(p, scan_day.scans), suffix)
    t = scan_day.truth
    _said(
        f"wrote {n} scans for {scan_day.day} to {out}: {t.stored} to store, "
        f"{t.duplicates} duplicates, {t.repeats} repeats, {t.bad} bad, "
        f"{t.unknown_premises} at unknown premises, {t.late} late",
        out,
    )
