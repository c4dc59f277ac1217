"""A real fake of the `Publisher` seam, shipped so that code written against the seam
can be tested without Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ingest.deadletter import DeadLetter
from ingest.gateway.base import PublishUnavailable
from ingest.wire import AnyScan, encode_scan


class FakePublisher:
    """Keeps what it is given, and in `records` the (key, value) each scan would be on the
    raw topic. `fail` makes every publish raise `PublishUnavailable`; `hold` (an Event)
    makes publish wait until it is set, to test requests in flight."""

    def __init__(self, *, fail: str | None = None, is_ready: bool = True) -> None:
        self.scans: list[AnyScan] = []
        self.records: list[tuple[bytes, bytes]] = []
        self.dead_letters: list[DeadLetter] = []
        self.calls = 0
        self.ready_calls = 0
        self.fail = fail
        self.is_ready = is_ready
        self.hold: asyncio.Event | None = None
        self.started = False
        self.closed = False

    async def start(self) -> None:
        self.started = True

    async def publish(self, scans: Sequence[AnyScan], dead_letters: Sequence[DeadLetter]) -> None:
        self.calls += 1
        if self.closed:
            raise PublishUnavailable("shutting down")
        if self.hold is not None:
            await self.hold.wait()
        if self.fail is not None:
            raise PublishUnavailable(self.fail, retry_after=3)
        self.scans.extend(scans)
        self.records.extend((s.premises_id.encode(), encode_scan(s)) for s in scans)
        self.dead_letters.extend(dead_letters)

    async def ready(self) -> bool:
        self.ready_calls += 1
        return self.is_ready and not self.closed

    async def close(self) -> None:
        self.closed = True
