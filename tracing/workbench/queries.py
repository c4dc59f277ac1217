"""The workbench's own reads besides the traces: the registry rows of premises and the
scans per hour at one premises."""

# Table names are constants; every value is a bound parameter.

from __future__ import annotations

from collections.abc import Sequence

from ingest.premises import Premises
from tracing.runner import QueryRunner


def premises_rows(runner: QueryRunner, ids: Sequence[str]) -> dict[str, Premises]:
    if not ids:
        return {}
    rows = runner.query(
        "SELECT premises_id, name, category, district, ward, agency, address, lat, lon"
        " FROM premises FINAL WHERE premises_id IN %(ids)s",
        {"ids": tuple(sorted(set(ids)))},
    )
    return {
        str(r[0]): Premises(
            str(r[0]),
            str(r[1]),
            str(r[2]),
            str(r[3]),
            str(r[4]),
            str(r[5]),
            str(r[6]),
            None if r[7] is None else float(r[7]),
            None if r[8] is None else float(r[8]),
        )
        for r in rows
    }


def scans_per_hour(
    runner: QueryRunner, premises_id: str, from_ms: int, to_ms: int
) -> list[tuple[int, int]]:
    """(epoch ms of the hour, distinct scans) at one premises; Vietnam's offset is whole
    hours, so UTC hours are local hours."""
    rows = runner.query(
        "SELECT toInt64(toUnixTimestamp(toStartOfHour(scanned_at))) * 1000 AS h,"
        " uniqExact(event_id) FROM scans WHERE premises_id = %(premises_id)s"
        " AND scanned_at >= fromUnixTimestamp64Milli(toInt64(%(from)s), 'UTC')"
        " AND scanned_at <= fromUnixTimestamp64Milli(toInt64(%(to)s), 'UTC')"
        " GROUP BY h ORDER BY h",
        {"premises_id": premises_id, "from": from_ms, "to": to_ms},
    )
    return [(int(h), int(n)) for h, n in rows]
