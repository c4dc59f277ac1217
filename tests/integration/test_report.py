"""`scantrace report` on the real ClickHouse: every number against a recount in plain Python.

Two consecutive ISO weeks (2021-W45, 2021-W46) of a small synthetic Ninh Thuận: the
registry and the scans go in through the sink's writer (columnar inserts with dedup
tokens, a replay with other boundaries, exact resends), so the rollup is produced by the
schema's materialized view as in production. The recount reads the generated rows, never
ClickHouse: week bounds as fixed +07:00 instants, distinct event and person ids as Python
sets, the suppression rule restated. Hand-made scans sit on the week boundaries
(Sunday 23:30 and Monday 00:30 local) and a tiny agency is scanned by 3 persons.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from ingest.contract import ScanRejected, parse_scan
from ingest.premises import Premises
from scantrace.cli import main
from scantrace.synth import (
    AGENCY_HEALTH,
    DISTRICT_POPULATION,
    generate_premises,
    generate_scans,
    person_ids,
    write_population_csv,
)
from sinks.batch import PREMISES_COLUMNS, SCAN_COLUMNS
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.migrations import migrate
from sinks.rollup import refresh_sql
from sinks.schema import DEAD_LETTER_FIELDS, MIGRATIONS, REPORT_COUNTS, Migration
from sinks.writer import ClickHouseWriter

SEED = 46
N_PREMISES = 300
PERSONS = 220
SCANS_PER_DAY = 420
VN = timezone(timedelta(hours=7))  # fixed +07:00, independent of the code's zoneinfo
FIRST_DAY = date(2021, 11, 8)  # Monday of 2021-W45; 2021-W46 is 15..21 November
DAYS = [FIRST_DAY + timedelta(days=i) for i in range(14)]
TINY_AGENCY = "Ban Quản lý các Khu công nghiệp"
EVIL_NAME = '=HYPERLINK("http://example.invalid","x") <b>bold</b>'
DIMS = ("agency", "district", "category")
CHROMIUM = "/usr/bin/chromium"


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> int:
    return ms(datetime(y, m, d, hh, mm, tzinfo=VN))


@dataclass(frozen=True)
class Row:
    event_id: str
    person_id: str
    premises_id: str
    scanned_at: int
    kind: str


@dataclass
class Province:
    registry: list[Premises]  # every version, in insert order
    current: dict[str, Premises]  # the latest version of each
    rows: list[Row]  # as stored: exact resends included
    boundary: dict[str, str]  # role -> premises id


def build_province() -> Province:
    base = generate_premises(SEED, N_PREMISES)
    tiny = {p.premises_id for p in base[20:23]}
    edges = [p.premises_id for p in base[30:34]]
    evil = base[40].premises_id
    moved = base[50].premises_id
    v1 = [
        replace(p, agency=TINY_AGENCY, version=1)
        if p.premises_id in tiny
        else replace(p, version=1)
        for p in base
    ]
    v1 = [replace(p, name=EVIL_NAME) if p.premises_id == evil else p for p in v1]
    # A later registry import moves one premises to another agency: the latest wins.
    update = replace(next(p for p in v1 if p.premises_id == moved), agency=AGENCY_HEALTH, version=2)
    registry = [*v1, update]
    current = {p.premises_id: p for p in registry}
    pool = person_ids(SEED, PERSONS)  # the same people every day
    quiet = tiny | set(edges) | {evil}
    rows: list[Row] = []
    for i, day in enumerate(DAYS):
        generated = generate_scans(SEED * 100 + i, base, day, persons=PERSONS, scans=SCANS_PER_DAY)
        same_person = dict(zip(person_ids(SEED * 100 + i, PERSONS), pool, strict=True))
        for record in generated:
            try:
                e = parse_scan(record, now=local(2021, 12, 31))
            except ScanRejected:
                continue  # dead letters never reach the store
            if e.premises_id not in current or e.premises_id in quiet:
                continue  # parked (unknown premises) / kept quiet on purpose below
            rows.append(
                Row(e.event_id, same_person[e.person_id], e.premises_id, e.scanned_at, e.kind)
            )
    # The tiny agency: 3 persons in W46 (at two premises, on two days), 6 in W45.
    n = 0
    for week_start, people in ((date(2021, 11, 15), pool[:3]), (date(2021, 11, 8), pool[3:9])):
        for offset in (1, 4):
            d = week_start + timedelta(days=offset)
            for j, person in enumerate(people):
                for k, pid in enumerate(sorted(tiny)[:2]):
                    n += 1
                    at = local(d.year, d.month, d.day, 9 + j, 5 * k)
                    rows.append(Row(f"tiny{n:04d}", person, pid, at, "checkin"))
    # The week boundaries, one premises each (nothing else scans there).
    boundary = {
        "mon_0030_w46": (edges[0], local(2021, 11, 15, 0, 30)),  # = Sun 14 17:30 UTC
        "sun_2330_w46": (edges[1], local(2021, 11, 21, 23, 30)),  # = Sun 21 16:30 UTC
        "mon_0030_w47": (edges[2], local(2021, 11, 22, 0, 30)),  # = Sun 21 17:30 UTC
        "sun_2330_w45": (edges[3], local(2021, 11, 14, 23, 30)),  # = Sun 14 16:30 UTC
    }
    assert boundary["sun_2330_w46"][1] == ms(datetime(2021, 11, 21, 16, 30, tzinfo=UTC))
    assert boundary["mon_0030_w47"][1] == ms(datetime(2021, 11, 21, 17, 30, tzinfo=UTC))
    for role, (pid, at) in boundary.items():
        for j, person in enumerate(pool[100:106]):
            rows.append(Row(f"edge-{role}-{j}", person, pid, at + j * 1000, "checkin"))
    # Exact resends: the same event twice (the stream dedups them; the store must too).
    rows.extend(rows[::97])
    return Province(registry, current, rows, {k: v[0] for k, v in boundary.items()})


@pytest.fixture(scope="module")
def province() -> Province:
    return build_province()


def _scan_columns(rows: Sequence[Row], registry: Mapping[str, Premises]) -> list[list[Any]]:
    """Enriched rows in SCAN_COLUMNS order, as the processors hand them to the sink."""
    out = []
    for r in rows:
        p = registry[r.premises_id]
        values = {
            "event_id": r.event_id,
            "person_id": r.person_id,
            "premises_id": r.premises_id,
            "scanned_at": r.scanned_at,
            "kind": r.kind,
            "gateway_id": "gw-test",
            "received_at": r.scanned_at + 2_000,
            "premises_name": p.name,
            "category": p.category,
            "district": p.district,
            "ward": p.ward,
            "agency": p.agency,
            "dwell_minutes": p.dwell_minutes,
            "processed_at": r.scanned_at + 3_000,
        }
        out.append([values[c] for c in SCAN_COLUMNS])
    return [list(c) for c in zip(*out, strict=True)]


def load(settings: ClickHouseSettings, p: Province, *, refresh: bool = True) -> None:
    """Through the sink's writer: premises, then scans in chunks with tokens, one chunk
    retried (same token) and a stretch replayed with other boundaries (other tokens); then
    the sink's rollup refresh, unless `refresh` is False."""
    writer = ClickHouseWriter(settings)
    try:
        premises_rows = [[getattr(x, c) for c in PREMISES_COLUMNS] for x in p.registry]
        writer.insert(
            "premises",
            PREMISES_COLUMNS,
            [list(c) for c in zip(*premises_rows, strict=True)],
            "premises:0:0",
        )
        # Enriched with the registry of the time: v1 for everything (the update came later).
        v1 = {x.premises_id: x for x in p.registry if x.version == 1}
        size = 500
        for first in range(0, len(p.rows), size):
            chunk = p.rows[first : first + size]
            token = f"scans.enriched:0:{first}-{first + len(chunk) - 1}"
            writer.insert("scans", SCAN_COLUMNS, _scan_columns(chunk, v1), token)
        writer.insert(
            "scans", SCAN_COLUMNS, _scan_columns(p.rows[:size], v1), "scans.enriched:0:0-499"
        )
        replay = p.rows[size + 130 : 3 * size + 70]
        writer.insert("scans", SCAN_COLUMNS, _scan_columns(replay, v1), "scans.enriched:0:replay")
        if refresh:  # the sink's own rollups: premises_daily, the sets, the counts
            writer.refresh_rollup(DAYS)
        else:  # as the sink before migration 10 did: premises_daily only
            client = connect(settings, server_side_params=True)
            try:
                client.execute(*refresh_sql(DAYS))
            finally:
                client.disconnect()
    finally:
        writer.close()


@pytest.fixture
def loaded(
    clickhouse_settings: ClickHouseSettings, province: Province
) -> Iterator[ClickHouseSettings]:
    """The province in a database whose scans outlive 2021 (10-year retention), so that
    the sink's own rollup can be recomputed from them for the cross-check."""
    settings = clickhouse_settings.with_database(f"{clickhouse_settings.database}_10y")
    settings = settings.model_copy(update={"retention_days": 3650})
    migrate(settings)
    try:
        load(settings, province)
        yield settings
    finally:
        client = connect(settings, database="default")
        client.execute(f"DROP DATABASE IF EXISTS `{settings.database}`")
        client.disconnect()


# ------------------------------------------------------------------ the recount


@dataclass
class Counted:
    registered: int
    active: set[str]
    events: set[str]
    persons: set[str]


def recount(p: Province, first: date, last: date) -> dict[tuple[str, str], Counted]:
    """Per (dimension, key) and ("total", ""): plain sets over the rows of [first, last]."""
    start = local(first.year, first.month, first.day)
    end = local(last.year, last.month, last.day) + 86_400_000
    out: dict[tuple[str, str], Counted] = {}

    def group(k: tuple[str, str]) -> Counted:
        return out.setdefault(k, Counted(0, set(), set(), set()))

    for x in p.current.values():
        for k in [(d, getattr(x, d)) for d in DIMS] + [("total", "")]:
            group(k).registered += 1
    for r in p.rows:
        if not start <= r.scanned_at < end:
            continue
        x = p.current[r.premises_id]
        for k in [(d, getattr(x, d)) for d in DIMS] + [("total", "")]:
            g = group(k)
            g.active.add(r.premises_id)
            g.events.add(r.event_id)
            g.persons.add(r.person_id)
    return out


def expected_hidden(cells: Mapping[str, tuple[int, int]], total_scanners: int) -> set[str]:
    """The rule, restated: rows with 1-4 persons; if any and the total has 5+, also the
    row with the fewest scans (>0) among the others (ties: the smallest key)."""
    hidden = {k for k, (_, persons) in cells.items() if 1 <= persons <= 4}
    if hidden and not 1 <= total_scanners <= 4:
        others = sorted((s, k) for k, (s, _) in cells.items() if k not in hidden and s > 0)
        if others:
            hidden.add(others[0][1])
    return hidden


def rel(now: int, before: int) -> float | None:
    return None if before == 0 else round((now - before) / before, 6)


def expected_rows(
    p: Province, first: date, last: date, prev_first: date, prev_last: date
) -> dict[tuple[str, str], dict[str, Any]]:
    now, before = recount(p, first, last), recount(p, prev_first, prev_last)
    empty = Counted(0, set(), set(), set())
    total_now, total_before = now[("total", "")], before[("total", "")]
    hidden_now: set[tuple[str, str]] = set()
    hidden_before: set[tuple[str, str]] = set()
    for d in DIMS:
        for counts, total, hidden in (
            (now, total_now, hidden_now),
            (before, total_before, hidden_before),
        ):
            cells = {k: (len(c.events), len(c.persons)) for (dd, k), c in counts.items() if dd == d}
            hidden |= {(d, k) for k in expected_hidden(cells, len(total.persons))}
    for counts, hidden in ((now, hidden_now), (before, hidden_before)):
        t = counts[("total", "")]
        if 1 <= len(t.persons) <= 4:
            hidden.add(("total", ""))
    population = DISTRICT_POPULATION
    out = {}
    for k, c in now.items():
        b = before.get(k, empty)
        few_now, few_before = 1 <= len(c.persons) <= 4, 1 <= len(b.persons) <= 4
        share = round(len(c.active) / c.registered, 6) if c.registered else None
        share_b = len(b.active) / c.registered if c.registered else None
        pop = population.get(k[1]) if k[0] == "district" else None
        if k[0] == "total":
            pop = sum(population.values())
        out[k] = {
            "registered": c.registered,
            "active": len(c.active),
            "share_active": share,
            "scans": "x" if k in hidden_now else len(c.events),
            "scanners": "<5" if few_now else len(c.persons),
            "scans_per_active": (
                "x"
                if k in hidden_now
                else (round(len(c.events) / len(c.active), 6) if c.active else None)
            ),
            "change_share_pp": (
                round((len(c.active) - len(b.active)) / c.registered * 100, 6)
                if c.registered
                else None
            ),
            "change_scans": (
                "x" if k in hidden_now or k in hidden_before else rel(len(c.events), len(b.events))
            ),
            "change_scanners": (
                "x" if few_now or few_before else rel(len(c.persons), len(b.persons))
            ),
            "population": pop,
            "uptake": (
                None if pop is None else ("x" if few_now else round(len(c.persons) / pop, 6))
            ),
        }
        assert share_b is None or share_b >= 0
    return out


def run_report(
    settings: ClickHouseSettings, args: list[str], tmp_path: Path, name: str
) -> tuple[Path, str]:
    out = tmp_path / name
    population = tmp_path / "population.csv"
    write_population_csv(population)
    env = {"SCANTRACE_CLICKHOUSE__URL": settings.url}
    result = CliRunner().invoke(
        main, ["report", *args, "--out", str(out), "--population", str(population)], env=env
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) < 1e-6
    return bool(a == b)


# Scan counts a daily report may hide beyond the table's own rule: the complements its
# week's days need (`test_report_editions` checks those against subtraction).
_SCANS_FIELDS = ("scans", "scans_per_active", "change_scans")


def compare_rows(
    doc: dict[str, Any],
    expected: dict[tuple[str, str], dict[str, Any]],
    week_complements: bool = False,
) -> int:
    got = {("total", ""): doc["total"]}
    for d in DIMS:
        got |= {(d, r["key"]): r for r in doc["tables"][d]}
    assert set(got) == set(expected)
    checked = 0
    for k, want in expected.items():
        for field, value in want.items():
            if week_complements and field in _SCANS_FIELDS and got[k][field] == "x":
                continue
            assert _close(got[k][field], value), (k, field, got[k][field], value)
            checked += 1
    return checked


# ------------------------------------------------------------------ the tests


def test_weekly_numbers_match_a_recount(
    loaded: ClickHouseSettings, province: Province, tmp_path: Path
) -> None:
    out, output = run_report(
        loaded, ["weekly", "--week", "2021-W46", "--format", "json"], tmp_path, "w46.json"
    )
    assert f"wrote {out}" in output
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["period"] == {
        "from": "2021-11-15T00:00:00+07:00",
        "to": "2021-11-22T00:00:00+07:00",
        "kind": "week",
        "label": "2021-W46",
        "first_day": "2021-11-15",
        "last_day": "2021-11-21",
        "start": "2021-11-14T17:00:00.000Z",
        "end": "2021-11-21T17:00:00.000Z",
    }
    expected = expected_rows(
        province, date(2021, 11, 15), date(2021, 11, 21), date(2021, 11, 8), date(2021, 11, 14)
    )
    assert compare_rows(doc, expected, week_complements=True) > 300

    # The tiny agency is suppressed, and some other agency's scans with it.
    tiny = next(r for r in doc["tables"]["agency"] if r["key"] == TINY_AGENCY)
    assert tiny["scanners"] == "<5" and tiny["scans"] == "x" and tiny["change_scanners"] == "x"
    # ... and exactly one agency of 5+ persons hides its scans to protect the small ones.
    second = [r for r in doc["tables"]["agency"] if r["scans"] == "x" and r["scanners"] != "<5"]
    assert len(second) == 1 and second[0]["scanners"] >= 5
    assert any("<5" in n for n in doc["notes"])
    # The moved premises counts in its latest agency.
    assert doc["total"]["registered"] == N_PREMISES

    # Distinct scanners are not a sum over days or premises: the test would notice.
    per_day = sum(
        len({r.person_id for r in province.rows if local(d.year, d.month, d.day) <= r.scanned_at
             < local(d.year, d.month, d.day) + 86_400_000})
        for d in DAYS[7:]
    )  # fmt: skip
    assert doc["total"]["scanners"] < per_day

    # Week boundaries in Asia/Ho_Chi_Minh time.
    inactive = {p["premises_id"] for p in doc["inactive"]}
    b = province.boundary
    assert b["mon_0030_w46"] not in inactive and b["sun_2330_w46"] not in inactive
    assert b["mon_0030_w47"] in inactive and b["sun_2330_w45"] in inactive
    counted = recount(province, date(2021, 11, 15), date(2021, 11, 21))
    active = counted[("total", "")].active
    assert inactive == set(province.current) - active
    # Grouped by agency: each agency's premises are together.
    agencies = [p["agency"] for p in doc["inactive"]]
    blocks = [a for i, a in enumerate(agencies) if i == 0 or agencies[i - 1] != a]
    assert len(blocks) == len(set(agencies))

    # Days: the previous week's, then this week's, each against a recount.
    assert [d["day"] for d in doc["days"]] == [d.isoformat() for d in DAYS]
    for week in (DAYS[:7], DAYS[7:]):
        week_total = recount(province, week[0], week[-1])[("total", "")]
        cells = {}
        for d in week:
            c = recount(province, d, d)[("total", "")]
            cells[d.isoformat()] = (len(c.events), len(c.persons))
        hidden = expected_hidden(cells, len(week_total.persons))
        for entry in doc["days"]:
            if entry["day"] in cells:
                scans, persons = cells[entry["day"]]
                assert entry["scans"] == ("x" if entry["day"] in hidden else scans)
                assert entry["scanners"] == ("<5" if 1 <= persons <= 4 else persons)
                assert entry["active"] == len(recount(province, date.fromisoformat(entry["day"]),
                                                      date.fromisoformat(entry["day"]))[
                    ("total", "")].active)  # fmt: skip


def test_daily_report_and_day_boundaries(
    loaded: ClickHouseSettings, province: Province, tmp_path: Path
) -> None:
    out, _ = run_report(
        loaded, ["daily", "--date", "2021-11-21", "--format", "json"], tmp_path, "d.json"
    )
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["period"]["start"] == "2021-11-20T17:00:00.000Z"
    assert doc["previous"]["first_day"] == "2021-11-20"
    expected = expected_rows(
        province, date(2021, 11, 21), date(2021, 11, 21), date(2021, 11, 20), date(2021, 11, 20)
    )
    compare_rows(doc, expected, week_complements=True)
    inactive = {p["premises_id"] for p in doc["inactive"]}
    assert province.boundary["sun_2330_w46"] not in inactive  # Sunday 23:30 local
    assert province.boundary["mon_0030_w47"] in inactive  # Monday 00:30 local = Sunday UTC
    out, _ = run_report(
        loaded, ["daily", "--date", "2021-11-15", "--format", "json"], tmp_path, "d15.json"
    )
    doc = json.loads(out.read_text(encoding="utf-8"))
    inactive = {p["premises_id"] for p in doc["inactive"]}
    assert province.boundary["mon_0030_w46"] not in inactive  # Monday 00:30 local


def test_rollups_agree_and_replays_add_nothing(
    loaded: ClickHouseSettings, province: Province
) -> None:
    """The sink's premises_daily and the report's sets agree per premises and day; loading
    everything again (other tokens) changes no number."""
    client = connect(loaded)
    try:
        sets_sql = (
            "SELECT day, premises_id, uniqExactMerge(scans), uniqExactMerge(scanners) "
            "FROM premises_daily_sets GROUP BY day, premises_id ORDER BY day, premises_id"
        )
        before = client.execute(sets_sql)
        daily = client.execute(
            "SELECT day, premises_id, scans, scanners FROM premises_daily FINAL "
            "WHERE day >= %(a)s AND day <= %(b)s ORDER BY day, premises_id",
            {"a": DAYS[0], "b": DAYS[-1]},
        )
        assert [r for r in before if DAYS[0] <= r[0] <= DAYS[-1]] == daily
        assert client.execute("SELECT count() FROM system.columns WHERE database = "
                              "currentDatabase() AND table = 'premises_daily_sets' AND "
                              "name = 'person_id'") == [(0,)]  # fmt: skip
        writer = ClickHouseWriter(loaded)
        try:
            v1 = {x.premises_id: x for x in province.registry if x.version == 1}
            rows = province.rows
            writer.insert("scans", SCAN_COLUMNS, _scan_columns(rows, v1), "again:all")
        finally:
            writer.close()
        assert client.execute(sets_sql) == before
    finally:
        client.disconnect()


def _report_doc(settings: ClickHouseSettings, args: list[str], tmp_path: Path, name: str) -> Any:
    out, _ = run_report(settings, args, tmp_path, name)
    doc = json.loads(out.read_text(encoding="utf-8"))
    del doc["generated_at"], doc["notes"]
    return doc


def _rows(client: Any, table: str) -> int:
    return int(client.execute(f"SELECT count() FROM {table}")[0][0])


def test_the_report_outlives_the_retention(loaded: ClickHouseSettings, tmp_path: Path) -> None:
    """Past the retention the scans and the keyed sets are gone (deleted here by their own
    TTL, made 28 days again and merged): the report of a week and of a day reads the
    counts the sink kept, and every number equals the one computed from the sets while
    they existed."""
    weekly = ["weekly", "--week", "2021-W46", "--format", "json"]
    daily = ["daily", "--date", "2021-11-21", "--format", "json"]
    client = connect(loaded)
    try:
        counted_sql = (
            "SELECT toString(period), first_day FROM report_counts FINAL "
            "WHERE dimension = 'total' ORDER BY period, first_day"
        )
        counted = client.execute(counted_sql)
        assert counted == [("day", d) for d in DAYS] + [
            ("week", date(2021, 11, 8)),
            ("week", date(2021, 11, 15)),
        ]
        client.execute("TRUNCATE TABLE report_counts")  # the sets alone, as before counting
        from_sets = [
            _report_doc(loaded, a, tmp_path, f"s{i}.json") for i, a in enumerate((weekly, daily))
        ]
        writer = ClickHouseWriter(loaded)
        try:
            writer.refresh_rollup(DAYS[-1:])  # the sink's next refresh counts them again
        finally:
            writer.close()
        assert client.execute(counted_sql) == counted
        for table, ttl in (
            ("scans", "toDateTime(scanned_at) + INTERVAL 28 DAY"),
            ("scans_by_person", "toDateTime(scanned_at) + INTERVAL 28 DAY"),
            ("premises_daily_sets", "toDateTime(day, 'Asia/Ho_Chi_Minh') + INTERVAL 28 DAY"),
        ):
            client.execute(f"ALTER TABLE {table} MODIFY TTL {ttl} SETTINGS mutations_sync = 2")
            client.execute(f"OPTIMIZE TABLE {table} FINAL")
            assert _rows(client, table) == 0, table
    finally:
        client.disconnect()
    from_counts = [
        _report_doc(loaded, a, tmp_path, f"c{i}.json") for i, a in enumerate((weekly, daily))
    ]
    assert from_counts == from_sets
    assert from_counts[0]["total"]["scanners"] > 0


# The first form of migration 6, as deployments that ran it still hold it: plain hashes of
# the person ids, fed by a view, no TTL.
_PLAIN_SETS = (
    "CREATE TABLE IF NOT EXISTS {db}.premises_daily_sets (day Date, premises_id String,"
    " scans AggregateFunction(uniqExact, UInt64), scanners AggregateFunction(uniqExact,"
    " UInt64)) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(day)"
    " ORDER BY (day, premises_id)",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.premises_daily_sets_mv"
    " TO {db}.premises_daily_sets AS SELECT toDate(scanned_at, 'Asia/Ho_Chi_Minh') AS day,"
    " premises_id, uniqExactState(cityHash64(event_id)) AS scans,"
    " uniqExactState(cityHash64(person_id)) AS scanners FROM {db}.scans"
    " GROUP BY day, premises_id",
)


def test_migration_turns_plain_sets_into_counts_and_keyed_sets(
    clickhouse_settings: ClickHouseSettings, province: Province, tmp_path: Path
) -> None:
    fresh = clickhouse_settings.with_database(f"{clickhouse_settings.database}_old")
    fresh = fresh.model_copy(update={"retention_days": 3650})  # keep the 2021 scans
    old = [
        Migration(6, "premises_daily_sets", _PLAIN_SETS) if m.version == 6 else m
        for m in MIGRATIONS
        if m.version < 10
    ]
    weekly = ["weekly", "--week", "2021-W46", "--format", "json"]
    try:
        migrate(fresh, old)
        load(fresh, province, refresh=False)  # by the sink of that time: the view only
        # The report as it was: from the sets (this code reads them when nothing is
        # counted, so it needs the empty table of counts).
        migrate(fresh, [Migration(0, "counts_only", (REPORT_COUNTS, *DEAD_LETTER_FIELDS))])
        before = _report_doc(fresh, weekly, tmp_path, "before.json")
        assert [a.version for a in migrate(fresh)] == [
            m.version for m in MIGRATIONS if m.version >= 10
        ]
        client = connect(fresh)
        try:
            tables = dict(
                client.execute(
                    "SELECT name, create_table_query FROM system.tables"
                    " WHERE database = currentDatabase()"
                )
            )
            assert "premises_daily_sets_mv" not in tables
            assert " TTL toDateTime(day, 'Asia/Ho_Chi_Minh')" in tables["premises_daily_sets"]
            assert "cityHash64(person_id)" not in "".join(tables.values())
            assert _rows(client, "premises_daily_sets") == 0  # the plain hashes are gone
            assert _rows(client, "report_counts") > 0
            after = _report_doc(fresh, weekly, tmp_path, "after.json")  # from the counts
            assert after == before
            # the sink refills the keyed sets of every day of `scans` at its start
            writer = ClickHouseWriter(fresh)
            try:
                dirty = writer.dirty_days()
                assert set(DAYS) <= set(dirty)
                writer.refresh_rollup(dirty)
            finally:
                writer.close()
            [(scans, persons)] = client.execute(
                "SELECT uniqExactMerge(scans), uniqExactMerge(scanners) FROM premises_daily_sets"
            )
            assert scans == len({r.event_id for r in province.rows})
            assert persons == len({r.person_id for r in province.rows})
            client.execute("TRUNCATE TABLE report_counts")
            assert _report_doc(fresh, weekly, tmp_path, "keyed.json") == before
            assert migrate(fresh) == []  # a re-run neither counts from nor drops the keyed
        finally:
            client.disconnect()
    finally:
        client = connect(fresh, database="default")
        client.execute(f"DROP DATABASE IF EXISTS `{fresh.database}`")
        client.disconnect()


def test_csv_and_xlsx_carry_the_same_numbers_safely(
    loaded: ClickHouseSettings, province: Province, tmp_path: Path
) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    out, output = run_report(
        loaded, ["weekly", "--week", "2021-W46", "--format", "csv"], tmp_path, "w46.csv"
    )
    second = tmp_path / "w46-inactive.csv"
    assert f"wrote {second}" in output
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(out.read_text(encoding="utf-8-sig").splitlines()))
    assert rows[0][:7] == [
        "Nhóm theo",
        "Nhóm",
        "Số điểm đăng ký",
        "Số điểm hoạt động",
        "Tỷ lệ hoạt động",
        "Lượt quét",
        "Người quét",
    ]
    total = recount(province, date(2021, 11, 15), date(2021, 11, 21))[("total", "")]
    assert rows[1][1] == "Toàn tỉnh" and int(rows[1][5]) == len(total.events)
    assert int(rows[1][6]) == len(total.persons)
    tiny = next(r for r in rows if r[1] == TINY_AGENCY)
    assert tiny[6] == "<5" and tiny[5] == "x"
    listed = list(csv.reader(second.read_text(encoding="utf-8-sig").splitlines()))
    evil = next(r for r in listed if r[2].endswith("<b>bold</b>"))
    assert evil[2] == "'" + EVIL_NAME  # formula neutralised
    assert all(not c.startswith(("=", "+", "@")) for r in listed for c in r)

    out, _ = run_report(
        loaded, ["weekly", "--week", "2021-W46", "--format", "xlsx", "--lang", "en"],
        tmp_path, "w46.xlsx",
    )  # fmt: skip
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Agency", "District", "Category", "By day", "No scans", "Notes"]
    ws = wb["Agency"]
    header = [c.value for c in ws[1]]
    assert header[:2] == ["Grouped by", "Group"]
    province_row = [c.value for c in ws[2]]
    assert province_row[5] == len(total.events) and province_row[6] == len(total.persons)
    cells = [c for row in wb["No scans"].iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)
    assert any(c.value == "'" + EVIL_NAME for c in cells)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium (apt)")
def test_html_report_renders_in_headless_chromium(
    loaded: ClickHouseSettings, tmp_path: Path
) -> None:
    out, _ = run_report(loaded, ["weekly", "--week", "2021-W46"], tmp_path, "w46.html")
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and '<html lang="vi">' in html
    for label in ("Báo cáo tuần", "Cơ quan", "Huyện/Thành phố", "Loại hình", "Số điểm đăng ký",
                  "Số điểm hoạt động", "Tỷ lệ hoạt động", "Lượt quét", "Người quét", "Toàn tỉnh",
                  "&lt;5", TINY_AGENCY):  # fmt: skip
        assert label in html, label
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) >= 5
    assert not re.search(r'(src|href)="(https?:)?//', html)  # self-contained
    assert "<script" not in html

    png = tmp_path / "w46.png"
    profile = tmp_path / "chromium-profile"
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={png}",
        "--window-size=1280,2000",
        out.resolve().as_uri(),
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    page_errors = [
        line
        for line in done.stderr.splitlines()
        if "Uncaught" in line or "ERROR:CONSOLE" in line or ":CONSOLE(" in line
    ]
    assert page_errors == []
    assert png.exists() and png.stat().st_size > 50_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("SCANTRACE_REPORT_SCREENSHOT")
    if keep:
        shutil.copy(png, keep)
        shutil.copy(out, Path(keep).with_suffix(".html"))


def test_generated_rows_are_what_the_recount_assumes(province: Province) -> None:
    """The data is what the recount assumes: resends are exact copies, ids unique."""
    by_id: dict[str, Row] = {}
    for r in province.rows:
        assert by_id.setdefault(r.event_id, r) == r
    assert len(by_id) < len(province.rows)
    assert all(r.premises_id in province.current for r in province.rows)


def test_a_week_or_a_day_in_every_form_is_the_same_report(loaded: ClickHouseSettings) -> None:
    """`--week` as 2021-W46, as a day inside it (a date, ISO with an offset, days before
    today) and `--date` likewise give the same report, written to standard output."""
    today = datetime.now(tz=ZoneInfo("Asia/Ho_Chi_Minh")).date()

    def report(*args: str) -> dict[str, Any]:
        result = CliRunner().invoke(
            main,
            ["report", *args, "--format", "json", "--out", "-"],
            env={"SCANTRACE_CLICKHOUSE__URL": loaded.url},
        )
        assert result.exit_code == 0, result.output
        doc: dict[str, Any] = json.loads(result.stdout)
        doc.pop("generated_at")
        return doc

    weeks = [
        report("weekly", "--week", form)
        for form in ("2021-W46", "2021-11-17", "2021-11-21T23:30:00+07:00",
                     f"-{(today - date(2021, 11, 15)).days}d")
    ]  # fmt: skip
    assert weeks[0]["period"]["label"] == "2021-W46"
    assert all(w == weeks[0] for w in weeks[1:])
    days = [
        report("daily", "--date", form)
        for form in ("2021-11-21", "2021-11-21T08:00:00+07:00",
                     f"-{(today - date(2021, 11, 21)).days}d")
    ]  # fmt: skip
    assert days[0]["period"]["first_day"] == "2021-11-21"
    assert all(d == days[0] for d in days[1:])
