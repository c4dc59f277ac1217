"""Reference reads over the sink's tables for the integration tests: queries that stay
right while duplicates exist.

`scans` is idempotent by event_id only eventually: ReplacingMergeTree collapses a replayed
row when it merges the parts, which may be minutes later or, for a part that is never
merged again, not at all. Until then a row can be there twice. Every query on `scans`
therefore obeys one rule: it never counts rows. It returns a set, a min/max, a
`uniqExact(event_id)`, or rows made distinct with `LIMIT 1 BY event_id`. It does not use
FINAL: it costs a merge per query. `scans_by_person` (the by-person path, fed from the
inserts into `scans`) obeys the same rule. `tracing/sql.py` follows it too.

`premises` and `premises_daily` are small; they are read with FINAL (latest version
wins). Every function returns `(sql, params)` for clickhouse-driver; values are bound
parameters. The same text runs on one node or against the Distributed tables of a
cluster (a scan and its duplicates share a premises_id, hence a shard).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Final

Query = tuple[str, dict[str, object]]

SCAN_FIELDS: Final = (
    "event_id, person_id, premises_id, toUnixTimestamp64Milli(scanned_at) AS scanned_at_ms, "
    "kind, dwell_minutes, premises_name, category, district"
)


def _at(param: str) -> str:
    return f"fromUnixTimestamp64Milli(toInt64(%({param})s), 'UTC')"


def person_scans(person_id: str, since_ms: int, until_ms: int) -> Query:
    """One person's scans in [since, until), each once, in time order: the by-person path
    (`scans_by_person`, ordered by person)."""
    sql = f"""
SELECT {SCAN_FIELDS}
FROM scans_by_person
WHERE person_id = %(person_id)s AND scanned_at >= {_at("since")} AND scanned_at < {_at("until")}
ORDER BY scanned_at, event_id
LIMIT 1 BY event_id"""  # constants only
    return sql, {"person_id": person_id, "since": since_ms, "until": until_ms}


def premises_scans(premises_ids: Sequence[str], since_ms: int, until_ms: int) -> Query:
    """The scans at some premises in [since, until), each once: the primary-key path."""
    sql = f"""
SELECT {SCAN_FIELDS}
FROM scans
WHERE premises_id IN %(premises)s AND scanned_at >= {_at("since")} AND scanned_at < {_at("until")}
ORDER BY premises_id, scanned_at, event_id
LIMIT 1 BY event_id"""
    return sql, {"premises": tuple(premises_ids), "since": since_ms, "until": until_ms}


def scan_count(since_ms: int, until_ms: int) -> Query:
    """How many distinct scans were stored for [since, until)."""
    sql = f"""
SELECT uniqExact(event_id) FROM scans
WHERE scanned_at >= {_at("since")} AND scanned_at < {_at("until")}"""
    return sql, {"since": since_ms, "until": until_ms}


def daily(first: date, last: date) -> Query:
    """The report rollup per premises and local day, first..last inclusive."""
    sql = """
SELECT day, premises_id, category, district, ward, agency, scans, scanners
FROM premises_daily FINAL
WHERE day >= %(first)s AND day <= %(last)s
ORDER BY day, premises_id"""
    return sql, {"first": first, "last": last}


def premises_current(premises_ids: Sequence[str] | None = None) -> Query:
    """The registry as it stands: the latest version of each premises."""
    where = "WHERE premises_id IN %(premises)s" if premises_ids is not None else ""
    sql = f"""
SELECT premises_id, name, category, district, ward, agency, address, lat, lon,
       dwell_minutes, version
FROM premises FINAL {where}
ORDER BY premises_id"""
    return sql, {"premises": tuple(premises_ids or ())}


def dead_letters(since_ms: int) -> Query:
    """Dead letters since a time, each once."""
    sql = f"""
SELECT DISTINCT stage, reason, detail, raw, topic, partition, offset,
       toUnixTimestamp64Milli(at) AS at_ms, event_id
FROM dead_letters
WHERE at >= {_at("since")}
ORDER BY at_ms, stage, topic, partition, offset"""
    return sql, {"since": since_ms}
