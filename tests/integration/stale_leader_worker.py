"""`scantrace worker` whose Kafka consumer does not see one topic while a file exists.

The fault it injects: on a cluster of several brokers, a topic created a moment ago can be
missing from the metadata that the broker answering a consumer sends back; aiokafka keeps
that metadata for minutes (`metadata_max_age_ms`). A worker that leads the group then
assigns without that topic. Here the worker's consumer drops TOPIC from every metadata
response it applies while PATH exists (the producer and the admin calls see it).

    python stale_leader_worker.py TOPIC PATH   (environment as for `scantrace worker`)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from aiokafka.cluster import ClusterMetadata
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from scantrace.cli import main

HIDDEN = sys.argv[1]
WHILE = Path(sys.argv[2])
_stale: set[int] = set()  # id() of the consumer's ClusterMetadata

_update = ClusterMetadata.update_metadata
_create = AIOKafkaConsumerThread._create_consumer


def update_metadata(self: ClusterMetadata, metadata: Any) -> None:
    if id(self) in _stale and WHILE.exists():
        metadata.topics = [t for t in metadata.topics if t[1] != HIDDEN]
    _update(self, metadata)


def create_consumer(self: AIOKafkaConsumerThread, loop: Any) -> Any:
    consumer = _create(self, loop=loop)
    _stale.add(id(consumer._client.cluster))
    return consumer


ClusterMetadata.update_metadata = update_metadata  # type: ignore[method-assign]
AIOKafkaConsumerThread._create_consumer = create_consumer  # type: ignore[method-assign]

if __name__ == "__main__":
    main(["worker"])
