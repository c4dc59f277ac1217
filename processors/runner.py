"""One partition's work for the worker: the core over its state, guarded, into messages.

`BatchRunner` is the part of the Faust app that does not know Faust: given a partition, its
records (of `scans.raw` or of the premises topic) and the time, it runs the core over that
partition's state (`PartitionView`s of the four tables), and fills an `Outbox` with what
must go to Kafka: frames of enriched scans (`processors.records`) and dead letters (key
event_id, when known) on the *same partition* as the input, and the changelog records of
the state changes. It updates the metrics. The app sends the outbox and commits; tests
drive it with dicts.

The per-event guard: the core does not raise for bad input, but a bug might. When a call
raises, its state changes are rolled back and the records are run again one by one; the
record that raises again is dead-lettered with reason `exception` and a traceback summary,
the others go through normally. No exception leaves `scans`, `premises` or `expire`.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from ingest.deadletter import DeadLetter, encode_dead_letter
from ingest.kafka_settings import KafkaSettings
from ingest.premises import Premises, decode_premises
from ingest.wire import split_raw_frame
from processors.core import EXCEPTION, STAGE, Counts, ProcessorCore, Result
from processors.horizon import HorizonMap
from processors.metrics import WorkerMetrics
from processors.records import EnrichedRow, RawRecord, RawRecordLike, encode_frames
from processors.settings import ProcessorSettings
from processors.state import LAST_KEPT_WIDTH, SEEN_WIDTH, ProcessorState
from processors.tables import (
    ChangelogRecord,
    PartitionView,
    changelog_records,
    horizon_records,
)

log = logging.getLogger("scantrace.worker")

INVALID_PREMISES: Final = "invalid_premises"
TABLES: Final = ("seen", "last_kept", "parked", "premises")
# Tables whose changelog carries one record per batch (`processors.tables.HorizonTable`).
HORIZON: Final = frozenset({"seen", "last_kept"})
HORIZON_WIDTHS: Final = {"seen": SEEN_WIDTH, "last_kept": LAST_KEPT_WIDTH}
# Indexes into an EnrichedRow (processors.records.ENRICHED_FIELDS).
_SCANNED_AT, _RECEIVED_AT, _DISTRICT = 3, 6, 10

Message = tuple[bytes | None, bytes | None]


class PartitionStore(Protocol):
    """A table's storage as the runner needs it (`PartitionedStore`, or a dict in tests):
    a dict per partition, a `HorizonMap` per partition for `seen` and `last_kept`."""

    parts: dict[int, Any]

    def partition(self, partition: int) -> Any: ...
    def entries(self) -> int: ...


class KeyedRecordLike(RawRecordLike, Protocol):
    """A premises topic record: the key matters (a tombstone carries only the key)."""

    @property
    def key(self) -> bytes | None: ...


class TableRef(Protocol):
    """A state table: its storage and the changelog topic its changes go to."""

    @property
    def name(self) -> str: ...
    @property
    def store(self) -> PartitionStore: ...
    @property
    def changelog_topic(self) -> str: ...


@dataclass(frozen=True, slots=True)
class StaticTableRef:
    """A `TableRef` over a store at hand (tests, benchmarks)."""

    name: str
    store: PartitionStore
    changelog_topic: str


@dataclass(slots=True)
class Outbox:
    """Messages to send, by (topic, partition): outputs first, then state changes.

    At least once: the changelog goes out only after Kafka has the outputs, so state that
    says "done" never survives a crash without the output it stands for.
    """

    outputs: dict[tuple[str, int], list[Message]] = field(default_factory=dict)
    changelog: dict[tuple[str, int], list[Message]] = field(default_factory=dict)

    def output(self, topic: str, partition: int, messages: list[Message]) -> None:
        if messages:
            self.outputs.setdefault((topic, partition), []).extend(messages)

    def state(self, topic: str, partition: int, records: list[ChangelogRecord]) -> None:
        if records:
            self.changelog.setdefault((topic, partition), []).extend(records)

    def partitions(self) -> set[int]:
        return {p for _, p in self.outputs} | {p for _, p in self.changelog}

    def __len__(self) -> int:
        return sum(map(len, self.outputs.values())) + sum(map(len, self.changelog.values()))


def summarize(exc: BaseException, limit: int = 1000) -> str:
    """`Type: message` and the innermost frames, for a dead letter's detail."""
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    where = " <- ".join(
        f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})" for f in frames[::-1]
    )
    text = f"{type(exc).__name__}: {exc}"
    if where:
        text += f" at {where}"
    return text[:limit]


def check_premises(p: Premises, key: bytes | None) -> None:
    """The types enrichment relies on; the key must be the id (it chose the partition)."""
    for name in ("premises_id", "name", "category", "district", "ward", "agency"):
        if not isinstance(getattr(p, name), str):
            raise ValueError(f"premises field {name} is not a string")
    if not p.premises_id:
        raise ValueError("premises_id is empty")
    if type(p.version) is not int:
        raise ValueError("premises version is not an int")
    if key is not None and key != p.premises_id.encode():
        raise ValueError(f"record key {key[:80]!r} is not the premises_id {p.premises_id!r}")


class BatchRunner:
    def __init__(
        self,
        core_settings: ProcessorSettings,
        kafka: KafkaSettings,
        tables: Mapping[str, TableRef],
        metrics: WorkerMetrics | None = None,
        *,
        max_record_bytes: int = 1_000_000,
        core_factory: Callable[[ProcessorSettings, ProcessorState], ProcessorCore] = ProcessorCore,
    ) -> None:
        missing = set(TABLES) - set(tables)
        if missing:
            raise ValueError(f"missing tables: {sorted(missing)}")
        self.core_settings = core_settings
        self.kafka = kafka
        self.tables = tables
        self.metrics = metrics
        self.max_record_bytes = max_record_bytes
        self.core_factory = core_factory
        # Running totals since start (the metrics carry the same, for tests without them).
        self.counts = Counts()
        self.premises_results: dict[str, int] = {}

    # -- state ----------------------------------------------------------------------------

    def _views(self, partition: int) -> dict[str, PartitionView | HorizonMap]:
        """The partition's state, each part able to commit and roll back."""
        views: dict[str, PartitionView | HorizonMap] = {}
        for name, table in self.tables.items():
            part = table.store.partition(partition)
            views[name] = part if name in HORIZON else PartitionView(part)
        return views

    def _core(self, views: dict[str, Any]) -> ProcessorCore:
        state = ProcessorState(
            seen=views["seen"],
            last_kept=views["last_kept"],
            parked=views["parked"],
            premises=views["premises"],
        )
        return self.core_factory(self.core_settings, state)

    def _save(
        self, views: dict[str, PartitionView | HorizonMap], partition: int, out: Outbox
    ) -> None:
        for name, view in views.items():
            if isinstance(view, HorizonMap):
                keys, values = view.commit()
                if len(keys):
                    records = horizon_records(keys, values, self.max_record_bytes)
                    out.state(self.tables[name].changelog_topic, partition, records)
                continue
            changes = view.commit()
            if changes:
                records = changelog_records(changes)
                fitting = [r for r in records if r[1] is None or len(r[1]) <= self.max_record_bytes]
                if len(fitting) != len(records):
                    # A value Kafka would refuse (a premises with thousands of parked scans):
                    # kept in memory, not in the changelog, so a restart forgets it.
                    for key, value in records:
                        if value is not None and len(value) > self.max_record_bytes:
                            # no key at ERROR: a state key may hold a person id
                            log.error(
                                "a state %s record is %d bytes, above max_record_bytes: "
                                "not written to the changelog",
                                name,
                                len(value),
                            )
                            log.debug("the oversized %s key: %r", name, key[:80])
                out.state(self.tables[name].changelog_topic, partition, fitting)

    @staticmethod
    def _rollback(views: dict[str, PartitionView | HorizonMap]) -> None:
        for view in views.values():
            view.rollback()

    def parked_now(self) -> int:
        """Scans parked in this worker's partitions (a pass over the parked table)."""
        parts = self.tables["parked"].store.parts
        return sum(len(entries) for part in parts.values() for entries in part.values())

    def table_entries(self) -> dict[str, int]:
        return {name: t.store.entries() for name, t in self.tables.items()}

    # -- outputs --------------------------------------------------------------------------

    def _encode_rows(self, rows: Sequence[EnrichedRow]) -> list[Message]:
        """The rows as frames (`processors.records`), without a key: a frame goes to its
        input partition, which is every one of its scans' premises partition."""
        return [(None, frame) for frame in encode_frames(rows, self.max_record_bytes)]

    def _emit(self, result: Result, partition: int, now_ms: int, out: Outbox) -> None:
        rows = result.rows
        if rows:
            out.output(self.kafka.enriched, partition, self._encode_rows(rows))
        if result.dead_letters:
            out.output(self.kafka.dlq, partition, [self._letter(dl) for dl in result.dead_letters])
        self._count(result.counts, rows, now_ms)

    def _letter(self, dl: DeadLetter) -> Message:
        value = encode_dead_letter(dl)
        if len(value) > self.max_record_bytes:
            keep = max(0, len(dl.raw) - (len(value) - self.max_record_bytes) - 1024)
            dl = DeadLetter(
                stage=dl.stage,
                reason=dl.reason,
                raw=dl.raw[:keep],
                detail=f"{dl.detail} [raw cut from {len(dl.raw)} to {keep} bytes]"[:2000],
                topic=dl.topic,
                partition=dl.partition,
                offset=dl.offset,
                at=dl.at,
                event_id=dl.event_id,
            )
            value = encode_dead_letter(dl)
        return (dl.event_id.encode() if dl.event_id else None, value)

    def _count(self, counts: Counts, rows: Sequence[Any], now_ms: int) -> None:
        self.counts.add(counts)
        m = self.metrics
        if m is None:
            return
        if counts.received:
            m.events_in.inc(counts.received)
        if counts.duplicates:
            m.duplicates.inc(counts.duplicates)
        if counts.repeats:
            m.repeats.inc(counts.repeats)
        if counts.released:
            m.released.inc(counts.released)
        if counts.parked:
            m.parked.inc(counts.parked)
        for reason, n in counts.dead_lettered.items():
            m.dead_letters.labels(reason).inc(n)
        if rows:
            districts: dict[str, int] = {}
            for row in rows:
                d = row[_DISTRICT]
                districts[d] = districts.get(d, 0) + 1
            for district, n in districts.items():
                m.scans_enriched.labels(district).inc(n)
            m.event_time_lag.observe_since([row[_SCANNED_AT] for row in rows], now_ms)
            arrivals = [row[_RECEIVED_AT] for row in rows if row[_RECEIVED_AT] is not None]
            m.arrival_lag.observe_since(arrivals, now_ms)

    def _premises_result(self, result: str) -> None:
        self.premises_results[result] = self.premises_results.get(result, 0) + 1
        if self.metrics is not None:
            self.metrics.premises_records.labels(result).inc()

    # -- the three entry points -----------------------------------------------------------

    def scans(
        self, partition: int, records: Sequence[RawRecordLike], now_ms: int, out: Outbox
    ) -> None:
        """Records of `scans.raw` from one partition, in offset order (they need not carry
        their topic and partition: lean records, `ingest.lean_records`)."""
        if not records:
            return
        views = self._views(partition)
        core = self._core(views)
        source = (self.kafka.raw, partition)
        try:
            result = core.process(records, now_ms, source)
        except Exception:
            self._rollback(views)
            log.exception(
                "the core raised on a batch of %d records of partition %d: retrying them "
                "one by one",
                len(records),
                partition,
            )
            self._scans_one_by_one(core, views, source, records, now_ms, out)
            return
        self._emit(result, partition, now_ms, out)
        self._save(views, partition, out)

    def _scans_one_by_one(
        self,
        core: ProcessorCore,
        views: dict[str, PartitionView | HorizonMap],
        source: tuple[str, int],
        records: Sequence[RawRecordLike],
        now_ms: int,
        out: Outbox,
    ) -> None:
        partition = source[1]
        for rec in self._scan_records(records, source):
            try:
                result = core.process([rec], now_ms, source)
            except Exception as exc:
                self._rollback(views)
                dl = self._record_letter(rec, EXCEPTION, exc, now_ms, source)
                result = Result([], [dl], Counts(received=1, dead_lettered={EXCEPTION: 1}))
            self._emit(result, partition, now_ms, out)
            self._save(views, partition, out)

    @staticmethod
    def _scan_records(
        records: Sequence[RawRecordLike], source: tuple[str, int]
    ) -> list[RawRecordLike]:
        """The records with each frame (`ingest.wire.split_raw_frame`) cut into records of
        one scan (the frame's offset), so that one bad scan fails alone."""
        out: list[RawRecordLike] = []
        for rec in records:
            elements = split_raw_frame(rec.value) if rec.value is not None else None
            if elements is None:
                out.append(rec)
            else:
                out.extend(RawRecord(e, source[0], source[1], rec.offset) for e in elements)
        return out

    def premises(
        self, partition: int, records: Sequence[KeyedRecordLike], now_ms: int, out: Outbox
    ) -> None:
        """Records of the premises topic from one partition: upserts and tombstones."""
        views = self._views(partition)
        core = self._core(views)
        for rec in records:
            premises: Premises | None = None
            if rec.value is not None:
                try:
                    premises = decode_premises(rec.value)
                    check_premises(premises, rec.key)
                except Exception as exc:  # msgpack, dataclass and type errors alike
                    self._premises_result(INVALID_PREMISES)
                    out.output(
                        self.kafka.dlq,
                        partition,
                        [self._letter(self._record_letter(rec, INVALID_PREMISES, exc, now_ms))],
                    )
                    continue
            elif not rec.key:
                self._premises_result(INVALID_PREMISES)
                continue  # a tombstone without a key names nothing
            try:
                if premises is None:
                    core.forget_premises((rec.key or b"").decode("utf-8", "replace"))
                    result = None
                else:
                    result = core.upsert_premises(premises, now_ms)
            except Exception as exc:
                self._rollback(views)
                log.exception("the core raised on premises record %s:%d", rec.topic, rec.offset)
                self._premises_result(EXCEPTION)
                out.output(
                    self.kafka.dlq,
                    partition,
                    [self._letter(self._record_letter(rec, EXCEPTION, exc, now_ms))],
                )
                continue
            self._premises_result("deleted" if premises is None else "upserted")
            if result is not None:
                self._emit(result, partition, now_ms, out)
            self._save(views, partition, out)

    @staticmethod
    def _record_letter(
        rec: RawRecordLike,
        reason: str,
        exc: BaseException,
        now_ms: int,
        source: tuple[str, int] | None = None,
    ) -> DeadLetter:
        topic, partition = source if source is not None else (rec.topic, rec.partition)
        return DeadLetter(
            stage=STAGE,
            reason=reason,
            raw=rec.value if rec.value is not None else b"",
            detail=summarize(exc),
            topic=topic,
            partition=partition,
            offset=rec.offset,
            at=now_ms,
        )

    def expire(self, partition: int, now_ms: int, out: Outbox) -> None:
        """The periodic pass over one partition: parked scans past their timeout are
        dead-lettered, those whose premises is known released, old dedup memory dropped."""
        views = self._views(partition)
        core = self._core(views)
        try:
            result = core.expire(now_ms)
        except Exception:
            self._rollback(views)
            log.exception("the core raised in expire on partition %d", partition)
            return
        self._emit(result, partition, now_ms, out)
        self._save(views, partition, out)
