"""The whole pipeline on the real services: gateway -> Kafka -> worker -> Kafka -> sink ->
ClickHouse, as separate processes, exactly as `scantrace run` starts them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime, timedelta

from pipeline_kit import PIPELINE_TOKEN, wait_for

from ingest.kafka_settings import KafkaSettings
from ingest.registry import publish_registry
from scantrace import synth
from scantrace.loader import load_http
from scantrace.pipeline import Pipeline
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect


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
