"""The schema rendered for one node and for a cluster from one source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from sinks.clickhouse_settings import ClickHouseSettings
from sinks.schema import (
    MIGRATIONS,
    PREMISES_DAILY_SETS,
    TABLES,
    ident,
    render,
    render_script,
    render_steps,
    render_table,
    without_keeper,
)

DEPLOY = Path(__file__).parents[3] / "deploy" / "clickhouse"
SINGLE = ClickHouseSettings(url="clickhouse://h:9000/scantrace")
CLUSTER = SINGLE.model_copy(update={"cluster": "scantrace"})


def statements(settings: ClickHouseSettings) -> list[str]:
    return [s for m in MIGRATIONS for s in render(m, settings)]


def test_versions_are_unique_and_ordered() -> None:
    versions = [m.version for m in MIGRATIONS]
    assert versions == sorted(set(versions)) == list(range(1, len(versions) + 1))
    assert [m.name for m in MIGRATIONS][:5] == [
        "scans",
        "audit_log",
        "premises",
        "dead_letters",
        "premises_daily",
    ]


def test_single_node_scans() -> None:
    [scans] = render(MIGRATIONS[0], SINGLE.model_copy(update={"retention_days": 7}))
    assert scans.startswith("CREATE TABLE IF NOT EXISTS `scantrace`.`scans` (")
    assert "ON CLUSTER" not in scans
    assert "ENGINE = ReplacingMergeTree(processed_at)" in scans
    assert "ORDER BY (premises_id, scanned_at, event_id)" in scans
    assert "PARTITION BY toDate(scanned_at)" in scans
    assert "PROJECTION by_person (SELECT * ORDER BY (person_id, scanned_at))" in scans
    assert "TTL toDateTime(scanned_at) + INTERVAL 7 DAY" in scans
    assert "non_replicated_deduplication_window = 10000" in scans
    assert "deduplicate_merge_projection_mode = 'rebuild'" in scans
    for col in ("district", "ward", "category", "agency", "gateway_id"):
        assert f"{col} LowCardinality(String)" in scans
    assert scans.count("DateTime64(3, 'UTC')") == 4


def test_single_node_by_person_table_replaces_the_projection() -> None:
    [by_person] = [m for m in MIGRATIONS if m.name == "scans_by_person"]
    table, view, backfill, catch_up, drop = render(
        by_person, SINGLE.model_copy(update={"retention_days": 7})
    )
    assert table.startswith("CREATE TABLE IF NOT EXISTS `scantrace`.`scans_by_person` (")
    assert "ENGINE = ReplacingMergeTree(processed_at)" in table
    assert "ORDER BY (person_id, scanned_at, event_id)" in table
    assert "PARTITION BY toMonday(scanned_at)" in table
    # rows are deleted by the TTL: a week partition dropped whole would outlive retention
    assert "TTL toDateTime(scanned_at) + INTERVAL 7 DAY" in table
    assert "ttl_only_drop_parts" not in table and "index_granularity = 1024" in table
    assert view == (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS `scantrace`.scans_by_person_mv  TO "
        "`scantrace`.scans_by_person AS SELECT * FROM `scantrace`.scans"
    )
    assert backfill == (
        "INSERT INTO `scantrace`.scans_by_person SELECT * FROM `scantrace`.scans"
        " SETTINGS distributed_foreground_insert = 1"
    )
    # what inserts already running when the view was made stored, copied again
    assert "WHERE stored_at >= (" in catch_up and "database = 'scantrace'" in catch_up
    assert drop.startswith("ALTER TABLE `scantrace`.scans  DROP PROJECTION IF EXISTS by_person_1k")


def test_cluster_variant_names_and_engines() -> None:
    sql = statements(CLUSTER)
    # every DDL statement; an INSERT (a backfill) goes through the Distributed table
    assert all(" ON CLUSTER `scantrace`" in s for s in sql if not s.startswith("INSERT"))
    assert not any("non_replicated_deduplication_window" in s for s in sql)
    local, dist = sql[0], sql[1]
    assert local.startswith("CREATE TABLE IF NOT EXISTS `scantrace`.`scans_local` ON CLUSTER")
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/scans', "
        "'{replica}', processed_at)" in local
    )
    assert "PROJECTION by_person" in local and "TTL " in local
    assert dist == (
        "CREATE TABLE IF NOT EXISTS `scantrace`.`scans` ON CLUSTER `scantrace` "
        "AS `scantrace`.`scans_local`\n"
        "ENGINE = Distributed('scantrace', 'scantrace', 'scans_local', cityHash64(premises_id))"
    )
    # every table: a Replicated local table, then a Distributed table of the same name
    for t in TABLES:
        local_sql = next(s for s in sql if f"`{t.name}_local` ON CLUSTER" in s.split("(")[0])
        assert re.search(
            rf"Replicated\w*MergeTree\('/clickhouse/tables/{{shard}}/{{database}}/"
            rf"{t.name}', '{{replica}}'",
            local_sql,
        )
        assert any(
            f"`{t.name}` ON CLUSTER" in s and f"'{t.name}_local', {t.shard_key})" in s for s in sql
        ), t.name
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/premises', "
        "'{replica}', version)" in "\n".join(sql)
    )


def test_sharding_keeps_a_premises_on_one_shard() -> None:
    by_name = {t.name: t.shard_key for t in TABLES}
    assert by_name["scans"] == by_name["premises"] == by_name["premises_daily"]
    assert by_name["scans"] == "cityHash64(premises_id)"


@pytest.mark.parametrize(
    ("name", "settings"), [("schema-single.sql", SINGLE), ("schema-cluster.sql", CLUSTER)]
)
def test_deploy_files_are_generated_from_the_source(
    name: str, settings: ClickHouseSettings
) -> None:
    """Regenerate with `scantrace db schema [--cluster scantrace] --out deploy/clickhouse/...`."""
    assert (DEPLOY / name).read_text(encoding="utf-8") == render_script(settings)


def test_script_statements_end_with_semicolons() -> None:
    script = render_script(CLUSTER)
    assert script.count(";\n") == 1 + len(statements(CLUSTER))
    assert script.startswith("-- scantrace ClickHouse schema, cluster scantrace")


@pytest.mark.parametrize("bad", ["", "a b", "x`; DROP", "1abc", "a" * 65])
def test_identifiers_are_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        ident(bad)


def test_db_schema_command_prints_the_deploy_file() -> None:
    from click.testing import CliRunner

    from scantrace.cli import db_schema  # not `main`: it would read the services' state

    result = CliRunner().invoke(db_schema, ["--cluster", "scantrace"])
    assert result.exit_code == 0, result.output
    assert result.output == (DEPLOY / "schema-cluster.sql").read_text(encoding="utf-8")


def test_sink_help_names_the_environment() -> None:
    from click.testing import CliRunner

    from scantrace.commands.sink import sink

    result = CliRunner().invoke(sink, ["--help"])
    assert result.exit_code == 0, result.output
    for env in ("SCANTRACE_SINK__BATCH_ROWS", "SCANTRACE_SINK__METRICS_PORT"):
        assert env in result.output


# An unkeyed hash (or digest) of a person id anywhere in the DDL: `cityHash64(person_id)`,
# `sipHash64(person_id)`, `MD5(person_id)`, ... (a `...Keyed` function is not one).
_HASH_OF_PERSON = re.compile(
    r"\b(\w*(?:hash|md5|sha|farm|murmur|xxh)\w*)\s*\(([^()]|\([^()]*\))*\bperson_id\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize("settings", [SINGLE, CLUSTER], ids=["single", "cluster"])
def test_no_unkeyed_hash_of_a_person_id_in_any_statement(settings: ClickHouseSettings) -> None:
    sql = statements(settings)
    found = [m.group(0) for s in sql for m in _HASH_OF_PERSON.finditer(s)]
    assert [f for f in found if not re.match(r"\w*Keyed\b", f)] == []
    # the pattern does find one: the plain hash the first form of migration 6 used
    assert _HASH_OF_PERSON.search("uniqExactState(cityHash64(person_id)) AS scanners")
    assert _HASH_OF_PERSON.search("SELECT sipHash128( person_id, premises_id)")
    # and nothing computes a keyed hash in DDL: the key would be readable in SHOW CREATE
    assert not any("Keyed" in s for s in sql)


def test_every_table_with_person_data_has_a_ttl_within_its_retention() -> None:
    holding = {t.name for t in TABLES if t.person_data}
    assert holding == {
        "scans",
        "scans_by_person",
        "places_by_person",
        "dead_letters",
        "premises_daily_sets",
        "audit_log",
        "cases",
        "followups",
        "exposure_site_cases",
    }
    short = SINGLE.model_copy(update={"retention_days": 7, "audit_retention_days": 400})
    for t in TABLES:
        if not t.person_data:
            continue
        [ddl] = render_table(t, short)
        want = "INTERVAL 400 DAY" if t.name == "audit_log" else "INTERVAL 7 DAY"
        assert "\nTTL " in ddl and want in ddl, t.name
    # the sets of a local day go at local midnight + retention: with its first scans
    [sets] = render_table(PREMISES_DAILY_SETS, short)
    assert "TTL toDateTime(day, 'Asia/Ho_Chi_Minh') + INTERVAL 7 DAY" in sets


def test_keyed_sets_migration_on_one_node_and_on_a_cluster() -> None:
    [m] = [m for m in MIGRATIONS if m.name == "keyed_sets_and_retention"]
    assert m.version == 10
    steps = render_steps(m, SINGLE)
    sql = [s for s, _ in steps]
    assert sql[0].startswith("CREATE TABLE IF NOT EXISTS `scantrace`.`report_counts` (")
    # the complete days and weeks counted from the old sets, only while they are there
    day_counts, week_counts = steps[1], steps[2]
    assert "'day', d.day AS f" in day_counts[0] and "'week', toMonday(d.day)" in week_counts[0]
    for s, done_if in (day_counts, week_counts):
        assert s.startswith("INSERT INTO `scantrace`.report_counts")
        assert "FROM `scantrace`.premises_daily_sets AS d" in s
        assert "name = 'premises_daily_sets' AND position(create_table_query, ' TTL ') = 0" in (
            done_if
        )
    assert sql[3] == "DROP VIEW IF EXISTS `scantrace`.premises_daily_sets_mv  SYNC"
    assert all(done for _, done in steps[4:6])  # the old table is dropped once
    assert sql[6].startswith("CREATE TABLE IF NOT EXISTS `scantrace`.`premises_daily_sets` (")
    assert "TTL toDateTime(day" in sql[6]
    assert sql[-1] == (
        "ALTER TABLE `scantrace`.audit_log  MODIFY TTL toDateTime(at) + INTERVAL 730 DAY"
    )

    cluster = render_steps(m, CLUSTER)
    csql = [s for s, _ in cluster]
    assert all(" ON CLUSTER `scantrace`" in s for s in csql if not s.startswith("INSERT"))
    assert "DROP VIEW IF EXISTS `scantrace`.premises_daily_sets_mv_local ON CLUSTER" in csql[4]
    assert csql[5].startswith("DROP TABLE IF EXISTS `scantrace`.premises_daily_sets ON CLUSTER")
    assert csql[6].startswith("DROP TABLE IF EXISTS `scantrace`.premises_daily_sets_local ON")
    assert "name = 'premises_daily_sets_local'" in cluster[5][1]
    assert "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/" in csql[7]
    assert "ALTER TABLE `scantrace`.audit_log_local ON CLUSTER `scantrace` MODIFY TTL" in csql[-1]


def test_the_sink_refuses_to_start_without_a_person_hash_key() -> None:
    from click.testing import CliRunner

    from scantrace.cli import main

    env = {
        "SCANTRACE_KAFKA__BOOTSTRAP": "127.0.0.1:9",
        "SCANTRACE_CLICKHOUSE__URL": "clickhouse://127.0.0.1:9/x",
    }
    for key in (None, "too short"):
        result = CliRunner().invoke(
            main, ["sink"], env={**env, "SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY": key}
        )
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY must be set")
    assert SINGLE.model_copy(update={"person_hash_key": SecretStr("x" * 16)}).person_hash_key_pair()


def test_report_groups_and_dead_letter_fields_migrations() -> None:
    """The ward and cross groups are counted for the periods whose sets are all there; the
    dead letters get the report's columns, on the Distributed table too on a cluster."""
    [groups] = [m for m in MIGRATIONS if m.name == "report_groups"]
    day, week = render(groups, SINGLE)
    for sql in (day, week):
        assert "(f, p.ward)" in sql and "(f, p.agency, p.category)" in sql
        assert "toDate(now(), 'Asia/Ho_Chi_Minh') - 28" in sql  # the retention
    [fields] = [m for m in MIGRATIONS if m.name == "dead_letter_scan_fields"]
    assert fields.version == 12
    local, dist = render(fields, CLUSTER)
    assert local.startswith("ALTER TABLE `scantrace`.dead_letters_local ON CLUSTER")
    assert dist.startswith("ALTER TABLE `scantrace`.dead_letters ON CLUSTER")
    for sql in (local, dist):
        assert "ADD COLUMN IF NOT EXISTS premises_id String" in sql
        assert "ADD COLUMN IF NOT EXISTS gateway_id" in sql and "scanned_at" in sql


def test_the_cluster_schema_without_keeper_keeps_the_distributed_tables_only() -> None:
    """What the local cluster (chdb servers, no ZooKeeper client) runs on each node: the
    cluster's statements without `ON CLUSTER`, the plain engines in place of the
    Replicated ones (same arguments after the Keeper path and replica), the Distributed
    tables as they are."""
    sql = [without_keeper(s, "scantrace") for s in statements(CLUSTER)]
    assert not any("ON CLUSTER" in s or "Replicated" in s for s in sql)
    local, dist = sql[0], sql[1]
    assert local.startswith("CREATE TABLE IF NOT EXISTS `scantrace`.`scans_local` (")
    assert "ENGINE = ReplacingMergeTree(processed_at)" in local
    assert dist.endswith(
        "ENGINE = Distributed('scantrace', 'scantrace', 'scans_local', cityHash64(premises_id))"
    )
    # a table without engine arguments keeps none
    assert any("ENGINE = MergeTree()\n" in s for s in sql)
    assert len(sql) == len(statements(CLUSTER))
