"""The kafka-python scan publisher against the real broker: keys, partitions shared with
the gateway and the premises registry, and flush failing loudly without a broker."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import msgpack
import pytest
from kafka import KafkaConsumer

from ingest.contract import ScanRejected, now_ms
from ingest.kafka_settings import KafkaSettings
from ingest.partitioning import partition_for
from ingest.publisher import PublishError, ScanPublisher


def scans(n: int) -> list[dict[str, Any]]:
    now = now_ms()
    return [
        {
            "event_id": f"e-{uuid.uuid4().hex[:10]}",
            "person_id": f"p-{i % 11}",
            "premises_id": f"NT-{i % 13:03d}" if i % 4 else "Bến xe Phan Rang",
            "scanned_at": now - 1000 * i,
            "kind": "checkout" if i % 3 == 0 else "checkin",
        }
        for i in range(n)
    ]


def read_all(kafka: KafkaSettings, expected: int, timeout_s: float = 8.0) -> list[Any]:
    consumer = KafkaConsumer(
        kafka.raw,
        bootstrap_servers=kafka.servers(),
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
    )
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out.extend(consumer)
    finally:
        consumer.close()
    return out


def test_published_scans_are_keyed_and_partitioned_like_the_gateway(
    kafka_settings: KafkaSettings,
) -> None:
    batch = scans(300)
    delivered: list[str] = []
    with ScanPublisher(
        kafka_settings,
        gateway_id="kiosk-7",
        on_delivery=lambda ev, err: delivered.append(ev.event_id) if err is None else None,
    ) as pub:
        rejected = pub.publish_many([*batch[:150], {"event_id": "bad"}, *batch[150:]])
        assert [(i, e.reason) for i, e in rejected] == [(150, "missing_field")]
        with pytest.raises(ScanRejected):
            pub.publish({**batch[0], "scanned_at": now_ms() + 3_600_000})
        assert pub.flush(timeout=10) == 300
    assert sorted(delivered) == sorted(s["event_id"] for s in batch)
    records = read_all(kafka_settings, 300)
    assert len(records) == 300
    partitions = list(range(kafka_settings.partitions))
    by_id = {s["event_id"]: s for s in batch}
    for msg in records:
        wire = msgpack.unpackb(msg.value)
        assert msg.key == by_id[wire["event_id"]]["premises_id"].encode()
        assert msg.partition == partition_for(msg.key, partitions)
        assert wire["gateway_id"] == "kiosk-7" and wire["received_at"] is not None


def test_without_a_broker_publishing_fails_loudly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pub = ScanPublisher(
        KafkaSettings(bootstrap=f"127.0.0.1:{port}"),
        gateway_id="kiosk-7",
        api_version=(3, 0),  # do not probe the broker in the constructor
        max_block_ms=300,
    )
    try:
        with pytest.raises(PublishError) as info:
            pub.publish(scans(1)[0])
        assert info.value.failed == 1
    finally:
        pub._producer.close(timeout=1)
