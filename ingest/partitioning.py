"""Which partition a key goes to: Kafka's default rule (murmur2 of the key bytes).

Every producer of `scans.raw` and `premises` must agree on it: the worker joins the two
topics partition by partition, so a premises and its scans have to land on the same
partition number. The Java client, kafka-python and aiokafka all use this rule; the
gateway computes it itself because it hands whole batches to one partition at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from aiokafka.partitioner import murmur2

MAX_CACHED_KEYS: Final = 200_000


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition Kafka's DefaultPartitioner picks for `key` among `partitions`
    (all of the topic's partition ids, sorted)."""
    idx: int = murmur2(key) & 0x7FFFFFFF
    return partitions[idx % len(partitions)]


class KeyPartitioner:
    """`partition_for` with a bounded cache: premises ids repeat all day long, and murmur2
    in pure Python costs a few microseconds a key. Returns the key's bytes too.

    `use(partitions)` (cheap when unchanged) before a batch of calls; a new partition
    count empties the cache.
    """

    __slots__ = ("_cache", "_max", "_partitions")

    def __init__(self, partitions: Iterable[int] = (0,), max_cached: int = MAX_CACHED_KEYS) -> None:
        self._cache: dict[str, tuple[bytes, int]] = {}
        self._max = max_cached
        self._partitions: tuple[int, ...] = tuple(sorted(partitions))

    @property
    def partitions(self) -> tuple[int, ...]:
        return self._partitions

    @property
    def cached(self) -> Mapping[str, tuple[bytes, int]]:
        """The keys seen lately, to look up without a Python call per key: `cached.get(k)
        or partitioner(k)` (the same dict all along, emptied now and then)."""
        return self._cache

    def use(self, partitions: Iterable[int]) -> None:
        ordered = tuple(sorted(partitions))
        if ordered != self._partitions:
            if not ordered:
                raise ValueError("a topic has at least one partition")
            self._partitions = ordered
            self._cache.clear()

    def __call__(self, key: str) -> tuple[bytes, int]:
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= self._max:
                self._cache.clear()  # cheaper than LRU bookkeeping; refills from live keys
            raw = key.encode()
            hit = self._cache[key] = (raw, partition_for(raw, self._partitions))
        return hit
