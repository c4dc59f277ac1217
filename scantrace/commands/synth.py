"""`scantrace synth premises|scans|population`: the synthetic province, written to files."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import click

from scantrace import synth as gen
from scantrace.commands import OUT_DIR, made_parent

PREMISES_CSV = str(OUT_DIR / "premises.csv")


def _yesterday() -> date:
    return (datetime.now(tz=gen.TZ) - timedelta(days=1)).date()


@click.group()
def synth() -> None:
    """Synthetic Ninh Thuận data, deterministic from a seed."""


@synth.command("premises")
@click.option("--seed", default=1, show_default=True)
@click.option("-n", "--count", default=3000, show_default=True, help="Number of premises")
@click.option("--out", type=click.Path(dir_okay=False), default=PREMISES_CSV, show_default=True)
def synth_premises(seed: int, count: int, out: str) -> None:
    """A premises registry CSV (the registry import format)."""
    n = gen.write_premises_csv(gen.generate_premises(seed, count), made_parent(Path(out)))
    click.echo(f"wrote {n} premises to {out}")


@synth.command("population")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=str(OUT_DIR / "population.csv"),
    show_default=True,
)
def synth_population(out: str) -> None:
    """District populations (for the report's uptake rate)."""
    gen.write_population_csv(made_parent(Path(out)))
    click.echo(f"wrote {len(gen.DISTRICT_POPULATION)} districts to {out}")


@synth.command("scans")
@click.option("--seed", default=1, show_default=True)
@click.option(
    "--premises",
    "premises_csv",
    type=click.Path(exists=True, dir_okay=False),
    default=PREMISES_CSV,
    show_default=True,
)
@click.option(
    "--day",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Local day in Asia/Ho_Chi_Minh [default: yesterday]",
)
@click.option("--persons", default=115_000, show_default=True, help="App users")
@click.option("--scans", "count", type=int, default=None, help="Exact number of records")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=str(OUT_DIR / "scans.msgpack"),
    show_default=True,
    help=".msgpack or .jsonl",
)
def synth_scans(
    seed: int, premises_csv: str, day: datetime | None, persons: int, count: int | None, out: str
) -> None:
    """A day of scans in arrival order, with duplicates, repeats, late and bad records."""
    premises = gen.read_premises_csv(premises_csv)
    scan_day = gen.generate_scans(
        seed, premises, day.date() if day else _yesterday(), persons=persons, scans=count
    )
    n = gen.write_scans(made_parent(Path(out)), scan_day.scans)
    t = scan_day.truth
    click.echo(
        f"wrote {n} scans for {scan_day.day} to {out}: {t.stored} to store, "
        f"{t.duplicates} duplicates, {t.repeats} repeats, {t.bad} bad, "
        f"{t.unknown_premises} at unknown premises, {t.late} late"
    )
