"""The schema on the real ClickHouse 26.9: migrations, idempotency by event_id, the TTL,
the by-person path, and the rollup after a replay."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import store_queries as queries
from clickhouse_driver import Client
from pydantic import SecretStr

from ingest.contract import now_ms
from sinks.batch import PREMISES_COLUMNS, SCAN_COLUMNS
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.migrations import migrate
from sinks.rollup import DAY_MS, local_day
from sinks.schema import MIGRATIONS, TABLES, Migration
from sinks.writer import INSERT_SETTINGS, ClickHouseWriter, WriteError

HOUR = 3_600_000


@pytest.fixture
def client(clickhouse_settings: ClickHouseSettings) -> Iterator[Client]:
    c = connect(clickhouse_settings)
    yield c
    c.disconnect()


def scan_row(
    i: int, t: int, *, person: str | None = None, premises: str | None = None
) -> tuple[Any, ...]:
    """A scans row in SCAN_COLUMNS order (times as epoch ms, as the sink sends them)."""
    return (
        f"e{i}",
        person or f"u{i % 10}",
        premises or f"P{i % 4}",
        t,
        "checkin",
        "gw",
        t + 100,
        "name",
        "market",
        "D1",
        "W1",
        "A1",
        45,
        t + 200,
    )


def insert(
    client: Client, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]], token: str
) -> None:
    data = [list(c) for c in zip(*rows, strict=True)]
    client.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES",
        data,
        columnar=True,
        settings={**INSERT_SETTINGS, "insert_deduplication_token": token},
    )


@contextmanager
def fresh_database(settings: ClickHouseSettings, prefix: str) -> Iterator[ClickHouseSettings]:
    """`settings` on a database of its own, dropped afterwards."""
    fresh = settings.with_database(f"{prefix}_{uuid.uuid4().hex[:10]}")
    try:
        yield fresh
    finally:
        c = connect(fresh, database="default")
        c.execute(f"DROP DATABASE IF EXISTS `{fresh.database}`")
        c.disconnect()


def run(client: Client, query: tuple[str, dict[str, object]]) -> list[tuple[Any, ...]]:
    sql, params = query
    return list(client.execute(sql, params))


def test_migrate_twice_applies_nothing_the_second_time(
    clickhouse_settings: ClickHouseSettings,
) -> None:
    with fresh_database(clickhouse_settings, "m") as fresh:
        first = migrate(fresh)
        assert [a.version for a in first] == [m.version for m in MIGRATIONS]
        assert migrate(fresh) == []
        c = connect(fresh)
        try:
            tables = {r[0] for r in c.execute("SHOW TABLES")}
            assert {"scans", "premises", "premises_daily", "dead_letters", "audit_log"} <= tables
            versions = c.execute(
                "SELECT version, count() FROM schema_migrations GROUP BY version ORDER BY version"
            )
            assert versions == [(m.version, 1) for m in MIGRATIONS]
            projections = c.execute(
                "SELECT name FROM system.projections "
                "WHERE database = currentDatabase() AND table = 'scans'"
            )
            assert projections == []  # migration 8: the by-person path is a table
        finally:
            c.disconnect()


def test_db_migrate_reports_as_json_and_its_progress_reads_the_server(
    clickhouse_settings: ClickHouseSettings,
) -> None:
    """`db migrate --json` lists what it applied (nothing the second time); the progress
    line's query (rows written by the migrator's running statement) runs on the server."""
    import json

    from click.testing import CliRunner

    from scantrace.cli import _MigrationProgress, main

    with fresh_database(clickhouse_settings, "j") as fresh:
        env = {"SCANTRACE_CLICKHOUSE__URL": fresh.url}
        first = CliRunner().invoke(main, ["db", "migrate", "--json"], env=env)
        assert first.exit_code == 0, first.output
        applied = json.loads(first.stdout)["applied"]
        assert [a["version"] for a in applied] == [m.version for m in MIGRATIONS]
        again = CliRunner().invoke(main, ["db", "migrate", "--json"], env=env)
        assert json.loads(again.stdout) == {"applied": []}
        follow = _MigrationProgress(fresh)
        follow.step(MIGRATIONS[0], 1, 3)
        try:
            assert follow.status().startswith(f"{MIGRATIONS[0].version:03d} ")
        finally:
            follow.client.disconnect()


# What `migrate` applies after a database stopped at version 7 or 8: every later one.
LATER_THAN_7 = [m.version for m in MIGRATIONS if m.version > 7]
LATER_THAN_8 = [m.version for m in MIGRATIONS if m.version > 8]


def test_the_by_person_migration_copies_what_scans_holds(
    clickhouse_settings: ClickHouseSettings,
) -> None:
    """Migration 8 on a table with rows: the by-person table gets them (the view only sees
    later inserts), the projection goes, and both kinds of rows are read by person."""
    with fresh_database(clickhouse_settings, "bp") as fresh:
        migrate(fresh, [m for m in MIGRATIONS if m.version < 8])
        c = connect(fresh)
        try:
            now = now_ms()
            before = [scan_row(i, now - i * 60_000, person="u1") for i in range(6)]
            insert(c, "scans", SCAN_COLUMNS, before, "before")
            assert [a.version for a in migrate(fresh)] == LATER_THAN_7
            assert (
                c.execute("SELECT name FROM system.projections WHERE database = currentDatabase()")
                == []
            )
            after = [scan_row(i, now - i * 60_000, person="u1") for i in range(6, 9)]
            insert(c, "scans", SCAN_COLUMNS, after, "after")
            mine = run(c, queries.person_scans("u1", now - DAY_MS, now + 1))
            assert sorted(r[0] for r in mine) == sorted(f"e{i}" for i in range(9))
        finally:
            c.disconnect()


def _layout(c: Client) -> list[tuple[Any, ...]]:
    return list(
        c.execute(
            "SELECT name, partition_key, "
            "extract(create_table_query, 'index_granularity = (\\d+)') FROM system.tables "
            "WHERE database = currentDatabase() AND name LIKE 'scans%' ORDER BY name"
        )
    )


def _event_ids(c: Client, table: str) -> list[str]:
    return sorted(r[0] for r in c.execute(f"SELECT DISTINCT event_id FROM {table}"))


def test_the_week_migration_moves_scans_and_the_views_follow(
    clickhouse_settings: ClickHouseSettings,
) -> None:
    """Migration 9 on a table with rows of several weeks: `scans` is partitioned by week
    at 2,048-row granules and holds every row, the old table is gone, and the view on
    `scans` (the by-person table) feeds from the new one."""
    with fresh_database(clickhouse_settings, "wk") as fresh:
        migrate(fresh, [m for m in MIGRATIONS if m.version < 9])
        c = connect(fresh)
        try:
            now = now_ms()
            before = [scan_row(i, now - i * 2 * DAY_MS, person="u1") for i in range(10)]
            insert(c, "scans", SCAN_COLUMNS, before, "before")
            assert ("scans", "toDate(scanned_at)", "8192") in _layout(c)
            assert [a.version for a in migrate(fresh)] == LATER_THAN_8
            assert _layout(c) == [
                ("scans", "toMonday(scanned_at)", "2048"),
                ("scans_by_person", "toMonday(scanned_at)", "1024"),
                ("scans_by_person_mv", "", ""),
            ]
            assert _event_ids(c, "scans") == sorted(f"e{i}" for i in range(10))
            # stored within the catch-up's 10 minutes, yet copied once
            for table in ("scans", "scans_by_person"):
                assert c.execute(f"SELECT count() FROM {table}") == [(10,)], table
            weeks = c.execute("SELECT uniqExact(_partition_id) FROM scans")[0][0]
            assert weeks >= 3  # 18 days
            after = [scan_row(i, now - i * 60_000, person="u1") for i in range(10, 13)]
            insert(c, "scans", SCAN_COLUMNS, after, "after")
            mine = run(c, queries.person_scans("u1", now - 30 * DAY_MS, now + 1))
            assert sorted(r[0] for r in mine) == sorted(f"e{i}" for i in range(13))
        finally:
            c.disconnect()


def test_the_week_migration_can_be_rerun_after_stopping_half_way(
    clickhouse_settings: ClickHouseSettings,
) -> None:
    """Migration 9 stopped right after the exchange, while an insert reached the old table
    after the copy: re-run, it does not swap back, copies that row, and drops the old."""
    with fresh_database(clickhouse_settings, "wk2") as fresh:
        migrate(fresh, [m for m in MIGRATIONS if m.version < 9])
        c = connect(fresh)
        try:
            now = now_ms()
            rows = [scan_row(i, now - i * DAY_MS) for i in range(6)]
            insert(c, "scans", SCAN_COLUMNS, rows, "first")
            [week] = [m for m in MIGRATIONS if m.version == 9]
            through_exchange = Migration(9, week.name, week.statements[:3])
            migrate(fresh, [through_exchange])
            # late: committed into the old table after the copy's snapshot
            insert(c, "scans_weekly", SCAN_COLUMNS, [scan_row(99, now - HOUR)], "late")
            c.execute("DELETE FROM schema_migrations WHERE version = 9")
            assert [a.version for a in migrate(fresh)] == LATER_THAN_8
            assert _layout(c)[0] == ("scans", "toMonday(scanned_at)", "2048")
            assert "scans_weekly" not in {r[0] for r in _layout(c)}
            assert _event_ids(c, "scans") == sorted([*(f"e{i}" for i in range(6)), "e99"])
            # and once more, from the start: nothing changes
            c.execute("DELETE FROM schema_migrations WHERE version = 9")
            assert [a.version for a in migrate(fresh)] == [9]
            assert _layout(c)[0] == ("scans", "toMonday(scanned_at)", "2048")
            assert _event_ids(c, "scans") == sorted([*(f"e{i}" for i in range(6)), "e99"])
        finally:
            c.disconnect()


def test_same_token_adds_nothing_and_a_replay_never_shows_twice(client: Client) -> None:
    now = now_ms()
    rows = [scan_row(i, now - i * 60_000) for i in range(40)]
    insert(client, "scans", SCAN_COLUMNS, rows, "t:0:0-39")
    insert(client, "scans", SCAN_COLUMNS, rows, "t:0:0-39")  # a retry
    assert client.execute("SELECT count() FROM scans") == [(40,)]
    # a replay with other boundaries: other tokens, the same rows
    insert(client, "scans", SCAN_COLUMNS, rows[:25], "t:0:0-24")
    insert(client, "scans", SCAN_COLUMNS, rows[25:], "t:0:25-39")
    assert client.execute("SELECT count() FROM scans") == [(80,)]  # raw rows: twice
    # ... but no answer of the read path shows a duplicate
    assert run(client, queries.scan_count(now - DAY_MS, now + 1)) == [(40,)]
    mine = run(client, queries.person_scans("u3", now - DAY_MS, now + 1))
    assert [r[0] for r in mine] == ["e33", "e23", "e13", "e3"]
    at_p1 = run(client, queries.premises_scans(["P1"], now - DAY_MS, now + 1))
    assert len(at_p1) == 10 and len({r[0] for r in at_p1}) == 10
    client.execute("OPTIMIZE TABLE scans FINAL")
    assert client.execute("SELECT count() FROM scans") == [(40,)]  # merged away


def test_the_dedup_token_needs_the_dedup_window_on_a_plain_merge_tree(client: Client) -> None:
    """ClickHouse ignores insert_deduplication_token on a non-replicated MergeTree unless
    non_replicated_deduplication_window > 0: the schema sets it on the sink's tables."""
    client.execute("CREATE TABLE no_window (x UInt32) ENGINE = MergeTree ORDER BY x")
    for _ in range(2):
        client.execute(
            "INSERT INTO no_window VALUES",
            [(1,)],
            settings={**INSERT_SETTINGS, "insert_deduplication_token": "same"},
        )
    assert client.execute("SELECT count() FROM no_window") == [(2,)]
    settings = client.execute(
        "SELECT table, "
        "extract(create_table_query, 'non_replicated_deduplication_window = (\\\\d+)') "
        "FROM system.tables WHERE database = currentDatabase() "
        "AND table IN ('scans', 'premises', 'dead_letters')"
    )
    assert sorted(settings) == [
        ("dead_letters", "10000"),
        ("premises", "10000"),
        ("scans", "10000"),
    ]


def test_ttl_removes_rows_older_than_the_retention(clickhouse_settings: ClickHouseSettings) -> None:
    one_day = clickhouse_settings.model_copy(update={"retention_days": 1})
    with fresh_database(one_day, "ttl") as short:
        migrate(short)
        c = connect(short)
        try:
            now = now_ms()
            old = [scan_row(i, now - 3 * DAY_MS - i) for i in range(5)]
            fresh = [scan_row(100 + i, now - HOUR - i) for i in range(5)]
            c.execute("SYSTEM STOP MERGES")  # the old rows are in when we look
            insert(c, "scans", SCAN_COLUMNS, old + fresh, "ttl")
            for table in ("scans", "scans_by_person"):  # the by-person copy too
                assert c.execute(f"SELECT count() FROM {table}") == [(10,)]
            c.execute("SYSTEM START MERGES")
            for table in ("scans", "scans_by_person"):
                c.execute(f"ALTER TABLE {table} MATERIALIZE TTL SETTINGS mutations_sync = 2")
                c.execute(f"OPTIMIZE TABLE {table} FINAL")
                left = sorted(r[0] for r in c.execute(f"SELECT event_id FROM {table}"))
                assert left == sorted(f"e{100 + i}" for i in range(5)), table
                assert "toIntervalDay(1)" in c.execute(f"SHOW CREATE TABLE {table}")[0][0]
        finally:
            c.disconnect()


def test_the_by_person_path_reads_few_rows(client: Client) -> None:
    """1,000,000 scans over 14 days, inserted into `scans`; the view copies them into
    `scans_by_person`, where one person's 14 days are a few 1,024-row granules of three
    week partitions, instead of the table."""
    now = now_ms()
    client.execute(
        f"""INSERT INTO scans ({", ".join(SCAN_COLUMNS)})
        SELECT concat('e', toString(number)), concat('u', toString(number % 50000)),
               concat('P', toString(intHash32(number) % 3000)),
               fromUnixTimestamp64Milli(toInt64({now} - (number * 3001) % (14 * 86400000)), 'UTC'),
               'checkin', 'gw', NULL, 'n', 'market', 'D', 'W', 'A', 45,
               fromUnixTimestamp64Milli(toInt64({now}), 'UTC')
        FROM numbers(1000000)""",
        settings={"async_insert": 0},
    )
    total = client.execute("SELECT count() FROM scans")[0][0]
    assert total == 1_000_000
    assert client.execute("SELECT count(), uniqExact(event_id) FROM scans_by_person") == [
        (total, total)
    ]
    weeks = client.execute("SELECT uniqExact(toMonday(scanned_at)) FROM scans_by_person")[0][0]
    sql, params = queries.person_scans("u1234", now - 14 * DAY_MS, now + 1)
    rows = client.execute(sql, params)
    read = client.last_query.progress.rows
    assert len(rows) == 20
    assert [r[0] for r in rows] == [
        r[0]
        for r in client.execute(
            "SELECT event_id FROM scans WHERE person_id = 'u1234' ORDER BY scanned_at, event_id"
        )
    ]
    assert read <= weeks * 1024 * 4 and read < total / 50, read
    client.execute(sql.replace("FROM scans_by_person", "FROM scans"), params)
    assert client.last_query.progress.rows == total  # `scans` itself: the whole table


def test_premises_latest_version_wins(client: Client) -> None:
    cols = PREMISES_COLUMNS
    for version, name in [(1, "old"), (3, "newest"), (2, "middle")]:
        insert(
            client,
            "premises",
            cols,
            [("NT-1", name, "market", "D", "W", "A", "", None, None, 45, version)],
            f"p{version}",
        )
    rows = run(client, queries.premises_current(["NT-1"]))
    assert [(r[0], r[1], r[10]) for r in rows] == [("NT-1", "newest", 3)]


def test_rollup_is_exact_after_a_replay(
    clickhouse_settings: ClickHouseSettings, client: Client
) -> None:
    now = now_ms()
    today = local_day(now)
    rows = [
        scan_row(i, now - (i % 5) * 60_000, person=f"u{i % 6}", premises=f"P{i % 2}")
        for i in range(30)
    ]
    writer = ClickHouseWriter(clickhouse_settings)
    try:
        writer.insert("scans", SCAN_COLUMNS, [list(c) for c in zip(*rows, strict=True)], "a")
        writer.refresh_rollup([today])
        expected = [
            (today, "P0", 15, 3),  # persons u0, u2, u4
            (today, "P1", 15, 3),
        ]
        got = [(r[0], r[1], r[6], r[7]) for r in run(client, queries.daily(today, today))]
        assert got == expected
        # a replay with other boundaries, then another refresh: still exact
        writer.insert("scans", SCAN_COLUMNS, [list(c) for c in zip(*rows[:10], strict=True)], "b")
        writer.insert("scans", SCAN_COLUMNS, [list(c) for c in zip(*rows[10:], strict=True)], "c")
        writer.refresh_rollup([today])
        got = [(r[0], r[1], r[6], r[7]) for r in run(client, queries.daily(today, today))]
        assert got == expected
        # the rollup holds numbers only: no person id anywhere in it
        columns = {r[0] for r in client.execute("DESCRIBE TABLE premises_daily")}
        assert "person_id" not in columns and "event_id" not in columns
    finally:
        writer.close()


def test_dirty_days_are_those_stored_after_their_rollup(
    clickhouse_settings: ClickHouseSettings, client: Client
) -> None:
    now = now_ms()
    day = local_day(now - 2 * DAY_MS)
    writer = ClickHouseWriter(clickhouse_settings)
    try:
        assert writer.dirty_days() == []
        cols = (*SCAN_COLUMNS, "stored_at")
        row = (*scan_row(1, now - 2 * DAY_MS), now - HOUR)  # stored an hour ago
        insert(client, "scans", cols, [row], "x")
        assert writer.dirty_days() == [day]
        writer.refresh_rollup([day])
        assert writer.dirty_days() == []
        insert(client, "scans", SCAN_COLUMNS, [scan_row(2, now - 2 * DAY_MS + 1000)], "y")
        assert writer.dirty_days() == [day]
        assert day - timedelta(days=1) not in writer.dirty_days()
    finally:
        writer.close()


def test_dead_letters_replayed_collapse(client: Client) -> None:
    cols = ("stage", "reason", "detail", "raw", "topic", "partition", "offset", "at", "event_id")
    now = now_ms()
    row = ("worker", "bad_timestamp", "x", b"\xff\x00raw", "scans.raw", 1, 42, now, "e1")
    insert(client, "dead_letters", cols, [row], "d1")
    insert(client, "dead_letters", cols, [row], "d2")
    got = run(client, queries.dead_letters(now - 1000))
    assert [(r[0], r[3], r[6]) for r in got] == [("worker", b"\xff\x00raw", 42)]


# ---------------------------------------------------------------- privacy of what is kept


def test_every_table_with_person_data_shows_a_ttl(
    clickhouse_settings: ClickHouseSettings, client: Client
) -> None:
    """SHOW CREATE TABLE of every table declared as holding person ids or their hashes has
    its TTL, and no other table of the schema has a column that holds one."""
    holding = {t.name for t in TABLES if t.person_data}
    for name in holding:
        [(ddl,)] = client.execute(f"SHOW CREATE TABLE {name}")
        days = (
            clickhouse_settings.audit_retention_days
            if name == "audit_log"
            else clickhouse_settings.retention_days
        )
        assert "\nTTL " in ddl and f"+ toIntervalDay({days})" in ddl, (name, ddl)
    personal = client.execute(
        "SELECT DISTINCT table FROM system.columns WHERE database = currentDatabase()"
        " AND (name IN ('person_id', 'subject_id', 'raw') OR type LIKE 'AggregateFunction%')"
        " AND table NOT IN (SELECT name FROM system.tables WHERE database = currentDatabase()"
        " AND engine = 'MaterializedView')"
    )
    assert {r[0] for r in personal} == holding
    views = client.execute(
        "SELECT name, create_table_query FROM system.tables"
        " WHERE database = currentDatabase() AND engine = 'MaterializedView'"
    )
    # copies into tables with scans' own TTL
    assert sorted(v[0] for v in views) == ["places_by_person_mv", "scans_by_person_mv"]
    assert not any("Hash" in v[1] for v in views)


def _scanners(client: Client) -> int:
    return int(client.execute("SELECT uniqExactMerge(scanners) FROM premises_daily_sets")[0][0])


def _union_with(client: Client, hashed: str, params: dict[str, int] | None = None) -> int:
    """Distinct hashes in the stored sets together with `hashed` of the scans' person ids:
    the stored count when they are the same hashes, twice it when none is."""
    sql = (
        "SELECT uniqExactMerge(s) FROM (SELECT scanners AS s FROM premises_daily_sets"
        f" UNION ALL SELECT uniqExactState({hashed}) AS s FROM scans)"
    )
    return int(client.execute(sql, params or {})[0][0])


def test_person_hashes_are_keyed_and_a_key_is_required(
    clickhouse_settings: ClickHouseSettings, client: Client
) -> None:
    now = now_ms()
    today = local_day(now)
    rows = [scan_row(i, now - i * 1000, person=f"u{i % 7}") for i in range(40)]
    data = [list(c) for c in zip(*rows, strict=True)]
    keyless = ClickHouseWriter(
        clickhouse_settings.model_copy(update={"person_hash_key": SecretStr("")})
    )
    try:
        keyless.insert("scans", SCAN_COLUMNS, data, "a")  # scans need no key
        with pytest.raises(WriteError) as failed:
            keyless.refresh_rollup([today])
        assert failed.value.kind == "fatal" and "PERSON_HASH_KEY" in str(failed.value)
    finally:
        keyless.close()
    assert client.execute("SELECT count() FROM premises_daily_sets") == [(0,)]

    writer = ClickHouseWriter(clickhouse_settings)
    try:
        writer.refresh_rollup([today])
    finally:
        writer.close()
    assert _scanners(client) == 7
    k0, k1 = clickhouse_settings.person_hash_key_pair()
    keyed = "sipHash64Keyed((toUInt64(%(k0)s), toUInt64(%(k1)s)), person_id)"
    assert _union_with(client, keyed, {"k0": k0, "k1": k1}) == 7  # the same hashes
    for plain in ("cityHash64(person_id)", "sipHash64(person_id)", "xxHash64(person_id)"):
        assert _union_with(client, plain) == 14, plain  # none of them stored

    other = clickhouse_settings.model_copy(
        update={"person_hash_key": SecretStr("another key, same length")}
    )
    assert other.person_hash_key_pair() != (k0, k1)
    writer = ClickHouseWriter(other)
    try:
        writer.refresh_rollup([today])
    finally:
        writer.close()
    assert _scanners(client) == 14  # another key, other hashes of the same 7 persons
