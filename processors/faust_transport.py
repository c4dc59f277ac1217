"""Faust's aiokafka transport with a bulk path for the worker's source topics.

Faust hands each Kafka record to an agent through queues, tasks and `wait_first` calls,
several hundred Python calls per record; with `stream.take_events` on top, the worker read
about 1,500 records/s on a 2-core machine where a plain aiokafka consumer read 200,000/s
(`bench/bench_worker.py --plain-faust` shows it again). Producing one record per `send`
costs another ~30 µs, against ~6 µs per record in an aiokafka batch builder. At tens of
thousands of scans a second neither fits, so the worker keeps Faust for what it is good at
(consumer group and co-partitioned assignment, pause/resume around rebalances, table
changelogs and their recovery, exactly-once transactions and offset commits) and replaces
the two per-record paths for its two source topics:

- `BulkConsumer._drain_messages` is Faust's fetch loop, except that records of the topics
  named in `app.bulk` go to one handler call per fetched batch (every other topic takes
  Faust's own per-message path unchanged). The handler runs under `app.bulk.gate`; the
  consumer acks the batch's offsets when it returns, or, if it returns an awaitable,
  when that completes (at least once: when Kafka has the batch's outputs and state
  changes). Faust commits acked offsets as usual.
- Table recovery: Faust replays a changelog through the same per-message path, at about
  1,500 records/s, so a worker with a million keys of dedup state would take minutes to
  restart. Records of a changelog partition being recovered, whose table's store can take
  raw records (`restore_records`, see `processors.tables`), are applied in bulk instead,
  and the recovery's offsets advanced as Faust's own loop would (it notices the end at its
  next 5 s poll).
- `BulkProducer.send_batches` writes a batch's messages with aiokafka's batch builder, on
  the default producer (at least once) or on the partition's transactional producer
  (exactly once).
- `RefreshingAssignor`: Faust's assignor, except that a group leader whose metadata lacks
  one of the group's topics refreshes it until it does, and the group rebalances again.

Exactly once needs one more thing: Faust commits a partition's transaction from a timer
task, and a commit while a batch is between its first send and its acks would publish its
outputs with the previous offsets; a crash then repeats them. So `BulkConsumer.commit`
(every Faust commit path) waits for `app.bulk.gate`, which a batch holds from its first
send to its last ack, and `wait_empty` (rebalance, shutdown) waits for a running batch. A
batch is shielded from cancellation so a stopping worker finishes it (or, if it had not
started, drops it: the records are read again from the committed offsets).

Everything here leans on Faust 0.15's internals (`faust-streaming>=0.15.3,<0.16` pins
them): `_drain_messages`, `_wait_next_records`, `_read_offset`, `_acked`, `_add_gap`,
`_transaction_producers` and `_trn_locks`; and on aiokafka's consumer client (`_client`) and
Faust's consumer thread (`_thread`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, Final

from aiokafka.errors import IllegalStateError
from faust.assignor import PartitionAssignor
from faust.exceptions import ProducerSendError
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from ingest.batch_send import send_in_batches

log = logging.getLogger("scantrace.worker")

# (key, value) of one Kafka record to send.
Message = tuple[bytes | None, bytes | None]
# The records of one fetch, by topic partition (aiokafka ConsumerRecords).
Records = Mapping[TP, Sequence[Any]]
# A batch handler returns None when the batch is done (ack it now), or an awaitable that
# completes once its effects are durable (ack it then; it may still run during the next
# batch: at least once, the worker publishes one batch while it processes the next).
BulkHandler = Callable[[Records], Awaitable[Awaitable[None] | None]]


@dataclass(slots=True)
class BulkRouting:
    """Which topics the worker consumes in bulk, its handler, and the commit gate.

    `hold(tp)`, when given, says a partition's records must wait (the worker holds scans
    until the premises registry of their partition is loaded): they are left unprocessed,
    the partition is paused and rewound, and resumed once `hold` says so.
    `beat()`, when given, is called on every turn of the fetch loop, records or not (the
    worker's liveness).
    """

    topics: frozenset[str]
    handler: BulkHandler
    gate: asyncio.Lock = field(default_factory=asyncio.Lock)
    hold: Callable[[TP], bool] | None = None
    beat: Callable[[], None] | None = None


class BulkConsumer(faust_aiokafka.Consumer):
    _ack_tasks: set[asyncio.Future[None]] | None = None
    _held: set[TP] | None = None

    def _routing(self) -> BulkRouting | None:
        routing = getattr(self.app, "bulk", None)
        return routing if isinstance(routing, BulkRouting) else None

    def verify_event_path(self, now: float, tp: TP) -> None:
        """Faust's stall check watches its per-event stream path; with the bulk path on, a
        partition with a backlog logged "Stream has not started processing" every few
        seconds while its batches went through (seen in `python -m bench e2e`). Stalls show
        in `scantrace_worker_consumer_lag` and its alert (deploy/prometheus/alerts.yml)."""
        if self._routing() is None:
            super().verify_event_path(now, tp)

    # -- commits wait for a running batch -------------------------------------------------

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        routing = self._routing()
        if routing is None:
            return await super().commit(topics, start_new_transaction)
        async with routing.gate:
            return await super().commit(topics, start_new_transaction)

    async def commit_holding_gate(self) -> bool:
        """Commit acked offsets now; for a caller that already holds the gate."""
        return await super().commit()

    async def wait_empty(self) -> None:
        routing = self._routing()
        if routing is not None:
            async with routing.gate:  # a batch being processed finishes first
                pass
            while self._ack_tasks:  # and the batches being published are acked
                await asyncio.gather(*self._ack_tasks, return_exceptions=True)
        await super().wait_empty()

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Faust's seek to the committed offsets (`perform_seek`, after every recovery and
        whenever the fetch loop finds the flow stopped), and, for a bulk partition that
        the group never committed, a seek to its beginning.

        Fetched records that are not processed (a batch dropped because a rebalance began,
        records of a partition paused meanwhile) have moved the fetch position past them;
        Faust relies on this seek to read them again, but aiokafka seeks only partitions
        with a committed offset above 0 and leaves the others where the fetcher is. A
        partition whose previous owner died before its first commit would go on from
        wherever this worker's fetcher had got to, and the next commit past records no
        worker processed (Faust checks for a gap only above a committed offset):
        acknowledged scans never enriched, a premises partition never read. The group
        reads a partition without a commit from its beginning (`auto_offset_reset`
        earliest); the records this worker processed already are then duplicates.
        """
        committed = await super().seek_to_committed()
        routing = self._routing()
        if routing is not None:
            fresh = [
                tp for tp, offset in committed.items() if not offset and tp.topic in routing.topics
            ]
            if fresh:
                try:
                    await self._thread.seek_to_beginning(*fresh)
                except IllegalStateError as exc:  # revoked meanwhile: the next recovery seeks
                    log.info("seek to the beginning failed: %r", exc)
        return committed

    def ack_offsets(self, tp: TP, offsets: Iterable[int]) -> None:
        """`Consumer.ack` for plain offsets: mark them safe to commit."""
        if not self.app.topics.acks_enabled_for(tp.topic):
            return
        with ack_lock:
            committed = self._committed_offset[tp]
            acked_index = self._acked_index[tp]
            acked = self._acked[tp]
            n = 0
            for offset in offsets:
                if (committed is None or offset >= committed) and offset not in acked_index:
                    acked_index.add(offset)
                    acked.append(offset)
                    n += 1
            self._n_acked += n
        notify(self._waiting_for_ack)

    # -- the fetch loop -------------------------------------------------------------------

    async def _drain_messages(self, fetcher: Any) -> None:
        routing = self._routing()
        if routing is None:
            await super()._drain_messages(fetcher)
            return
        bulk_topics = routing.topics
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        monitor = self.app.monitor
        beat = routing.beat
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                if beat is not None:
                    beat()
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        log.info("seek while flow inactive failed: %r", exc)
                    continue
                generation = self.app.consumer_generation_id
                batch: dict[TP, Sequence[Any]] = {}
                for tp, recs in records.items():
                    if not recs or (
                        active is not None
                        and tp not in active
                        and tp not in self._buffered_partitions
                    ):
                        continue
                    if monitor is not None:
                        monitor.track_tp_end_offset(tp, self.highwater(tp))
                    if tp.topic in bulk_topics:
                        batch[tp] = recs
                        continue
                    if self._restore(tp, recs):
                        continue
                    # Faust's own per-message path (changelogs during recovery, ...).
                    for record in recs:
                        if not self.flow_active or self.app.consumer_generation_id != generation:
                            break
                        message = self._to_message(tp, record)
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                if batch:
                    # Shielded: a stop cancels the fetch loop, not a batch half sent.
                    await asyncio.shield(self._run_bulk(routing, batch, generation))
                    self.release_held()
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("broker stopped the consumer, shutting down")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _restore(self, tp: TP, records: Sequence[Any]) -> bool:
        """Apply records of a changelog partition under recovery to its table in bulk;
        False when the partition is not one (then Faust's per-message path takes them)."""
        tables: Any = self.app.tables  # TableManagerT does not declare `recovery`
        recovery = tables.recovery
        if not recovery.in_recovery or tp not in recovery.active_tps:
            return False
        table = recovery.tp_to_table.get(tp)
        restore = getattr(getattr(table, "data", None), "restore_records", None)
        if restore is None:
            return False
        seen = recovery.active_offsets.get(tp)
        if seen is not None and records[0].offset <= seen:
            records = [r for r in records if r.offset > seen]
        if records:
            restore(tp.partition, records)
            recovery.active_offsets[tp] = records[-1].offset
            self._read_offset[tp] = records[-1].offset
        return True

    async def _run_bulk(
        self, routing: BulkRouting, batch: Mapping[TP, Sequence[Any]], generation: int
    ) -> bool:
        async with routing.gate:
            if (
                self.should_stop
                or not self.flow_active
                or self.app.consumer_generation_id != generation
            ):
                return False  # a rebalance or stop began: read again from the commit
            fresh: dict[TP, Sequence[Any]] = {}
            for tp, recs in batch.items():
                r_offset = self._read_offset[tp]
                if r_offset is not None and recs[0].offset < r_offset:
                    recs = [r for r in recs if r.offset >= r_offset]
                if recs:
                    fresh[tp] = recs
            if routing.hold is not None:
                for tp in [tp for tp in fresh if routing.hold(tp)]:
                    await self._hold_back(tp, fresh.pop(tp)[0].offset)
            if not fresh:
                return True
            try:
                completion = await routing.handler(fresh)
            except Exception as exc:
                await self._batch_failed(exc)
                return False
            now = monotonic()
            inbound = self.app.monitor.stream_inbound_time if self.app.monitor else None
            acks: dict[TP, list[int]] = {}
            for tp, recs in fresh.items():
                offsets = [r.offset for r in recs]
                if self.app.topics.acks_enabled_for(tp.topic):
                    r_offset = self._read_offset[tp]
                    previous = r_offset if r_offset is not None else offsets[0]
                    for offset in offsets:
                        if offset - previous > 1:  # compacted away, or a transaction marker
                            await self._add_gap(tp, previous + 1, offset - 1)
                        previous = offset
                    acks[tp] = offsets
                self._read_offset[tp] = offsets[-1]
                if inbound is not None:
                    inbound[tp] = now
            if completion is None:
                for tp, offsets in acks.items():
                    self.ack_offsets(tp, offsets)
            else:
                if self._ack_tasks is None:
                    self._ack_tasks = set()
                task = asyncio.ensure_future(self._ack_when(completion, acks))
                self._ack_tasks.add(task)
                task.add_done_callback(self._ack_tasks.discard)
            return True

    async def _hold_back(self, tp: TP, offset: int) -> None:
        """Leave a partition's records for later: pause it and rewind to `offset`."""
        if self._held is None:
            self._held = set()
        tp = TP(tp.topic, tp.partition)  # fetched records are keyed by aiokafka's type
        self._held.add(tp)
        self.pause_partitions([tp])
        await self.seek(tp, offset)

    def release_held(self) -> list[TP]:
        """Resume held partitions their `hold` lets go (and forget those reassigned)."""
        routing = self._routing()
        if not self._held or routing is None or routing.hold is None:
            return []
        assigned = self.assignment()
        released = [tp for tp in self._held if tp not in assigned or not routing.hold(tp)]
        self._held.difference_update(released)
        ready = [tp for tp in released if tp in assigned]
        if ready:
            self.resume_partitions(ready)
        return ready

    async def _ack_when(self, completion: Awaitable[None], acks: Mapping[TP, list[int]]) -> None:
        try:
            await completion
        except Exception as exc:
            await self._batch_failed(exc)
            return
        for tp, offsets in acks.items():
            self.ack_offsets(tp, offsets)

    async def _batch_failed(self, exc: BaseException) -> None:
        # Outputs not acknowledged by Kafka (after the producer's own retries): the
        # offsets stay uncommitted and the worker stops; a restart reads them again.
        if not self.app.should_stop:
            log.critical("batch failed, stopping the worker: %r", exc)
            await self.app.crash(exc)


class BulkProducer(faust_aiokafka.Producer):
    def __post_init__(self) -> None:
        super().__post_init__()
        # Transactions written to since their last commit (exactly once).
        self.dirty_transactions: set[str] = set()

    def _lock(self, transactional_id: str | None) -> AbstractAsyncContextManager[Any]:
        if transactional_id is None:
            return nullcontext()
        lock = self._trn_locks.get(transactional_id)
        if lock is None:
            raise ProducerSendError(f"no transaction producer for {transactional_id}")
        return lock

    async def send_batches(
        self,
        messages: Mapping[tuple[str, int], Sequence[Message]],
        transactional_id: str | None = None,
    ) -> list[asyncio.Future[Any]]:
        """Queue every message with aiokafka's batch builder; returns the delivery futures
        (one per record batch). With a transactional id, on that transaction."""
        if not messages:
            return []
        async with self._lock(transactional_id):
            if transactional_id is None:
                producer = self._ensure_producer()
            else:
                producer = self._transaction_producers.get(transactional_id)
                if producer is None:
                    raise ProducerSendError(f"no transaction producer for {transactional_id}")
                self.dirty_transactions.add(transactional_id)
            return await send_in_batches(producer, messages)

    async def commit_transactions(
        self,
        tid_to_offset_map: Mapping[str, Mapping[TP, int]],
        group_id: str,
        start_new_transaction: bool = True,
    ) -> None:
        await super().commit_transactions(
            tid_to_offset_map, group_id, start_new_transaction=start_new_transaction
        )
        self.dirty_transactions.difference_update(tid_to_offset_map)

    async def commit_dirty_transactions(self) -> list[str]:
        """Commit transactions written to but without offsets to commit (a timer's output
        on an idle partition). Call holding the gate, after committing the offsets."""
        committed = []
        for tid in sorted(self.dirty_transactions):
            async with self._lock(tid):
                producer = self._transaction_producers.get(tid)
                if producer is None:
                    continue
                await producer.commit_transaction()
                await producer.begin_transaction()
            committed.append(tid)
        self.dirty_transactions.difference_update(committed)
        return committed


# The leader asks for fresh metadata this often until it lists every topic of the group.
METADATA_RETRY_S: Final = 1.0
METADATA_RETRIES: Final = 120


class RefreshingAssignor(PartitionAssignor):
    """Faust's assignor, for a group leader whose metadata lacks a topic of the group.

    Faust's assignor leaves such a topic out of the assignment ("Ignoring missing topic"),
    and aiokafka refreshes a consumer's metadata only every `metadata_max_age_ms` (five
    minutes). On a cluster of several brokers, a table's changelog topic that Faust creates
    a moment before the group forms can be unknown to the broker answering the leader: no
    worker is then assigned that changelog, none restores the table, and each drops its copy
    when a recovery ends (`PartitionedStore.on_recovery_completed`). Without the premises
    table every scan parks as an unknown premises and its offset is committed: acknowledged
    scans that never reach scans.enriched. So the leader refreshes its metadata until it
    lists every topic; aiokafka's leader rebalances the group when the metadata of a topic
    of the group changes. Meanwhile no worker processes a partition whose tables are not
    all assigned to it (`processors.app.Pipeline.hold`).
    """

    _refreshing: asyncio.Future[None] | None = None

    def assign(self, cluster: Any, member_metadata: Any) -> Any:
        topics = {t for metadata in member_metadata.values() for t in metadata.subscription}
        missing = sorted(t for t in topics if not cluster.partitions_for_topic(t))
        if missing and (self._refreshing is None or self._refreshing.done()):
            log.warning(
                "the group leader's metadata lacks %s: assigning without them, refreshing "
                "it to rebalance again",
                ", ".join(missing),
            )
            # On the consumer's event loop: this runs inside its group coordinator.
            self._refreshing = asyncio.ensure_future(self._refresh_until_listed(missing))
        return super().assign(cluster, member_metadata)

    async def _refresh_until_listed(self, topics: Sequence[str]) -> None:
        consumer: Any = self.app.consumer  # the Faust consumer; its aiokafka one runs here
        client = consumer._thread._ensure_consumer()._client
        for _ in range(METADATA_RETRIES):
            try:
                await client.force_metadata_update()
            except Exception as exc:  # the consumer is stopping, or the broker is away
                log.info("metadata refresh failed: %r", exc)
            if all(client.cluster.partitions_for_topic(t) for t in topics):
                log.info("the group leader's metadata lists %s now", ", ".join(topics))
                return
            await asyncio.sleep(METADATA_RETRY_S)
        log.error("the group leader's metadata still lacks %s", ", ".join(topics))


class BulkTransport(faust_aiokafka.Transport):
    Consumer = BulkConsumer
    Producer = BulkProducer
