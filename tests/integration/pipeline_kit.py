"""Helpers for tests that run the whole pipeline as processes (see conftest.py)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from ingest.kafka_settings import KafkaSettings
from scantrace.pipeline import Pipeline

PIPELINE_TOKEN = "pipeline-test-token"


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, pipeline: Pipeline) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = pipeline.failed()
        assert dead is None, f"{dead} exited:\n{pipeline.log_tail(dead, 40)}"
        if predicate():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {n}\n{pipeline.log_tail(n, 30)}" for n in pipeline.procs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def committed(kafka: KafkaSettings, group: str) -> dict[tuple[str, int], int]:
    """The offsets `group` has committed, per (topic, partition)."""
    admin = KafkaAdminClient(**kafka.kafka_python_config())
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
    finally:
        admin.close()


def end_offsets(kafka: KafkaSettings) -> dict[tuple[str, int], int]:
    """The end offsets of the sink's topics, per non-empty (topic, partition)."""
    consumer = KafkaConsumer(**kafka.kafka_python_config())
    try:
        tps = [
            TopicPartition(t, p)
            for t in (kafka.enriched, kafka.premises, kafka.dlq)
            for p in range(kafka.partitions)
        ]
        return {(tp.topic, tp.partition): o for tp, o in consumer.end_offsets(tps).items() if o}
    finally:
        consumer.close()
