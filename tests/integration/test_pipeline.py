"""The whole pipeline on the real services: gateway -> Kafka -> worker -> Kafka -> sink ->
ClickHouse, as separate processes, exactly as `scantrace run` starts them."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import store_queries as queries
from pipeline_kit import PIPELINE_TOKEN, committed, end_offsets, wait_for

from ingest.kafka_settings import KafkaSettings
from ingest.registry import publish_registry
from scantrace import synth
from scantrace.loader import load_http
from scantrace.pipeline import Pipeline
from scantrace.services.process import free_port, spawn, stop, wait_until
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.writer import ClickHouseWriter
from tracing.rules import Rule
from tracing.runner import ClickHouseRunner
from tracing.trace import trace_person


def _stored_ids(ch: ClickHouseSettings) -> tuple[int, int, set[str]]:
    client = connect(ch)
    try:
        rows, unique = client.execute("SELECT count(), uniqExact(event_id) FROM scans")[0]
        ids = {r[0] for r in client.execute("SELECT DISTINCT event_id FROM scans")}
        return rows, unique, ids
    finally:
        client.disconnect()


def test_scans_end_in_clickhouse_exactly_once_with_enrichment_and_dead_letters(
    pipeline: Pipeline, kafka_settings: KafkaSettings, clickhouse_settings: ClickHouseSettings
) -> None:
    premises = synth.generate_premises(7, 150)
    day = synth.generate_scans(
        7, premises, datetime.now(tz=synth.TZ).date() - timedelta(days=1), persons=600, scans=3000
    )
    truth = day.truth
    assert truth.bad > 0 and truth.duplicates > 0 and truth.repeats > 0
    assert truth.unknown_premises > 0
    publish_registry(kafka_settings, premises)

    report = asyncio.run(
        load_http(
            day.scans,
            f"http://127.0.0.1:{pipeline.gateway_port}/v1/scans",
            PIPELINE_TOKEN,
            batch=500,
            concurrency=1,
        )
    )
    assert report.http_errors == {}
    assert report.accepted == truth.valid
    assert sum(report.rejected.values()) == truth.bad

    expected = truth.stored - truth.repeats  # repeats are dropped by the worker
    wait_for(lambda: _stored_ids(clickhouse_settings)[1] >= expected, 120, "stored scans", pipeline)
    time.sleep(2)  # anything more would arrive now
    _rows, unique, ids = _stored_ids(clickhouse_settings)
    assert unique == expected
    assert not ids & {
        s["event_id"] for s in day.scans if s.get("premises_id") in truth.unknown_premises_ids
    }

    client = connect(clickhouse_settings)
    try:
        # Enrichment from the registry, for every stored row.
        by_id = {p.premises_id: p for p in premises}
        enriched = client.execute(
            "SELECT DISTINCT premises_id, premises_name, district, category, agency FROM scans"
        )
        for pid, name, district, category, agency in enriched:
            p = by_id[pid]
            assert (name, district, category, agency) == (p.name, p.district, p.category, p.agency)
        # Every bad record is a dead letter with its reason; nothing else is.
        dead = dict(
            client.execute(
                "SELECT reason, uniqExact(stage, topic, partition, offset, raw) FROM dead_letters "
                "GROUP BY reason"
            )
        )
    finally:
        client.disconnect()
    assert dead == {reason: n for reason, n in truth.bad_by_reason.items() if n}

    # The premises registered late release their parked scans.
    unknown = [
        replace(premises[0], premises_id=pid, name=f"Điểm mới {pid}", version=1)
        for pid in sorted(truth.unknown_premises_ids)
    ]
    publish_registry(kafka_settings, unknown)
    wait_for(
        lambda: _stored_ids(clickhouse_settings)[1] >= expected + truth.unknown_premises,
        90,
        "released scans",
        pipeline,
    )
    time.sleep(2)
    assert _stored_ids(clickhouse_settings)[1] == expected + truth.unknown_premises

    # Replaying the whole of scans.enriched, premises and scans.dlq from offset 0 (a
    # second sink in a group of its own) changes no answer.
    now = int(time.time() * 1000)
    ids = sorted(_stored_ids(clickhouse_settings)[2])
    span = (now - 14 * 86_400_000, now + 86_400_000)
    writer = ClickHouseWriter(clickhouse_settings)
    try:  # the rollup as the sink's next periodic refresh makes it
        writer.refresh_rollup(writer.dirty_days())
    finally:
        writer.close()
    client = connect(clickhouse_settings)
    try:
        for table in ("scans", "scans_by_person"):  # duplicates stay until the end
            client.execute(f"SYSTEM STOP MERGES {table}")
    finally:
        client.disconnect()
    rows_before = _stored_ids(clickhouse_settings)[0]
    before = _answers(clickhouse_settings, ids, span)
    group = f"replay-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "SCANTRACE_SINK__GROUP_ID": group}
    cmd = [sys.executable, "-m", "scantrace.cli", "sink", "--metrics-port", str(free_port())]
    log = pipeline.log_dir / "sink-replay.log"
    pid = spawn(cmd, log, env=env)
    try:
        ends = end_offsets(kafka_settings)
        wait_until(
            lambda: committed(kafka_settings, group) == ends,
            pid=pid,
            log=log,
            what="the replay sink",
            timeout=120,
        )
    finally:
        stop(pid, "scantrace.cli")
    # The replay's chunks are cut from a backlog (by rows), the live ones were cut by time
    # (0.3 s): other insert tokens, so rows are stored a second time (merges are stopped),
    # and every answer must hide them.
    assert _stored_ids(clickhouse_settings)[0] > rows_before
    assert _answers(clickhouse_settings, ids, span) == before


def _answers(ch: ClickHouseSettings, ids: list[str], span: tuple[int, int]) -> dict[str, object]:
    """What the read paths answer: counts, one person's and one premises' scans, the
    rollups, the dead letters and a trace under each rule."""
    client = connect(ch)
    runner = ClickHouseRunner(ch)
    try:
        person, premises = client.execute(
            "SELECT person_id, premises_id FROM scans WHERE event_id = %(e)s LIMIT 1",
            {"e": ids[len(ids) // 2]},
        )[0]
        days = client.execute("SELECT min(day), max(day) FROM premises_daily")[0]
        return {
            "unique": client.execute("SELECT uniqExact(event_id) FROM scans"),
            "count": client.execute(*queries.scan_count(*span)),
            "person": client.execute(*queries.person_scans(person, *span)),
            "premises": client.execute(*queries.premises_scans([premises], *span)),
            "daily": client.execute(*queries.daily(*days)),
            "sets": client.execute(
                "SELECT day, premises_id, uniqExactMerge(scans), uniqExactMerge(scanners)"
                " FROM premises_daily_sets GROUP BY day, premises_id ORDER BY day, premises_id"
            ),
            "registry": client.execute(*queries.premises_current()),
            "dead": client.execute(*queries.dead_letters(0)),
            "traces": [
                sorted(trace_person(runner, person, *span, Rule(rule, depth=2)).contacts)
                for rule in ("scan-window", "overlap")
            ],
        }
    finally:
        runner.close()
        client.disconnect()
