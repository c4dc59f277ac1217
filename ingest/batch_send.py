"""Many Kafka records through aiokafka's batch builder.

`AIOKafkaProducer.send` costs far more per record than appending to a
`BatchBuilder` and handing the builder to `send_batch`, so whoever writes thousands of
records at once (the worker's outputs, the tests' and benchmarks' publishers) fills
builders per partition instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer

__all__ = ["send_in_batches"]


async def send_in_batches(
    producer: AIOKafkaProducer,
    messages: Mapping[tuple[str, int], Iterable[tuple[bytes | None, bytes | None]]],
) -> list[asyncio.Future[Any]]:
    """Queue every (key, value) of `messages` on its (topic, partition), in order, in as
    few record batches as the producer's `max_batch_size` allows; returns the delivery
    futures (one per record batch). A record too large for an empty batch still goes in
    one of its own (the builder always takes a first record)."""
    futures: list[asyncio.Future[Any]] = []
    for (topic, partition), records in messages.items():
        builder = producer.create_batch()
        for key, value in records:
            if builder.append(timestamp=None, key=key, value=value) is None:
                futures.append(await producer.send_batch(builder, topic, partition=partition))
                builder = producer.create_batch()
                builder.append(timestamp=None, key=key, value=value)
        if builder.record_count():
            futures.append(await producer.send_batch(builder, topic, partition=partition))
    return futures
