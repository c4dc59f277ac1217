"""Fixtures for tests that run the whole pipeline as processes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_kit import PIPELINE_TOKEN, ready, wait_for
from worker_kit import Workers

from ingest.kafka_settings import KafkaSettings
from scantrace.pipeline import Pipeline
from scantrace.services.process import free_port
from sinks.clickhouse_settings import ClickHouseSettings


@pytest.fixture
def pipeline(
    kafka_settings: KafkaSettings,
    clickhouse_settings: ClickHouseSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Pipeline]:
    env = {
        "SCANTRACE_KAFKA__BOOTSTRAP": kafka_settings.bootstrap,
        "SCANTRACE_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "SCANTRACE_KAFKA__PARTITIONS": str(kafka_settings.partitions),
        "SCANTRACE_CLICKHOUSE__URL": clickhouse_settings.url,
        "SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY": (
            clickhouse_settings.person_hash_key.get_secret_value()
        ),
        "SCANTRACE_GATEWAY__TOKENS": json.dumps({PIPELINE_TOKEN: "gw-test"}),
        "SCANTRACE_SINK__GROUP_ID": f"sink-{uuid.uuid4().hex[:8]}",
        "SCANTRACE_SINK__BATCH_SECONDS": "0.3",
        "SCANTRACE_WORKER__DATA_DIR": str(tmp_path / "worker"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    p = Pipeline(
        gateway_port=free_port(),
        worker_metrics_port=free_port(),
        sink_metrics_port=free_port(),
        log_dir=tmp_path / "logs",
    )
    p.start()
    try:
        wait_for(lambda: ready(p.gateway_port), 60, "the gateway", p)
        yield p
    finally:
        p.stop()


@pytest.fixture
def workers(kafka_settings: KafkaSettings, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(kafka_settings, tmp_path)
    try:
        yield w
    finally:
        w.stop_all()
        print(w.logs())  # shown when the test failed
