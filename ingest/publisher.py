"""Publish scans straight to Kafka from Python (for gateways that skip the HTTP gateway).

Same contract as the HTTP gateway: every scan is validated with `parse_scan`, stamped with
this publisher's `gateway_id` and the time it was received, and sent to `scans.raw` keyed
by `premises_id` (Kafka's default murmur2 partitioning, like every other producer of the
project), acks=all, idempotent, batched with linger and compressed.

    from ingest.kafka_settings import KafkaSettings
    from ingest.publisher import ScanPublisher

    with ScanPublisher(KafkaSettings(bootstrap="kafka:9092"), gateway_id="kiosk-17") as pub:
        pub.publish({"event_id": "e-1", "person_id": "p-9", "premises_id": "NT-0042",
                     "scanned_at": "2021-11-02T08:15:00+07:00"})
        pub.flush()  # raises PublishError if Kafka did not acknowledge every scan

`publish` raises `ScanRejected` for an invalid scan (nothing is sent for it), and
`PublishError` when the producer cannot take it (no broker within `max_block_ms`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import msgpack
from kafka import KafkaProducer
from kafka.errors import KafkaError

from ingest.contract import DEFAULT_MAX_SKEW_MS, ScanEvent, ScanRejected, now_ms, parse_scan
from ingest.errors import TransientError
from ingest.kafka_settings import KafkaSettings

DeliveryCallback = Callable[[ScanEvent, BaseException | None], None]


class PublishError(TransientError):
    """Some scans were not acknowledged by Kafka. Transient as a rule (broker down, timeout):
    publish them again; duplicates are removed downstream by event_id."""

    def __init__(self, failed: int, first_error: BaseException | None) -> None:
        self.failed = failed
        self.first_error = first_error
        cause = f": {type(first_error).__name__}: {first_error}" if first_error else ""
        super().__init__(f"{failed} scan(s) not acknowledged by Kafka{cause}")


class ScanPublisher:
    """A kafka-python producer for scans. Not for use from several threads at once;
    delivery callbacks run on the producer's I/O thread."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        gateway_id: str,
        linger_ms: int = 20,
        batch_bytes: int = 256 * 1024,
        compression: Literal["gzip", "lz4", "zstd", "snappy"] | None = "zstd",
        max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
        on_delivery: DeliveryCallback | None = None,
        producer: Any = None,
        **producer_config: Any,
    ) -> None:
        """`producer` replaces the KafkaProducer (tests); `producer_config` goes to it."""
        if not gateway_id:
            raise ValueError("gateway_id is required: it names the source of every scan")
        self.topic = kafka.raw
        self.gateway_id = gateway_id
        self.max_skew_ms = max_skew_ms
        self._on_delivery = on_delivery
        self._packer = msgpack.Packer(use_bin_type=True)
        self._lock = threading.Lock()
        self._sent = 0
        self._acked = 0
        self._failed = 0
        self._first_error: BaseException | None = None
        self._mark = (0, 0)  # (sent, acked) at the last flush
        self._producer = producer or KafkaProducer(
            **kafka.kafka_python_config(),
            client_id=f"scantrace-publisher-{gateway_id}",
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            batch_size=batch_bytes,
            compression_type=compression,
            **producer_config,
        )

    def __enter__(self) -> ScanPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def counts(self) -> dict[str, int]:
        """Scans sent, acknowledged and failed since this publisher was made."""
        with self._lock:
            return {"sent": self._sent, "acked": self._acked, "failed": self._failed}

    def validate(
        self, scan: Mapping[str, Any] | ScanEvent, received_at: int | None = None
    ) -> ScanEvent:
        """The scan as it will be published, or `ScanRejected`."""
        obj = scan.to_wire() if isinstance(scan, ScanEvent) else scan
        at = received_at if received_at is not None else now_ms()
        return parse_scan(
            obj, now=at, max_skew_ms=self.max_skew_ms, gateway_id=self.gateway_id, received_at=at
        )

    def publish(self, scan: Mapping[str, Any] | ScanEvent) -> ScanEvent:
        """Validate and hand one scan to the producer (asynchronous; see `flush`).
        Raises `ScanRejected` for an invalid scan."""
        event = self.validate(scan)
        self._send(event)
        return event

    def publish_many(
        self, scans: Iterable[Mapping[str, Any] | ScanEvent]
    ) -> list[tuple[int, ScanRejected]]:
        """Publish every valid scan; returns the rejected ones as (index, error)."""
        received_at = now_ms()
        rejected: list[tuple[int, ScanRejected]] = []
        for index, scan in enumerate(scans):
            try:
                event = self.validate(scan, received_at)
            except ScanRejected as exc:
                rejected.append((index, exc))
                continue
            self._send(event)
        return rejected

    def _send(self, event: ScanEvent) -> None:
        try:
            future = self._producer.send(
                self.topic,
                key=event.premises_id.encode(),
                value=self._packer.pack(event.to_wire()),
            )
        except KafkaError as exc:  # no metadata within max_block_ms, buffer full, ...
            raise PublishError(1, exc) from exc
        with self._lock:
            self._sent += 1
        future.add_callback(self._delivered, event)
        future.add_errback(self._not_delivered, event)

    def _delivered(self, event: ScanEvent, _metadata: object) -> None:
        with self._lock:
            self._acked += 1
        if self._on_delivery is not None:
            self._on_delivery(event, None)

    def _not_delivered(self, event: ScanEvent, error: BaseException) -> None:
        with self._lock:
            self._failed += 1
            if self._first_error is None:
                self._first_error = error
        if self._on_delivery is not None:
            self._on_delivery(event, error)

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every scan published so far is acknowledged; returns how many were
        acknowledged since the last flush. Raises `PublishError` if any was not (failed,
        or still unacknowledged when `timeout` seconds ran out)."""
        error: BaseException | None = None
        try:
            self._producer.flush(timeout=timeout)
        except Exception as exc:  # kafka-python raises KafkaTimeoutError; keep it as the cause
            error = exc
        with self._lock:
            sent, acked = self._sent, self._acked
            first_error, self._first_error = self._first_error, None
            mark_sent, mark_acked = self._mark
            self._mark = (sent, acked)
        new_acked = acked - mark_acked
        not_acked = (sent - mark_sent) - new_acked
        if error is not None or not_acked:
            raise PublishError(not_acked, first_error or error) from error
        return new_acked

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush and close. Raises `PublishError` like `flush` (the producer is closed anyway)."""
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout=timeout)
