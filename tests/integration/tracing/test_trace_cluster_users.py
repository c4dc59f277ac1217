"""The cluster grants (`scantrace db users --cluster`) on two real shards: with the
cluster's inter-server secret a shard runs its part of a Distributed query as the user
who asked, so the tracer's grants on `t` and `t_local` are what let it trace across
shards (GLOBAL IN included), and what keep it out of the audit log on every shard.

Replicated tables need Keeper, which the chdb server lacks: each shard gets the cluster
schema (`t_local` tables, Distributed `t`, the views on `scans_local`) with the plain
engines in place of the Replicated ones, statement by statement on each node instead of
`ON CLUSTER`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clickhouse_driver import errors
from tracegen import INSERT_COLUMNS, Province, generate, rows_for_insert

from scantrace.services import clickhouse_local
from scantrace.services.process import free_port, stop, wait_until
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.migrations import migrate_nodes
from tracing.audit import Actor, AuditWriter
from tracing.rules import Rule
from tracing.runner import ClickHouseRunner
from tracing.trace import Tracer, trace_person

CLUSTER = "two"
NOT_ENOUGH_PRIVILEGES = 497


@dataclass(frozen=True)
class Cluster:
    ports: list[int]
    database: str
    users: dict[str, dict[str, str]]

    def url(self, role: str | None = None, shard: int = 0) -> ClickHouseSettings:
        auth = ""
        if role is not None:
            auth = f"{self.users[role]['username']}:{self.users[role]['password']}@"
        return ClickHouseSettings(
            url=f"clickhouse://{auth}127.0.0.1:{self.ports[shard]}/{self.database}"
        )


def _answers(port: int) -> bool:
    client = connect(ClickHouseSettings(url=f"clickhouse://127.0.0.1:{port}/default"))
    try:
        return bool(client.execute("SELECT 1") == [(1,)])
    finally:
        client.disconnect()


@pytest.fixture(scope="module")
def province() -> Province:
    return generate(20211017, persons=600, premises=60, cases=3)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, province: Province) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("secure-cluster")
    ports = [free_port(), free_port()]
    users = clickhouse_local.new_users()
    db = f"t_{uuid.uuid4().hex[:12]}"
    secret = uuid.uuid4().hex  # the same on every node
    pids: list[int] = []
    try:
        for i, port in enumerate(ports):
            state = root / f"shard{i + 1}"
            (state / "clickhouse" / "config.d").mkdir(parents=True)
            (state / "clickhouse" / "config.d" / "cluster.xml").write_text(
                clickhouse_local.remote_servers_xml(CLUSTER, ports, secret)
            )
            record = clickhouse_local.start(
                state, (port, free_port()), users=users, database=db, cluster=CLUSTER
            )
            pids.append(int(record["pid"]))  # type: ignore[call-overload]
            wait_until(
                lambda port=port: _answers(port),  # type: ignore[misc]
                pid=pids[-1],
                log=Path(str(record["log"])),
                what=f"ClickHouse shard {i + 1}",
                timeout=60.0,
            )
        c = Cluster(ports, db, users)
        # step by step on both nodes, as ON CLUSTER does (a step may read the others)
        migrate_nodes(
            c.url("migrator").model_copy(update={"cluster": CLUSTER}),
            [c.url("migrator", shard) for shard in range(2)],
        )
        admin = connect(c.url())
        try:
            admin.execute(
                f"INSERT INTO scans ({INSERT_COLUMNS}) VALUES",
                rows_for_insert(province),
                settings={"distributed_foreground_insert": 1},
            )
        finally:
            admin.disconnect()
        yield c
    finally:
        for pid in pids:
            stop(pid, "scantrace.services.chserver")


def test_the_tracer_traces_across_shards_as_itself(cluster: Cluster, province: Province) -> None:
    per_shard = []
    for shard in range(2):
        admin = connect(cluster.url(shard=shard))
        try:
            per_shard.append(admin.execute("SELECT count() FROM scans_local")[0][0])
        finally:
            admin.disconnect()
    assert min(per_shard) > 0, per_shard  # the rows really are on both shards
    frm = province.start_ms - 86_400_000
    to = province.start_ms + (province.days + 1) * 86_400_000
    rule = Rule("scan-window", depth=2)
    admin = ClickHouseRunner(cluster.url())
    tracer = ClickHouseRunner(cluster.url("tracer"))
    try:
        asked = Tracer(tracer, AuditWriter(tracer), retention_days=3650)
        for case in province.cases:
            want = trace_person(admin, case, frm, to, rule).contacts
            got = asked.trace(Actor("A", "tracer", "cli"), case, frm, to, rule).contacts
            assert got == want and got, case
    finally:
        admin.close()
        tracer.close()


def test_the_tracer_cannot_read_or_delete_the_audit_log_on_any_shard(cluster: Cluster) -> None:
    for shard in range(2):
        client = connect(cluster.url("tracer", shard))
        try:
            for sql in (
                "SELECT count() FROM audit_log",
                "SELECT count() FROM audit_log_local",
                "ALTER TABLE audit_log_local DELETE WHERE 1",
                "TRUNCATE TABLE audit_log_local",
            ):
                with pytest.raises(errors.ServerException) as info:
                    client.execute(sql)
                assert info.value.code == NOT_ENOUGH_PRIVILEGES, (shard, sql)
        finally:
            client.disconnect()
    # The auditor reads the rows the tracer wrote. A Distributed insert reaches the shards
    # in the background, as its user (the tracer): flushed here rather than waited for.
    admin = connect(cluster.url())
    try:
        admin.execute("SYSTEM FLUSH DISTRIBUTED audit_log")
    finally:
        admin.disconnect()
    auditor = connect(cluster.url("auditor"))
    try:
        assert auditor.execute("SELECT count() > 0 FROM audit_log") == [(1,)]
    finally:
        auditor.disconnect()


def test_without_the_local_tables_grant_the_shards_refuse(cluster: Cluster) -> None:
    """The report user may read `premises` only: a Distributed read of `scans` fails on
    the shards as well as on the node asked."""
    client = connect(cluster.url("report"))
    try:
        with pytest.raises(errors.ServerException) as info:
            client.execute("SELECT count() FROM scans")
        assert info.value.code == NOT_ENOUGH_PRIVILEGES
        assert client.execute("SELECT count() >= 0 FROM premises") == [(1,)]
    finally:
        client.disconnect()
