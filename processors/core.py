"""The pure processors core: decode, validate, dedup, suppress repeats, enrich, park.

No I/O, no clock: the caller passes the records, the time and the state. The Faust app
calls `process` for each batch of `scans.raw` records, `upsert_premises` for each record of
the `premises` topic and `expire` every few seconds, and publishes what the `Result`s
carry (enriched scans to `scans.enriched`, dead letters to `scans.dlq`).

The pipeline for one record, in order:

1. Decode (msgpack) and validate with the ingest contract (`ingest.wire.fast_scan`, its
   C fast path, for the common case; `parse_scan` for everything else). Undecodable bytes
   and invalid events become dead letters (stage "worker") with the reason, the raw bytes
   and topic/partition/offset. A record may be a frame of scans (`ingest.wire`, what the
   HTTP gateway sends): each of its scans is taken in its place, a bad one dead-lettered
   alone with its own bytes and the frame's offset.
2. Exact dedup by event_id. The clock is the *arrival* time: `received_at` when the
   gateway stamped it, else the processing time `now_ms`. A scan is a duplicate when its
   event_id was first seen at most `dedup_horizon_ms` earlier; a duplicate does not extend
   the horizon. After the horizon the same event_id is new again and kept again (the
   ClickHouse store is idempotent by event_id, so this costs a row, never a double count).
   On a duplicate the first copy wins, whatever the second carries.
3. Premises lookup. A scan whose premises is not in the registry is *parked* (it has
   passed dedup, so a later copy of it is a duplicate, also after the horizon while it is
   still parked) and waits for the premises.
4. Repeat suppression: a scan whose `scanned_at` lies within `repeat_window_ms`, either
   side, of the scan last *kept* for the same person, premises and kind is a repeat (a
   double tap) and is dropped and counted. Only a kept scan updates the last-kept entry,
   so taps every 4 minutes with a 5 minute window go kept, repeat, kept, repeat... The
   last kept scan is the last in processing order, not the latest `scanned_at`: after a
   late upload the comparison is with the late scan. Check-ins and check-outs are never
   repeats of each other. The last-kept entry is forgotten `dedup_horizon_ms` (arrival
   time) after it was written.
5. Enrichment with the premises registry as it is *now*: a premises update mid-stream
   applies to every later scan, earlier ones keep what they were enriched with.

Parked scans. At most `max_parked_per_premises` wait for one premises (they are one
changelog record); the next ones are dead-lettered at once as `unknown_premises`, raw bytes
kept for a replay. When their premises arrives (`upsert_premises`, or an `expire` pass that
finds it in the registry), the parked scans go through steps 4-5 in their arrival order,
exactly as they would have had the premises been known when they arrived: repeat
suppression for parked scans happens at release time, against scans actually kept (so a
parked scan that ends in the dead-letter topic never suppresses another). A scan parked
more than `park_timeout_ms` (processing time since it was parked) is dead-lettered with
reason `unknown_premises`, by the next `expire` pass or, if its premises arrives first,
at release: the outcome never depends on when `expire` runs.

`expire` otherwise only reclaims memory: `seen` and `last_kept` entries whose arrival is
more than `dedup_horizon_ms` before `now_ms` are gone from then on (`processors.horizon`).
Lookups check the horizon themselves, so as long as no record arrives stamped earlier than
an already run pass's `now_ms` (`received_at` is stamped by the gateway moments before the
worker sees it), running `expire` changes no result. A replay of records carrying old
`received_at` stamps after an `expire` is kept again; the store's idempotency absorbs it.

Accounting, per call (`Result.counts`) and running (`ProcessorCore.counts`):
`received == enriched + duplicates + repeats + dead + parked`, where `parked` is the
number currently held (per call: its net change, negative when scans leave parking),
released parked scans count as enriched (and as `released`), expired parked scans as
dead-lettered (`unknown_premises`), parked scans found to be repeats at release as repeats.
The identity holds for one core as long as nothing changes its state behind its back (a
Faust rebalance moves parked scans between workers: sum over workers then).

Failure: `process` never raises for bad input, whatever the bytes. It can raise only if a
state backend does, in which case the batch must not be committed and the worker should
restart from its changelog (Faust's exactly-once guarantee keeps state and offsets
together); `seen` is written before the batch ends, so a retry would otherwise count the
batch as duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack
import numpy as np

from ingest.codec import unpack_msgpack
from ingest.contract import MAX_ID_LEN, ScanRejected, parse_scan
from ingest.deadletter import DeadLetter
from ingest.premises import Premises
from ingest.wire import AnyScan, fast_scan, split_raw_frame
from processors.horizon import hash_keys
from processors.records import (
    EnrichedRow,
    EnrichedScan,
    RawRecord,
    RawRecordLike,
    enriched_row,
)
from processors.settings import ProcessorSettings
from processors.state import (
    LK_ARRIVAL,
    LK_SCANNED_AT,
    NEVER,
    P_VERSION,
    PK_EVENT_ID,
    PK_PARKED_AT,
    ParkedScan,
    ProcessorState,
    premises_entry,
    repeat_key,
)

STAGE: Final = "worker"
UNKNOWN_PREMISES: Final = "unknown_premises"
# An exception the contract did not foresee, while decoding one record (a bug, not bad data).
EXCEPTION: Final = "exception"


@dataclass(slots=True)
class Counts:
    """Event accounting. Running totals on the core, deltas on each `Result`.

    `received`: raw records handed to `process`. `enriched`: scans out (released parked
    scans included). `duplicates`, `repeats`: dropped and counted. `parked`: currently held
    (a delta may be negative). `released`: parked scans that came out enriched (a subset of
    `enriched`). `dead_lettered`: by reason (contract reasons, `unknown_premises`,
    `exception`).
    """

    received: int = 0
    enriched: int = 0
    duplicates: int = 0
    repeats: int = 0
    parked: int = 0
    released: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)

    @property
    def dead(self) -> int:
        return sum(self.dead_lettered.values())

    def balanced(self) -> bool:
        """received == enriched + duplicates + repeats + dead-lettered + parked."""
        out = self.enriched + self.duplicates + self.repeats + self.dead + self.parked
        return self.received == out

    def add(self, other: Counts) -> None:
        self.received += other.received
        self.enriched += other.enriched
        self.duplicates += other.duplicates
        self.repeats += other.repeats
        self.parked += other.parked
        self.released += other.released
        for reason, n in other.dead_lettered.items():
            self.dead_lettered[reason] = self.dead_lettered.get(reason, 0) + n

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "enriched": self.enriched,
            "duplicates": self.duplicates,
            "repeats": self.repeats,
            "parked": self.parked,
            "released": self.released,
            "dead_lettered": dict(self.dead_lettered),
        }


@dataclass(frozen=True, slots=True)
class Result:
    """What one call produced: enriched rows, dead letters and the counts of this call."""

    rows: list[EnrichedRow]
    dead_letters: list[DeadLetter]
    counts: Counts

    @property
    def enriched(self) -> list[EnrichedScan]:
        """The enriched scans as objects (built on each access; the hot path uses `rows`)."""
        return [EnrichedScan.from_row(row) for row in self.rows]


def _event_id_of(value: bytes | None) -> str:
    """The event_id of a rejected record when it has a sane one, for the dead letter."""
    try:
        obj = msgpack.unpackb(value or b"", raw=False, strict_map_key=True, timestamp=0)
    except Exception:  # msgpack raises a family of unrelated types on bad input
        return ""
    event_id = obj.get("event_id") if isinstance(obj, dict) else None
    if isinstance(event_id, str) and 0 < len(event_id) <= MAX_ID_LEN and event_id.isprintable():
        return event_id
    return ""


@dataclass(frozen=True, slots=True)
class _Held:
    """A batch's dedup and repeat keys (hashed) and what the state held for them."""

    event_hashes: np.ndarray[Any, np.dtype[Any]]
    firsts: list[int]  # first arrival of each scan's event id (NEVER if not seen)
    keys: list[str]  # repeat keys (`repeat_key`)
    key_hashes: np.ndarray[Any, np.dtype[Any]]
    last_arrivals: list[int]  # of the scan last kept for each key (NEVER if none)
    last_scanned: list[int]


@dataclass(slots=True)
class _Done:
    """What the in-order pass over a batch produced and must write back."""

    rows: list[EnrichedRow] = field(default_factory=list)
    seen_at: dict[str, int] = field(default_factory=dict)  # event id -> first scan index
    kept_at: dict[str, int] = field(default_factory=dict)  # repeat key -> last kept index
    arrivals: list[int] = field(default_factory=list)  # per scan
    # premises_id -> (all its parked entries, their event ids); written back at the end
    parking: dict[str, tuple[list[list[Any]], set[str]]] = field(default_factory=dict)
    duplicates: int = 0
    repeats: int = 0
    parked: int = 0


class ProcessorCore:
    """The processors stage's logic over explicit state; see the module docstring.

    `state` defaults to plain dicts; `counts` are the running totals since construction.
    """

    def __init__(
        self, settings: ProcessorSettings | None = None, state: ProcessorState | None = None
    ) -> None:
        self.settings = settings if settings is not None else ProcessorSettings()
        self.state = state if state is not None else ProcessorState()
        self.counts = Counts()

    # -- scans ----------------------------------------------------------------------------

    def process(
        self,
        records: Iterable[RawRecordLike],
        now_ms: int,
        source: tuple[str, int] | None = None,
    ) -> Result:
        """Decode, validate, dedup, suppress repeats, enrich or park one batch of records.

        `source`: the (topic, partition) of every record, when the records do not carry
        them (the worker's lean Kafka records, `ingest.lean_records`: value and offset only).
        """
        # 1. decode and validate (a frame's scans in its place, `ingest.wire.split_raw_frame`)
        scans: list[AnyScan] = []
        recs: list[RawRecordLike] = []
        dead: list[DeadLetter] = []
        received = self._decode(records, now_ms, source, scans, recs, dead)
        # 2. what the state holds for the batch's event ids and repeat keys, in one go
        held = self._held(scans)
        # 3. in order: dedup, park, repeats, enrich
        done = self._in_order(scans, recs, held, now_ms, source, dead)
        # 4. the batch's writes, in one go
        self._write_batch(scans, held, done)

        reasons: dict[str, int] = {}
        for dl in dead:
            reasons[dl.reason] = reasons.get(dl.reason, 0) + 1
        counts = Counts(
            received=received,
            enriched=len(done.rows),
            duplicates=done.duplicates,
            repeats=done.repeats,
            parked=done.parked,
            dead_lettered=reasons,
        )
        self.counts.add(counts)
        return Result(done.rows, dead, counts)

    def _held(self, scans: list[AnyScan]) -> _Held:
        """The batch's keys, hashed, and what `seen` and `last_kept` hold for them."""
        event_hashes = hash_keys([s.event_id for s in scans])
        keys = [f"{s.person_id}\x1f{s.premises_id}\x1f{s.kind}" for s in scans]  # repeat_key()
        key_hashes = hash_keys(keys)
        held = self.state.last_kept.lookup(key_hashes, NEVER)
        return _Held(
            event_hashes=event_hashes,
            firsts=self.state.seen.lookup(event_hashes, NEVER)[:, 0].tolist(),
            keys=keys,
            key_hashes=key_hashes,
            last_arrivals=held[:, LK_ARRIVAL].tolist(),
            last_scanned=held[:, LK_SCANNED_AT].tolist(),
        )

    def _in_order(
        self,
        scans: list[AnyScan],
        recs: list[RawRecordLike],
        held: _Held,
        now_ms: int,
        source: tuple[str, int] | None,
        dead: list[DeadLetter],
    ) -> _Done:
        """Dedup, park, repeats and enrichment, scan after scan. What this batch writes is
        looked up in `done.seen_at` / `done.kept_at` (scan indexes) before the state's
        answers in `held`; the state itself is written afterwards (`_write_batch`)."""
        settings = self.settings
        horizon = settings.dedup_horizon_ms
        window = settings.repeat_window_ms
        premises_get = self.state.premises.get
        firsts, keys = held.firsts, held.keys
        last_arrivals, last_scanned = held.last_arrivals, held.last_scanned
        done = _Done()
        seen_at, kept_at, arrivals = done.seen_at, done.kept_at, done.arrivals
        seen_get = seen_at.get
        kept_get = kept_at.get
        add_arrival = arrivals.append
        append = done.rows.append
        duplicates = repeats = 0

        for i, scan in enumerate(scans):
            event_id = scan.event_id
            received_at = scan.received_at
            arrival = now_ms if received_at is None else received_at
            add_arrival(arrival)
            j = seen_get(event_id)
            first = firsts[i] if j is None else arrivals[j]
            if arrival - first <= horizon:
                duplicates += 1
                continue

            meta = premises_get(scan.premises_id)
            if meta is None:
                if not self._park(scan, recs[i], i, arrival, now_ms, source, done, dead):
                    duplicates += 1  # still parked from before the horizon
                continue
            seen_at[event_id] = i

            key = keys[i]
            j = kept_get(key)
            if j is None:
                last_arrival = last_arrivals[i]
                last_at = last_scanned[i]
            else:
                last_arrival = arrivals[j]
                last_at = scans[j].scanned_at
            if arrival - last_arrival <= horizon and -window <= scan.scanned_at - last_at <= window:
                repeats += 1
                continue
            kept_at[key] = i
            append(enriched_row(scan, meta, now_ms))
        done.duplicates = duplicates
        done.repeats = repeats
        return done

    def _park(
        self,
        scan: AnyScan,
        rec: RawRecordLike,
        i: int,
        arrival: int,
        now_ms: int,
        source: tuple[str, int] | None,
        done: _Done,
        dead: list[DeadLetter],
    ) -> bool:
        """Park scan `i` (its premises is unknown), or dead-letter it when its premises'
        parking is full. False when it is a duplicate of a scan parked before."""
        premises_id = scan.premises_id
        event_id = scan.event_id
        lot = done.parking.get(premises_id)
        if lot is None:
            entries = list(self.state.parked.get(premises_id, ()))
            lot = done.parking[premises_id] = (entries, {e[PK_EVENT_ID] for e in entries})
        if event_id in lot[1]:
            return False
        done.seen_at[event_id] = i
        max_parked = self.settings.max_parked_per_premises
        if len(lot[0]) >= max_parked:
            detail = (
                f"premises {premises_id} not in the registry and {max_parked} scans "
                "already parked for it (max_parked_per_premises)"
            )
            dead.append(self._reject(rec, UNKNOWN_PREMISES, detail, now_ms, source))
            return True
        lot[1].add(event_id)
        value = rec.value
        topic, partition = source if source is not None else (rec.topic, rec.partition)
        parked_scan = ParkedScan(
            raw=value if value is not None else b"",
            topic=topic,
            partition=partition,
            offset=rec.offset,
            parked_at=now_ms,
            arrival=arrival,
            event_id=event_id,
            person_id=scan.person_id,
            premises_id=premises_id,
            scanned_at=scan.scanned_at,
            kind=scan.kind,
            gateway_id=scan.gateway_id,
            received_at=scan.received_at,
        )
        lot[0].append(parked_scan.to_list())
        done.parked += 1
        return True

    def _write_batch(self, scans: list[AnyScan], held: _Held, done: _Done) -> None:
        """The batch's first sightings into `seen`, its kept scans into `last_kept`, its
        parking lots into `parked`."""
        seen_at, kept_at = done.seen_at, done.kept_at
        if seen_at:
            at = np.fromiter(seen_at.values(), dtype=np.intp, count=len(seen_at))
            times = np.array(done.arrivals, dtype=np.int64)
            self.state.seen.upsert(held.event_hashes[at], times[at, None])
        if kept_at:
            at = np.fromiter(kept_at.values(), dtype=np.intp, count=len(kept_at))
            kept = np.empty((len(at), 2), dtype=np.int64)
            kept[:, LK_ARRIVAL] = np.array(done.arrivals, dtype=np.int64)[at]
            kept[:, LK_SCANNED_AT] = [scans[j].scanned_at for j in kept_at.values()]
            self.state.last_kept.upsert(held.key_hashes[at], kept)
        parked_table = self.state.parked
        for premises_id, (entries, _) in done.parking.items():
            parked_table[premises_id] = entries

    # -- premises -------------------------------------------------------------------------

    def upsert_premises(self, premises: Premises, now_ms: int) -> Result:
        """Add or update a premises and release the scans parked for it.

        A record with a lower `version` than the one held is stale and ignored (the latest
        import wins); equal versions replace (a re-import of the same file is harmless).
        """
        registry = self.state.premises
        held = registry.get(premises.premises_id)
        if held is None or premises.version >= held[P_VERSION]:
            registry[premises.premises_id] = premises_entry(premises)
        entries = self.state.parked.pop(premises.premises_id, None)
        counts = Counts()
        if not entries:
            return Result([], [], counts)
        rows, dead = self._release(premises.premises_id, entries, now_ms, counts)
        self.counts.add(counts)
        return Result(rows, dead, counts)

    def forget_premises(self, premises_id: str) -> bool:
        """Drop a premises (a tombstone on the premises topic): its later scans park again."""
        return self.state.premises.pop(premises_id, None) is not None

    # -- time -----------------------------------------------------------------------------

    def expire(self, now_ms: int) -> Result:
        """The periodic pass: dead-letter parked scans past the park timeout, release parked
        scans whose premises is now known, and let dedup and repeat memory past the horizon
        go. Parked scans are visited in full.
        """
        cutoff = now_ms - self.settings.dedup_horizon_ms
        self.state.seen.expire(cutoff)
        self.state.last_kept.expire(cutoff)

        counts = Counts()
        rows: list[EnrichedRow] = []
        dead: list[DeadLetter] = []
        parked = self.state.parked
        registry = self.state.premises
        timeout = self.settings.park_timeout_ms
        for premises_id in list(parked.keys()):
            entries = parked[premises_id]
            if premises_id in registry:
                del parked[premises_id]
                released, failed = self._release(premises_id, entries, now_ms, counts)
                rows += released
                dead += failed
                continue
            waiting = [e for e in entries if now_ms - e[PK_PARKED_AT] <= timeout]
            if len(waiting) == len(entries):
                continue
            for entry in entries:
                if now_ms - entry[PK_PARKED_AT] > timeout:
                    dead.append(
                        self._unknown_premises(ParkedScan.from_list(premises_id, entry), now_ms)
                    )
            if waiting:
                parked[premises_id] = waiting
            else:
                del parked[premises_id]
            expired = len(entries) - len(waiting)
            counts.parked -= expired
            counts.dead_lettered[UNKNOWN_PREMISES] = (
                counts.dead_lettered.get(UNKNOWN_PREMISES, 0) + expired
            )
        self.counts.add(counts)
        return Result(rows, dead, counts)

    # -- internals ------------------------------------------------------------------------

    def _decode(
        self,
        records: Iterable[RawRecordLike],
        now_ms: int,
        source: tuple[str, int] | None,
        scans: list[AnyScan],
        recs: list[RawRecordLike],
        dead: list[DeadLetter],
    ) -> int:
        """Valid scans into `scans` (their records into `recs`), the rest into `dead`;
        returns how many scans were received (a frame counts its elements)."""
        max_skew = self.settings.max_skew_ms
        latest = now_ms + max_skew
        fast = fast_scan
        received = 0
        for rec in records:
            value = rec.value
            scan: AnyScan | None = fast(value, latest) if value is not None else None
            if scan is None:
                elements = split_raw_frame(value) if value is not None else None
                if elements is not None:
                    topic, partition = source if source is not None else (rec.topic, rec.partition)
                    offset = rec.offset
                    frame = [RawRecord(e, topic, partition, offset) for e in elements]
                    received += self._decode(frame, now_ms, None, scans, recs, dead)
                    continue
                received += 1
                try:
                    obj = unpack_msgpack(value or b"")
                    scan = parse_scan(obj, now=now_ms, max_skew_ms=max_skew)
                except ScanRejected as exc:
                    dead.append(self._reject(rec, exc.reason, exc.describe(), now_ms, source))
                    continue
                except Exception as exc:  # a bug must not lose the record: dead-letter it
                    detail = f"{type(exc).__name__}: {exc}"[:500]
                    dead.append(self._reject(rec, EXCEPTION, detail, now_ms, source))
                    continue
            else:
                received += 1
            scans.append(scan)
            recs.append(rec)
        return received

    def _release(
        self, premises_id: str, entries: list[list[Any]], now_ms: int, counts: Counts
    ) -> tuple[list[EnrichedRow], list[DeadLetter]]:
        """Parked scans of a now known premises through repeat suppression and enrichment,
        in arrival order; those past the park timeout are dead-lettered instead."""
        meta = self.state.premises[premises_id]
        horizon = self.settings.dedup_horizon_ms
        window = self.settings.repeat_window_ms
        timeout = self.settings.park_timeout_ms
        last_kept = self.state.last_kept
        rows: list[EnrichedRow] = []
        dead: list[DeadLetter] = []
        scans: list[ParkedScan] = []
        for entry in entries:
            scan = ParkedScan.from_list(premises_id, entry)
            if now_ms - scan.parked_at > timeout:
                dead.append(self._unknown_premises(scan, now_ms))
            else:
                scans.append(scan)
        keys = [repeat_key(s.person_id, premises_id, s.kind) for s in scans]
        key_hashes = hash_keys(keys)
        held = last_kept.lookup(key_hashes, NEVER).tolist()
        kept_at: dict[str, int] = {}
        for i, scan in enumerate(scans):
            j = kept_at.get(keys[i])
            if j is None:
                last_arrival, last_at = held[i][LK_ARRIVAL], held[i][LK_SCANNED_AT]
            else:
                last_arrival, last_at = scans[j].arrival, scans[j].scanned_at
            if scan.arrival - last_arrival <= horizon and abs(scan.scanned_at - last_at) <= window:
                counts.repeats += 1
                continue
            kept_at[keys[i]] = i
            rows.append(enriched_row(scan, meta, now_ms))
        if kept_at:
            at = np.fromiter(kept_at.values(), dtype=np.intp, count=len(kept_at))
            kept = np.empty((len(at), 2), dtype=np.int64)
            kept[:, LK_ARRIVAL] = [scans[j].arrival for j in kept_at.values()]
            kept[:, LK_SCANNED_AT] = [scans[j].scanned_at for j in kept_at.values()]
            last_kept.upsert(key_hashes[at], kept)
        counts.parked -= len(entries)
        counts.enriched += len(rows)
        counts.released += len(rows)
        if dead:
            counts.dead_lettered[UNKNOWN_PREMISES] = counts.dead_lettered.get(
                UNKNOWN_PREMISES, 0
            ) + len(dead)
        return rows, dead

    def _unknown_premises(self, scan: ParkedScan, now_ms: int) -> DeadLetter:
        return DeadLetter(
            stage=STAGE,
            reason=UNKNOWN_PREMISES,
            raw=scan.raw,
            detail=(
                f"premises {scan.premises_id} not in the registry "
                f"{self.settings.park_timeout_ms} ms after the scan was parked"
            ),
            topic=scan.topic,
            partition=scan.partition,
            offset=scan.offset,
            at=now_ms,
            event_id=scan.event_id,
        )

    @staticmethod
    def _reject(
        rec: RawRecordLike,
        reason: str,
        detail: str,
        now_ms: int,
        source: tuple[str, int] | None = None,
    ) -> DeadLetter:
        value = rec.value
        topic, partition = source if source is not None else (rec.topic, rec.partition)
        return DeadLetter(
            stage=STAGE,
            reason=reason,
            raw=value if value is not None else b"",
            detail=detail,
            topic=topic,
            partition=partition,
            offset=rec.offset,
            at=now_ms,
            event_id=_event_id_of(value),
        )
