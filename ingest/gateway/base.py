"""The seam between the HTTP app and Kafka: a `Publisher`. The app never imports a Kafka
client; `kafka_publish.KafkaBatchPublisher` is the real one, `testing.FakePublisher` the
fake for tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ingest.deadletter import DeadLetter
from ingest.errors import ServiceUnavailable
from ingest.wire import AnyScan


class PublishUnavailable(ServiceUnavailable):
    """Transient: Kafka is unreachable, too slow, or the buffer is full. Nothing of the
    request may be claimed as accepted; the caller retries after `retry_after` seconds
    (scans already written are deduplicated downstream by event_id)."""

    def __init__(self, detail: str, retry_after: float = 2.0) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class Publisher(Protocol):
    async def start(self) -> None:
        """Begin connecting; returns without waiting for the broker."""

    async def publish(self, scans: Sequence[AnyScan], dead_letters: Sequence[DeadLetter]) -> None:
        """Return once Kafka acknowledged every scan (to the raw topic, keyed by
        premises_id) and every dead letter (to the dead-letter topic); otherwise raise
        `PublishUnavailable`."""

    async def ready(self) -> bool:
        """Whether the broker answers now."""

    async def close(self) -> None:
        """Refuse new work, deliver what was accepted, disconnect."""
