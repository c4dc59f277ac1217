"""ingest.batch_send: records in order, per partition, in as few builders as fit."""

from __future__ import annotations

import asyncio
from typing import Any

from ingest.batch_send import send_in_batches


class Builder:
    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[tuple[bytes | None, bytes | None]] = []

    def append(self, *, timestamp: None, key: bytes | None, value: bytes | None) -> object:
        if self.records and len(self.records) >= self.room:
            return None
        self.records.append((key, value))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class Producer:
    """aiokafka's producer as `send_in_batches` uses it; a builder holds `room` records."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []

    def create_batch(self) -> Builder:
        return Builder(self.room)

    async def send_batch(self, builder: Builder, topic: str, *, partition: int) -> Any:
        self.sent.append((topic, partition, builder.records))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_records_go_in_order_in_full_builders_per_partition() -> None:
    producer = Producer(room=2)
    messages = {
        ("t", 0): [(b"k", b"1"), (b"k", b"2"), (None, b"3")],
        ("t", 1): [(b"j", b"4")],
        ("u", 0): [],
    }
    futures = asyncio.run(send_in_batches(producer, messages))  # type: ignore[arg-type]
    assert producer.sent == [
        ("t", 0, [(b"k", b"1"), (b"k", b"2")]),
        ("t", 0, [(None, b"3")]),
        ("t", 1, [(b"j", b"4")]),
    ]
    assert len(futures) == 3
