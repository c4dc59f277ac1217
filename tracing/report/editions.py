"""One unit's edition of the report: the province report cut down to one agency, district
or ward, for sending each head of agency their own page.

An edition only leaves things out: every number it shows is the province edition's, with
the same marks, so putting the two side by side gives nothing the province edition does
not already give (the suppression is decided once, on the whole province).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final

from sinks.schema import GROUP_SEP
from tracing.report.model import CrossTable, Report

UNIT_DIMENSIONS: Final = ("agency", "district", "ward")


def parse_edition(text: str) -> tuple[str, str]:
    """`agency=Sở Y tế` to ("agency", "Sở Y tế"); `province` to ("", ""). ValueError else."""
    text = text.strip()
    if text == "province":
        return "", ""
    dim, sep, key = text.partition("=")
    dim = dim.strip()
    if not sep or dim not in UNIT_DIMENSIONS or not key.strip():
        raise ValueError(
            f"not an edition: {text!r}; expected province or {'|'.join(UNIT_DIMENSIONS)}=NAME"
        )
    return dim, key.strip()


def units(report: Report, dimension: str) -> list[str]:
    """The units of `dimension` that have premises in the registry."""
    if not report.has(dimension):  # type: ignore[arg-type]
        raise ValueError(f"the report has no {dimension} table (see --by)")
    return [r.key for r in report.table(dimension).rows if r.registered]  # type: ignore[arg-type]


def _cross(cross: CrossTable | None, dimension: str, key: str) -> CrossTable | None:
    if cross is None:
        return None
    if dimension == "agency":
        return replace(cross, rows=tuple(r for r in cross.rows if r[0] == key))
    if dimension == "district" and key in cross.columns:
        i = cross.columns.index(key)
        return CrossTable((key,), tuple((a, (cells[i],)) for a, cells in cross.rows))
    return None


def edition(report: Report, dimension: str, key: str) -> Report:
    """`report` for one unit; the province edition itself for ("", "")."""
    if not dimension:
        return report
    if not report.has(dimension):  # type: ignore[arg-type]
        raise ValueError(f"the report has no {dimension} table (see --by)")
    if key not in {r.key for r in report.table(dimension).rows}:  # type: ignore[arg-type]
        raise ValueError(f"no {dimension} named {key!r} in the registry")
    tables = tuple(
        replace(t, rows=tuple(r for r in t.rows if r.key == key))
        for t in report.tables
        if t.dimension == dimension
    )
    return replace(
        report,
        tables=tables,
        trend=tuple(
            s
            for s in report.trend
            if s.dimension == "total" or (s.dimension, s.key) == (dimension, key)
        ),
        cross=_cross(report.cross, dimension, key),
        staff=(
            tuple(r for r in report.staff if r.agency == key)
            if report.staff is not None and dimension == "agency"
            else None
        ),
        inactive=tuple(p for p in report.inactive if getattr(p, dimension) == key),
        unregistered=(),
        rejected=(),
        edition=(dimension, key),
    )


def file_stem(dimension: str, key: str) -> str:
    """A file name for a unit: its dimension and name, letters and digits kept (Vietnamese
    letters too), the rest as "-"."""
    name = re.sub(r"[^\w]+", "-", key.replace(GROUP_SEP, "-"), flags=re.UNICODE).strip("-")
    return f"{dimension}-{name or 'unknown'}"
