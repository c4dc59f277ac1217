"""Kafka records without aiokafka's per-record `ConsumerRecord`.

aiokafka parses record batches in C, then wraps every record in a Python `ConsumerRecord`
(eleven fields, sizes, deserializers): the single largest cost of the sink's main thread
(about 15 % of its samples in a py-spy profile of `python -m bench sink`) and about 8 % of
the worker's (`python -m bench worker`). Both need only each record's `offset` and `value`
(and `key`), which the C record already carries; the topic and partition come with the
batch (`getmany`'s keys, the worker's bulk path).

Two ways to opt in, both leaving every other consumer's records as they were: a consumer
passes `key_deserializer=LEAN` (the sink), or `install(topics)` names the topics whose
records are lean in every consumer of the process (the worker, whose consumer Faust
builds). aiokafka is pinned (<0.15) because this overrides one internal method
(`PartitionRecords._consumer_record`); tests/unit/ingest/test_lean_records.py fails if its
signature moves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka.consumer import fetcher

# Topics whose records are lean in every consumer of this process (`install`).
LEAN_TOPICS: set[str] = set()


def LEAN(key: bytes | None) -> bytes | None:  # a marker, named like a constant
    """The marker key deserializer (keys are returned as they are)."""
    return key


class _LeanPartitionRecords(fetcher.PartitionRecords):  # type: ignore[misc]  # untyped
    def _consumer_record(self, tp: Any, record: Any) -> Any:
        if self._key_deserializer is LEAN or tp.topic in LEAN_TOPICS:
            return record  # the C record: .offset, .value, .key, .timestamp, .headers
        return super()._consumer_record(tp, record)


def install(topics: Iterable[str] = ()) -> None:
    """Make aiokafka's fetcher build `_LeanPartitionRecords` (idempotent, process-wide),
    and make `topics` lean in every consumer; consumers without the marker and other
    topics are unaffected."""
    fetcher.PartitionRecords = _LeanPartitionRecords
    LEAN_TOPICS.update(topics)
