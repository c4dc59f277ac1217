"""The role -> grants source (`sinks.grants`) and the `db users` SQL made from it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from sinks.grants import (
    ROLES,
    TABLE_ACCESS,
    grants,
    password_placeholder,
    render_users_sql,
    role_name,
    username,
)
from sinks.schema import TABLES

DEPLOY = Path(__file__).parents[3] / "deploy" / "clickhouse"


def targets(role: str, cluster: str = "") -> dict[str, set[str]]:
    """{target: privileges} of a role."""
    out: dict[str, set[str]] = {}
    for g in grants(role, "prov", cluster):
        # a column list "SELECT(a, b)" is one privilege
        privileges = re.findall(r"[A-Z ]+(?:\([^)]*\))?", g.privileges)
        out.setdefault(g.target, set()).update(p.strip() for p in privileges if p.strip())
    return out


def test_every_table_of_the_schema_has_a_line() -> None:
    assert set(TABLE_ACCESS) == {t.name for t in TABLES} | {"schema_migrations"}


def test_the_tracer_writes_the_audit_log_and_can_neither_read_nor_change_it() -> None:
    t = targets("tracer")
    assert t["`prov`.`audit_log`"] == {"INSERT"}
    assert t["`prov`.`scans`"] == t["`prov`.`scans_by_person`"] == t["`prov`.`premises`"]
    assert t["`prov`.`scans`"] == t["`prov`.`places_by_person`"] == {"SELECT"}
    workbench = ("cases", "followups", "exposure_sites", "exposure_site_cases")
    by_person = ("scans_by_person", "places_by_person")
    assert set(t) == {
        f"`prov`.`{n}`" for n in ("scans", *by_person, "premises", "audit_log", *workbench)
    } | {"`prov`.`schema_migrations`"}
    # the workbench appends versions of rows and reads them; it never alters or deletes
    assert all(t[f"`prov`.`{n}`"] == {"INSERT", "SELECT"} for n in workbench)


def test_the_auditor_and_the_report_never_see_detail_rows() -> None:
    assert targets("auditor") == {"`prov`.`audit_log`": {"SELECT"}}
    report = targets("report")
    dead = report.pop("`prov`.`dead_letters`")
    assert set(report) == {
        f"`prov`.`{n}`"
        for n in ("premises_daily", "premises_daily_sets", "report_counts", "premises")
    }
    assert all(p == {"SELECT"} for p in report.values())
    # of the dead letters, only columns without person data: no raw bytes, detail, event id
    [columns] = dead
    assert columns.startswith("SELECT(")
    granted = {c.strip() for c in columns[len("SELECT(") : -1].split(",")}
    assert granted == {"stage", "reason", "premises_id", "gateway_id", "scanned_at", "at"}


def test_the_sink_writes_its_tables_and_reads_what_the_rollup_reads() -> None:
    sink = targets("sink")
    for table in (
        "scans",
        "scans_by_person",
        "places_by_person",
        "premises",
        "dead_letters",
        "premises_daily",
        "premises_daily_sets",
        "report_counts",
    ):
        assert "INSERT" in sink[f"`prov`.`{table}`"], table
    reads = {t for t, p in sink.items() if "SELECT" in p}
    # sinks.rollup's queries: the rollup, the keyed sets and the counts of complete periods
    assert reads == {
        f"`prov`.`{n}`"
        for n in ("scans", "premises", "premises_daily", "premises_daily_sets", "report_counts")
    }
    assert "`prov`.`audit_log`" not in sink


def test_only_the_migrator_has_ddl_and_only_on_its_database() -> None:
    migrator = targets("migrator")
    assert {"CREATE TABLE", "ALTER TABLE", "DROP TABLE", "INSERT", "SELECT"} <= migrator["`prov`.*"]
    assert "*.*" not in migrator  # single node: nothing global
    for role in ROLES:
        if role != "migrator":
            privileges = {p.split("(")[0] for p in set().union(*targets(role).values())}
            assert privileges <= {"SELECT", "INSERT"}, role


def test_on_a_cluster_both_the_distributed_and_the_local_table_are_granted() -> None:
    t = targets("tracer", "c1")
    assert t["`prov`.`scans`"] == t["`prov`.`scans_local`"] == {"SELECT"}
    assert "`prov`.`schema_migrations_local`" not in t  # a plain table on every node
    migrator = targets("migrator", "c1")
    assert migrator["*.*"] == {"CLUSTER"}
    assert "ReplicatedReplacingMergeTree" in migrator and "Distributed" in migrator


def test_unknown_role_and_bad_identifiers_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown ClickHouse role"):
        grants("admin", "prov")
    with pytest.raises(ValueError, match="identifier"):
        grants("tracer", "prov; DROP")


def test_users_sql_single_node() -> None:
    sql = render_users_sql("prov")
    assert "ON CLUSTER" not in sql
    for role in ROLES:
        assert f"CREATE ROLE IF NOT EXISTS `{role_name(role)}`;" in sql
        assert f"GRANT `{role_name(role)}` TO `{username(role)}`;" in sql
        assert f"BY '{password_placeholder(role)}'" in sql
    assert "GRANT INSERT ON `prov`.`audit_log` TO `scantrace_tracer_role`;" in sql
    assert "GRANT SELECT ON `prov`.`audit_log` TO `scantrace_auditor_role`;" in sql
    body = [line for line in sql.splitlines() if line and not line.startswith("--")]
    assert all(line.endswith(";") for line in body)


def test_users_sql_cluster_and_hashed_passwords() -> None:
    digest = hashlib.sha256(b"s3cret").hexdigest()
    sql = render_users_sql("prov", "c1", {"sink": digest})
    assert "CREATE ROLE IF NOT EXISTS `scantrace_sink_role` ON CLUSTER `c1`;" in sql
    assert "GRANT ON CLUSTER `c1` SELECT ON `prov`.`scans_local` TO `scantrace_tracer_role`;" in sql
    assert f"IDENTIFIED WITH sha256_hash BY '{digest}'" in sql
    assert "s3cret" not in sql
    assert password_placeholder("tracer") in sql  # the others keep their placeholders
    with pytest.raises(ValueError, match="SHA-256"):
        render_users_sql("prov", "", {"sink": "not-a-hash'; DROP"})


@pytest.mark.parametrize(
    ("name", "cluster"), [("users-single.sql", ""), ("users-cluster.sql", "scantrace")]
)
def test_deploy_files_are_generated_from_the_source(name: str, cluster: str) -> None:
    """Regenerate with `scantrace db users [--cluster scantrace] --out deploy/clickhouse/...`."""
    assert (DEPLOY / name).read_text(encoding="utf-8") == render_users_sql("scantrace", cluster)


def test_db_users_command() -> None:
    from scantrace.cli import db_users  # not `main`: it would read the services' state

    result = CliRunner().invoke(db_users, ["--cluster", "scantrace"])
    assert result.exit_code == 0, result.output
    assert result.output == (DEPLOY / "users-cluster.sql").read_text(encoding="utf-8")
    hashed = CliRunner().invoke(db_users, ["--password", "tracer=pa=ss"])
    assert hashed.exit_code == 0, hashed.output
    assert hashlib.sha256(b"pa=ss").hexdigest() in hashed.output and "pa=ss" not in hashed.output
    bad = CliRunner().invoke(db_users, ["--password", "root=x"])
    assert bad.exit_code == 2
    assert bad.output.startswith("error: --password wants ROLE=SECRET")
