"""The worker's settings, metrics and Faust app wiring (no broker: nothing connects)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from faust.types import TP
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from ingest.kafka_settings import KafkaSettings
from processors import faust_transport
from processors.app import WorkerApp, create_app, missing_state
from processors.faust_transport import (
    BulkConsumer,
    BulkProducer,
    BulkTransport,
    RefreshingAssignor,
)
from processors.metrics import WorkerMetrics
from processors.worker_settings import WorkerSettings


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCANTRACE_KAFKA__BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("SCANTRACE_KAFKA__TOPIC_PREFIX", "t1.")
    monkeypatch.setenv("SCANTRACE_CORE__DEDUP_HORIZON_MS", "60000")
    monkeypatch.setenv("SCANTRACE_WORKER__PROCESSING_GUARANTEE", "exactly_once")
    monkeypatch.setenv("SCANTRACE_WORKER__METRICS_PORT", "9101")
    settings = WorkerSettings()
    assert settings.kafka.servers() == ["k1:9092", "k2:9092"]
    assert settings.core.dedup_horizon_ms == 60_000
    assert settings.worker.processing_guarantee == "exactly_once"
    assert settings.worker.metrics_port == 9101
    assert settings.app_id == "t1.scantrace-worker"
    changed = settings.with_options(metrics_port=0, app_id="w2")
    assert (changed.worker.metrics_port, changed.app_id) == (0, "t1.w2")
    with pytest.raises(ValidationError):
        settings.with_options(processing_guarantee="at_most_once")
    monkeypatch.setenv("SCANTRACE_WORKER__BATCH_MAX_RECORDS", "0")
    with pytest.raises(ValidationError):
        WorkerSettings()


def test_create_app_wires_topics_tables_and_timers_without_connecting() -> None:
    settings = WorkerSettings(
        kafka=KafkaSettings(bootstrap="127.0.0.1:9", topic_prefix="t2.", partitions=6)
    ).with_options(processing_guarantee="exactly_once")
    app = create_app(settings, CollectorRegistry())
    assert isinstance(app, WorkerApp)
    assert app.conf.id == "t2.scantrace-worker"
    assert app.conf.processing_guarantee.value == "exactly_once"
    assert app.conf.web_enabled is False
    assert app.bulk is not None and app.bulk.topics == {"t2.scans.raw", "t2.premises"}
    assert {t.get_topic_name() for t in app.topics} >= {"t2.scans.raw", "t2.premises"}
    assert sorted(app.tables) == ["last_kept", "parked", "premises", "seen"]
    for name, table in app.tables.items():
        assert table.partitions == 6
        topic = table.changelog_topic
        assert topic.get_topic_name() == f"t2.scantrace-worker-{name}-changelog"
        if name in ("seen", "last_kept"):  # batch records, forgotten by age (tables.py)
            assert (topic.compacting, topic.deleting, topic.retention) == (False, True, 172_800)
            assert topic.config == {"segment.ms": str(3 * 3_600_000)}
        else:
            assert (topic.compacting, topic.deleting) == (True, None)
    assert isinstance(app.transport, BulkTransport)
    assert app.transport.Consumer is BulkConsumer and app.transport.Producer is BulkProducer
    assert len(app._app_tasks) == 2  # the expire and gauge timers
    assert isinstance(app.assignor, RefreshingAssignor)


CHANGELOGS = [f"w-{name}-changelog" for name in ("seen", "last_kept", "parked", "premises")]


def test_a_partition_lacks_state_unless_every_table_of_that_number_is_assigned() -> None:
    sources = {TP("raw", 2), TP("premises", 2)}
    every = sources | {TP(topic, 2) for topic in CHANGELOGS}
    assert missing_state(every, CHANGELOGS, 2) == []
    # one table short: that one is named
    assert missing_state(every - {TP("w-premises-changelog", 2)}, CHANGELOGS, 2) == [
        "w-premises-changelog"
    ]
    # the tables of the next partition do not count for this one
    others = sources | {TP(topic, 3) for topic in CHANGELOGS}
    assert missing_state(others, CHANGELOGS, 2) == CHANGELOGS
    assert missing_state(others, CHANGELOGS, 3) == []
    # aiokafka's TopicPartition compares as Faust's TP
    assert missing_state({TopicPartition(t, 2) for t in CHANGELOGS}, CHANGELOGS, 2) == []
    assert missing_state(set(), [], 0) == []  # no tables: nothing to miss


class _Client:
    """aiokafka's client as the leader's refresh uses it: the topic shows up after
    `listed_after` refreshes."""

    def __init__(self, listed_after: int) -> None:
        self.refreshes = 0
        self.listed_after = listed_after
        self.cluster = self

    async def force_metadata_update(self) -> bool:
        self.refreshes += 1
        return True

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {0, 1} if self.refreshes >= self.listed_after else None


def _assignor(client: _Client) -> Any:
    aiokafka_consumer = SimpleNamespace(_client=client)
    thread = SimpleNamespace(_ensure_consumer=lambda: aiokafka_consumer)
    assignor = RefreshingAssignor.__new__(RefreshingAssignor)
    assignor.app = SimpleNamespace(consumer=SimpleNamespace(_thread=thread))
    return assignor


def test_the_leader_refreshes_its_metadata_until_it_lists_the_missing_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(faust_transport, "METADATA_RETRY_S", 0)
    client = _Client(listed_after=3)
    asyncio.run(_assignor(client)._refresh_until_listed(["w-premises-changelog"]))
    assert client.refreshes == 3  # and not one more once it is listed
    # never listed: it gives up after its retries (aiokafka's own refresh remains)
    monkeypatch.setattr(faust_transport, "METADATA_RETRIES", 5)
    never = _Client(listed_after=10**9)
    asyncio.run(_assignor(never)._refresh_until_listed(["w-premises-changelog"]))
    assert never.refreshes == 5


def test_lag_series_of_partitions_that_moved_away_disappear() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    metrics.set_lags({("raw", 0): 5, ("raw", 1): 0})
    metrics.set_lags({("raw", 1): 7})
    reg = metrics.registry
    assert (
        reg.get_sample_value("scantrace_worker_consumer_lag", {"topic": "raw", "partition": "0"})
        is None
    )
    assert (
        reg.get_sample_value("scantrace_worker_consumer_lag", {"topic": "raw", "partition": "1"})
        == 7
    )


def test_metric_names_match_the_deploy_contract() -> None:
    from pathlib import Path

    metrics = WorkerMetrics(CollectorRegistry())
    metrics.scans_enriched.labels("D1").inc()
    metrics.dead_letters.labels("undecodable").inc()
    metrics.set_lags({("raw", 0): 1})
    metrics.batch_duration.observe(0.1)
    exported = {s.name for m in metrics.registry.collect() for s in m.samples}
    contract = Path(__file__).parents[3] / "deploy" / "metrics.txt"
    wanted = {n for n in contract.read_text().split() if n.startswith("scantrace_worker_")}
    assert wanted <= exported, wanted - exported
