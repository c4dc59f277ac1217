"""`services up --brokers 3 --clickhouse-shards 2`, `run --workers 2 --sinks 2` and a
synthetic day of scans: the status the operator sees, the topics as the brokers describe
them, and `scantrace trace` answering from the Distributed tables exactly what it answers
on one node for the same scans."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from faultkit import TOKEN, Cluster, Run, wait

from ingest.admin import ensure_topics
from ingest.registry import publish_registry
from scantrace import synth
from scantrace.loader import load_http
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.migrations import migrate


def _cli(cluster: Cluster, *args: str, env: dict[str, str] | None = None) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "scantrace.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={
            **os.environ,
            "SCANTRACE_SERVICES__STATE_DIR": str(cluster.settings.state_dir),
            **(env or {}),
        },
    )
    return out


def test_status_lists_every_node_and_shard(cluster: Cluster) -> None:
    out = _cli(cluster, "services", "status", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    nodes, shards = status["kafka_nodes"], status["clickhouse_shards"]
    assert [n["id"] for n in nodes] == [1, 2, 3] and all(n["alive"] for n in nodes)
    assert status["kafka_bootstrap"] == ",".join(n["bootstrap"] for n in nodes)
    assert [s["shard"] for s in shards] == [1, 2] and all(s["alive"] for s in shards)
    assert status["clickhouse_native"] == shards[0]["native"]
    for key in ("running", "kafka", "clickhouse", "clickhouse_url", "clickhouse_http"):
        assert key in status, key
    # What every component is told: three replicas for Faust's own topics too.
    env = _cli(cluster, "services", "env", "worker").stdout
    assert "SCANTRACE_KAFKA__REPLICATION_FACTOR=3" in env


def test_topics_are_replicated_three_times_with_two_in_sync_required(cluster: Cluster) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    out = _cli(cluster, "topics", "describe", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    d = json.loads(out.stdout)
    assert d["brokers"] == [1, 2, 3] and d["under_replicated_partitions"] == 0
    names = [t["topic"] for t in d["topics"]]
    assert names == ["scans.raw", "scans.enriched", "scans.dlq", "premises"]
    for t in d["topics"]:
        for p in t["partitions"]:
            assert p["replicas"] == [1, 2, 3] == p["isr"], (t["topic"], p)
    assert {g["component"] for g in d["consumer_lag"]} == {"worker", "sink"}
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
    finally:
        admin.close()
    for name in names:
        assert configs["topic"][name]["min.insync.replicas"]["value"] == "2"
    table = _cli(cluster, "topics", "describe").stdout
    assert "under-replicated partitions: 0" in table and "scans.raw" in table


def _copy_to_one_node(cluster_db: ClickHouseSettings) -> ClickHouseSettings:
    """The same scans in a single-node database of the same server (its own MergeTree
    tables, no Distributed one): what one node would hold."""
    one = ClickHouseSettings(
        url=cluster_db.with_database(f"{cluster_db.database}_one").url,
        person_hash_key=cluster_db.person_hash_key,
    )
    migrate(one)
    client = connect(cluster_db)
    try:
        client.execute(
            f"INSERT INTO `{one.database}`.scans SELECT * FROM `{cluster_db.database}`.scans FINAL"
        )
    finally:
        client.disconnect()
    return one


@pytest.mark.timeout(1200)
def test_a_synthetic_day_through_the_cluster_traces_as_on_one_node(
    cluster: Cluster, tmp_path: Path
) -> None:
    kafka = cluster.kafka(f"s{uuid.uuid4().hex[:8]}.")
    ensure_topics(kafka)
    ch = cluster.database(f"s_{uuid.uuid4().hex[:10]}")
    premises = synth.generate_premises(5, 200)
    day = synth.generate_scans(
        5, premises, datetime.now(tz=synth.TZ).date() - timedelta(days=1), persons=800, scans=6000
    )
    truth = day.truth
    publish_registry(kafka, premises)
    run = Run(kafka, ch, tmp_path / "logs", cluster.settings.state_dir).start()
    try:
        report = asyncio.run(
            load_http(day.scans, f"{run.urls()[0]}/v1/scans", TOKEN, batch=500, concurrency=2)
        )
        assert report.http_errors == {} and report.accepted == truth.valid
        expected = truth.stored - truth.repeats

        def stored() -> int:
            client = connect(ch)
            try:
                return int(client.execute("SELECT uniqExact(event_id) FROM scans")[0][0])
            finally:
                client.disconnect()

        wait(lambda: stored() >= expected, 600, f"{expected} scans stored")
        assert stored() == expected
    finally:
        run.stop()
    # Both shards hold a part of them.
    for port in cluster.shard_ports():
        client = connect(ClickHouseSettings(url=f"clickhouse://127.0.0.1:{port}/{ch.database}"))
        try:
            assert client.execute("SELECT count() FROM scans_local")[0][0] > 0
        finally:
            client.disconnect()
    one = _copy_to_one_node(ch)
    client = connect(ch)
    try:
        persons = [
            r[0]
            for r in client.execute(
                "SELECT person_id FROM scans GROUP BY person_id ORDER BY count() DESC, "
                "person_id LIMIT 4"
            )
        ]
    finally:
        client.disconnect()
    start = (datetime.now(tz=synth.TZ) - timedelta(days=3)).isoformat()
    end = (datetime.now(tz=synth.TZ) + timedelta(days=1)).isoformat()
    for person in persons:
        answers = []
        for settings in (ch, one):
            out = _cli(
                cluster,
                "trace",
                person,
                "--from",
                start,
                "--to",
                end,
                "--depth",
                "2",
                "--format",
                "json",
                env={"SCANTRACE_CLICKHOUSE__URL": settings.url},
            )
            assert out.returncode == 0, out.stderr
            answers.append(json.loads(out.stdout))
        cluster_answer, one_answer = answers
        assert cluster_answer["visits"] and cluster_answer["contacts"], person
        for key in ("visits", "contacts"):
            assert cluster_answer[key] == one_answer[key], (person, key)
