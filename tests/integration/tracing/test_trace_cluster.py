"""The same queries on a Distributed table over two shards give the same answers.

Two ClickHouse servers of their own (chdb, like the local services) with a cluster
`two` of one shard each; `scans` and the by-person tables on the first are Distributed
tables over both shards' own, sharded by premises_id as in the cluster schema (each shard's
views fill its by-person tables from its own inserts). The province is inserted through
the Distributed table and every case traced under both rules at depth 2 must match the
brute-force reference, as on one node.

(The cluster schema itself, `ON CLUSTER` with Replicated engines, needs ClickHouse Keeper,
which these servers do not run: the shards' tables are the single-node ones.)
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracegen import (
    INSERT_COLUMNS,
    Province,
    Reference,
    generate,
    reference_trace,
    rows_for_insert,
)

from scantrace.services.process import free_port, spawn, stop, wait_until
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.migrations import migrate
from tracing.rules import Rule
from tracing.runner import ClickHouseRunner
from tracing.trace import trace_person

MARKER = "scantrace.services.chserver"
# The by-person paths, each filled by a view on `scans` (sinks.schema).
BY_PERSON = ("scans_by_person", "places_by_person")
VIEWS = tuple(f"{t}_mv" for t in BY_PERSON)


def _cluster_xml(ports: list[int]) -> str:
    shards = "".join(
        f"<shard><replica><host>127.0.0.1</host><port>{p}</port></replica></shard>" for p in ports
    )
    return f"<clickhouse><remote_servers><two>{shards}</two></remote_servers></clickhouse>"


def _ready(port: int) -> bool:
    client = connect(
        ClickHouseSettings(url=f"clickhouse://127.0.0.1:{port}/default"), connect_timeout=2
    )
    try:
        client.execute("SELECT 1")
        return True
    finally:
        client.disconnect()


@pytest.fixture(scope="module")
def two_shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    root = tmp_path_factory.mktemp("cluster")
    ports = [free_port() for _ in range(2)]
    pids: list[int] = []
    try:
        for i, port in enumerate(ports):
            home = root / f"shard{i + 1}"
            (home / "config.d").mkdir(parents=True)
            (home / "config.d" / "cluster.xml").write_text(_cluster_xml(ports))
            log = root / f"shard{i + 1}.log"
            argv = [sys.executable, "-m", MARKER, str(home), str(port), str(free_port())]
            pid = spawn(argv, log)
            pids.append(pid)
            wait_until(
                lambda port=port: _ready(port),  # type: ignore[misc]
                pid=pid,
                log=Path(log),
                what=f"ClickHouse shard {i + 1}",
                timeout=60.0,
            )
        yield ports
    finally:
        for pid in pids:
            stop(pid, MARKER)


@pytest.fixture(scope="module")
def province() -> Province:
    return generate(20211016, persons=2000, premises=150, cases=5)


@pytest.fixture(scope="module")
def distributed(two_shards: list[int], province: Province) -> Iterator[ClickHouseRunner]:
    db = f"t_{uuid.uuid4().hex[:12]}"

    def shard(port: int) -> ClickHouseSettings:
        return ClickHouseSettings(url=f"clickhouse://127.0.0.1:{port}/{db}")

    for port in two_shards:  # the shards' own tables, single-node schema
        migrate(shard(port))
    front = ClickHouseSettings(url=f"clickhouse://127.0.0.1:{two_shards[0]}/{db}_front")
    migrate(front)  # audit_log and the rest, local to the front server
    client = connect(front)
    try:
        # every access path Distributed; the shards' own views fill their by-person tables
        for table in (*VIEWS, *BY_PERSON, "scans"):
            client.execute(f"DROP TABLE {table}")
        for table in ("scans", *BY_PERSON):
            client.execute(
                f"CREATE TABLE {table} AS `{db}`.{table}"
                f" ENGINE = Distributed('two', '{db}', '{table}', cityHash64(premises_id))"
            )
        client.execute(
            f"INSERT INTO scans ({INSERT_COLUMNS}) VALUES",
            rows_for_insert(province),
            settings={"distributed_foreground_insert": 1},
        )
        per_shard = [
            connect(shard(p)).execute("SELECT count() FROM scans")[0][0] for p in two_shards
        ]
        assert sum(per_shard) == len(province.scans) and min(per_shard) > 0, per_shard
        by_person = [
            connect(shard(p)).execute("SELECT count() FROM scans_by_person")[0][0]
            for p in two_shards
        ]
        assert by_person == per_shard
        # and each shard's places, once each
        places = "SELECT uniqExact(person_id, scanned_at, premises_id, kind) FROM "
        for port in two_shards:
            c = connect(shard(port))
            assert c.execute(places + "places_by_person") == c.execute(places + "scans")
    finally:
        client.disconnect()
    runner = ClickHouseRunner(front)
    try:
        yield runner
    finally:
        runner.close()


@pytest.mark.parametrize(
    "rule",
    [
        Rule("scan-window", depth=2),
        Rule("overlap", depth=2),
        Rule("overlap", depth=2, cap_at_next_scan=False),
        Rule("overlap", min_overlap_min=15),
    ],
    ids=lambda r: f"{r.name}-{r.depth}-{r.min_overlap_min}-cap{int(r.capped)}",
)
def test_distributed_matches_the_reference(
    distributed: ClickHouseRunner, province: Province, rule: Rule
) -> None:
    """Every contact's person, premises, degree, seed, and times; and the case's
    timeline (built from the by-person table's rows of both shards, the cap included)."""
    frm = province.start_ms - 86_400_000
    to = province.start_ms + (province.days + 1) * 86_400_000
    visits = Reference(province, rule).visits()
    total = 0
    for case in province.cases:
        result = trace_person(distributed, case, frm, to, rule)
        got = {
            (
                c.person_id,
                c.premises_id,
                c.degree,
                c.via_person_id or case,
                c.case_time_from,
                c.case_time_to,
                c.contact_time_from,
                c.contact_time_to,
            )
            for c in result.contacts
        }
        want = {
            (
                c.person_id,
                c.premises_id,
                c.degree,
                c.via,
                c.case_from,
                c.case_to,
                c.contact_from,
                c.contact_to,
            )
            for c in reference_trace(province, rule, case, frm, to)
        }
        assert got == want, case
        total += len(got)
        timeline = sorted(
            (v.premises_id, v.start, v.end)
            for (person, _), vs in visits.items()
            if person == case
            for v in vs
            if any(frm <= t <= to for t in v.scan_times)
        )
        assert sorted((v.premises_id, v.time_from, v.time_to) for v in result.visits) == timeline
    assert total > 100
