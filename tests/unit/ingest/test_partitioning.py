"""Our partition choice is Kafka's: kafka-python's DefaultPartitioner (murmur2), which
the premises registry import also uses, so scans and their premises co-partition."""

from __future__ import annotations

import random

from kafka.partitioner.default import DefaultPartitioner

from ingest.partitioning import KeyPartitioner, partition_for

KEYS = [
    "NT-00001",
    "HN-BD-0001",
    "",
    "a",
    "Chợ Phan Rang",
    "Trường THPT Chu Văn An",
    "x" * 64,
    *(f"NT-{random.Random(7).randrange(10**6):06d}-{i}" for i in range(500)),
]


class _Cluster:
    def __init__(self, partitions: set[int]) -> None:
        self._partitions = partitions

    def topics(self) -> set[str]:
        return {"scans.raw"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


def kafka_python_choice(key: bytes, partitions: set[int]) -> int:
    chosen: int = DefaultPartitioner().partition(
        "scans.raw", None, key, None, None, _Cluster(partitions)
    )
    return chosen


def test_partition_for_matches_kafka_python() -> None:
    for count in (1, 3, 4, 12, 64):
        parts = set(range(count))
        for key in KEYS:
            raw = key.encode()
            assert partition_for(raw, sorted(parts)) == kafka_python_choice(raw, parts), (
                key,
                count,
            )


def test_known_java_values() -> None:
    # Utils.murmur2 & 0x7fffffff % n, as the Java client computes it
    assert partition_for(b"21", list(range(4))) == kafka_python_choice(b"21", set(range(4)))
    assert partition_for(b"foobar", list(range(1000))) == kafka_python_choice(
        b"foobar", set(range(1000))
    )


def test_key_partitioner_caches_and_follows_partition_count() -> None:
    keyer = KeyPartitioner(range(4), max_cached=3)
    for key in KEYS:
        raw, partition = keyer(key)
        assert raw == key.encode()
        assert partition == kafka_python_choice(raw, set(range(4)))
    keyer.use([0, 1, 2, 3, 4, 5, 6, 7])
    for key in KEYS[:20]:
        assert keyer(key)[1] == kafka_python_choice(key.encode(), set(range(8)))
