"""The synthetic data's files: the premises registry CSV, the district populations CSV,
and scans as JSON lines (`.jsonl`) or a msgpack stream (`.msgpack`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import msgpack

from ingest.premises import CSV_COLUMNS, Premises
from ingest.registry import write_registry_csv
from scantrace.synth.province import DISTRICT_POPULATION
from scantrace.synth.scans import Scan

__all__ = [
    "ScanFormat",
    "read_premises_csv",
    "read_scans",
    "write_population_csv",
    "write_premises_csv",
    "write_scans",
]


def write_premises_csv(premises: Iterable[Premises], path: str | Path) -> int:
    """The registry CSV (UTF-8, header `CSV_COLUMNS`, as `scantrace premises export` writes
    it: `ingest.registry.write_registry_csv`); returns the number of rows."""
    with Path(path).open("w", encoding="utf-8", newline="") as f:
        return write_registry_csv(premises, f)


def read_premises_csv(path: str | Path) -> list[Premises]:
    """Read a registry CSV written by `write_premises_csv` (or the registry export)."""
    with Path(path).open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"expected columns {CSV_COLUMNS}, got {reader.fieldnames}")
        return [
            Premises(
                premises_id=row["premises_id"],
                name=row["name"],
                category=row["category"],
                district=row["district"],
                ward=row["ward"],
                agency=row["agency"],
                address=row["address"],
                lat=float(row["lat"]) if row["lat"] else None,
                lon=float(row["lon"]) if row["lon"] else None,
            )
            for row in reader
        ]


def write_population_csv(path: str | Path) -> None:
    """`district,population` for the per-capita columns of the compliance report."""
    with Path(path).open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("district", "population"))
        for district, population in DISTRICT_POPULATION.items():
            writer.writerow((district, population))


ScanFormat = Literal["jsonl", "msgpack"]


def _format_of(path: Path, fmt: ScanFormat | None) -> ScanFormat:
    if fmt is not None:
        return fmt
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".msgpack":
        return "msgpack"
    raise ValueError(f"cannot tell the format of {path.name}: use .jsonl or .msgpack, or fmt=")


def write_scans(path: str | Path, scans: Iterable[Scan], fmt: ScanFormat | None = None) -> int:
    """Write scans as JSON lines (`.jsonl`) or a msgpack stream (`.msgpack`); returns count."""
    target = Path(path)
    kind = _format_of(target, fmt)
    count = 0
    with target.open("wb") as f:
        if kind == "jsonl":
            dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
            for scan in scans:
                f.write(dumps(scan).encode() + b"\n")
                count += 1
        else:
            pack = msgpack.Packer(use_bin_type=True).pack
            for scan in scans:
                f.write(pack(scan))
                count += 1
    return count


def read_scans(path: str | Path, fmt: ScanFormat | None = None) -> Iterator[Scan]:
    """Stream the scans of a file written by `write_scans`, in file order."""
    source = Path(path)
    kind = _format_of(source, fmt)
    with source.open("rb") as f:
        if kind == "jsonl":
            for line in f:
                if line.strip():
                    yield json.loads(line)
        else:
            yield from msgpack.Unpacker(f, raw=False)
