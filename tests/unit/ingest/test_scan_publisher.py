"""The kafka-python scan publisher above a fake producer: validation, keys, delivery
callbacks, and flush raising when anything was not acknowledged."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from kafka.errors import KafkaTimeoutError, NotLeaderForPartitionError
from kafka.future import Future

from ingest.contract import ScanEvent, ScanRejected, now_ms
from ingest.kafka_settings import KafkaSettings
from ingest.publisher import PublishError, ScanPublisher

KAFKA = KafkaSettings(bootstrap="127.0.0.1:1", topic_prefix="t.")


class FakeProducer:
    """kafka-python's producer surface that ScanPublisher uses, with its Future type."""

    def __init__(
        self, fail_keys: frozenset[bytes] = frozenset(), flush_error: Exception | None = None
    ) -> None:
        self.sent: list[tuple[str, bytes, bytes, Future]] = []
        self.fail_keys = fail_keys
        self.flush_error = flush_error
        self.closed = False

    def send(self, topic: str, *, key: bytes, value: bytes) -> Future:
        future = Future()
        self.sent.append((topic, key, value, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        if self.flush_error is not None:
            raise self.flush_error
        for _, key, _, future in self.sent:
            if not future.is_done:
                if key in self.fail_keys:
                    future.failure(NotLeaderForPartitionError())
                else:
                    future.success("metadata")

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def scan(i: int, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "person_id": f"p{i}",
        "premises_id": f"NT-{i}",
        "scanned_at": now_ms() - 1000,
        **overrides,
    }


def test_publish_validates_stamps_and_keys_by_premises() -> None:
    producer = FakeProducer()
    pub = ScanPublisher(KAFKA, gateway_id="kiosk-1", producer=producer)
    event = pub.publish(scan(1, gateway_id="forged"))
    assert event.gateway_id == "kiosk-1" and event.received_at is not None
    topic, key, value, _ = producer.sent[0]
    assert (topic, key) == ("t.scans.raw", b"NT-1")
    assert msgpack.unpackb(value) == event.to_wire()
    assert pub.flush() == 1
    assert pub.counts == {"sent": 1, "acked": 1, "failed": 0}


def test_invalid_scan_raises_and_is_not_sent() -> None:
    producer = FakeProducer()
    pub = ScanPublisher(KAFKA, gateway_id="kiosk-1", producer=producer)
    with pytest.raises(ScanRejected) as info:
        pub.publish(scan(1, kind="maybe"))
    assert info.value.reason == "unknown_kind"
    assert producer.sent == []
    assert pub.flush() == 0


def test_publish_many_returns_rejections_and_accepts_events() -> None:
    producer = FakeProducer()
    pub = ScanPublisher(KAFKA, gateway_id="kiosk-1", producer=producer)
    items: list[Any] = [
        scan(0),
        "junk",
        ScanEvent("e2", "p2", "NT-2", now_ms() - 5),
        scan(3, kind="x"),
    ]
    rejected = pub.publish_many(items)
    assert [(i, e.reason) for i, e in rejected] == [(1, "not_a_map"), (3, "unknown_kind")]
    assert [k for _, k, _, _ in producer.sent] == [b"NT-0", b"NT-2"]
    assert pub.flush() == 2


def test_flush_raises_when_some_scans_failed_and_callbacks_tell_which() -> None:
    seen: list[tuple[str, bool]] = []
    producer = FakeProducer(fail_keys=frozenset({b"NT-2"}))
    pub = ScanPublisher(
        KAFKA,
        gateway_id="kiosk-1",
        producer=producer,
        on_delivery=lambda ev, err: seen.append((ev.event_id, err is None)),
    )
    pub.publish_many([scan(i) for i in range(4)])
    with pytest.raises(PublishError) as info:
        pub.flush()
    assert info.value.failed == 1
    assert isinstance(info.value.first_error, NotLeaderForPartitionError)
    assert sorted(seen) == [("e0", True), ("e1", True), ("e2", False), ("e3", True)]
    # the next flush only speaks for what was published after the last one
    pub.publish(scan(5))
    assert pub.flush() == 1


def test_flush_timeout_raises_with_unacknowledged_count() -> None:
    producer = FakeProducer(flush_error=KafkaTimeoutError("Timeout waiting for future"))
    pub = ScanPublisher(KAFKA, gateway_id="kiosk-1", producer=producer)
    pub.publish_many([scan(i) for i in range(3)])
    with pytest.raises(PublishError) as info:
        pub.flush(timeout=0.1)
    assert info.value.failed == 3
    assert isinstance(info.value.__cause__, KafkaTimeoutError)


def test_context_manager_flushes_and_closes() -> None:
    producer = FakeProducer()
    with ScanPublisher(KAFKA, gateway_id="kiosk-1", producer=producer) as pub:
        pub.publish(scan(1))
    assert producer.closed
    assert producer.sent[0][3].succeeded()


def test_gateway_id_is_required() -> None:
    with pytest.raises(ValueError, match="gateway_id"):
        ScanPublisher(KAFKA, gateway_id="", producer=FakeProducer())
