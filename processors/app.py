"""The Faust app of the processors stage: `scans.raw` + `premises` -> `scans.enriched`.

Run it with `scantrace worker`, or `faust -A processors.app:app worker` (settings from the
environment, see `processors.worker_settings`).

Layout:

- Sources: `scans.raw` and the compacted `premises` topic, both keyed by premises_id with
  the same partition count, so Faust assigns partition p of both to the same worker.
  They are created up front (`ensure_topics`) before the consumer subscribes.
- State: four tables (`seen`, `last_kept`, `parked`, `premises`) with changelogs,
  co-partitioned with the sources: per partition a dict (`parked`, `premises`, compacted
  changelogs) or a `HorizonMap` (`seen`, `last_kept`, changelogs deleted by age; see
  `processors.tables`). Faust restores a partition's tables from their changelogs when it
  is assigned.
- Processing: every fetched batch of both topics goes to `Pipeline.on_records`, which runs
  the core once per partition (`processors.runner`, with the per-event guard) and writes
  frames of enriched scans (`processors.records`) to `scans.enriched` and dead letters to
  `scans.dlq` on the input's partition (same partition count: the partition each scan's
  premises_id hashes to), then the state changes to the changelogs. A timer runs the
  core's `expire` on every partition.
- Delivery: at least once, the batch's outputs, then its changelog records, are
  acknowledged by Kafka before its offsets are acked for commit (while that happens, the
  next batch is processed: at most `MAX_BATCHES_IN_FLIGHT`); exactly once, a partition's
  outputs, changelog records and offsets share that partition's transaction, and no
  commit happens in the middle of a batch (`processors.faust_transport`). A batch Kafka
  does not take within `produce_timeout_seconds` stops the worker, its offsets
  uncommitted.
- Recovery: Faust restores the tables from their changelogs; the bulk transport applies
  the records in bulk (hundreds of thousands a second, where Faust's per-message path
  manages about 1,500).
- Metrics: `WorkerMetrics` on the registry passed to `create_app`, served on
  `worker.metrics_port` by prometheus_client.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Collection, Iterable
from time import perf_counter
from typing import Any, Final, cast

import faust
from faust.exceptions import ImproperlyConfigured
from faust.types import TP
from faust.types.auth import CredentialsT
from prometheus_client import CollectorRegistry

from ingest.admin import ensure_topics, partition_counts
from ingest.contract import now_ms
from ingest.kafka_settings import KafkaSettings
from ingest.lean_records import install as install_lean_records
from ingest.telemetry import Heartbeat, MetricsServer
from processors.faust_transport import (
    BulkConsumer,
    BulkProducer,
    BulkRouting,
    BulkTransport,
    Message,
    Records,
    RefreshingAssignor,
)
from processors.metrics import WorkerMetrics
from processors.runner import HORIZON, HORIZON_WIDTHS, TABLES, BatchRunner, Outbox
from processors.tables import HorizonTable, PartitionedStore, PartitionedTable
from processors.worker_settings import WorkerSettings

log = logging.getLogger("scantrace.worker")

GAUGE_INTERVAL_S: Final = 2.0
# At least once: batches whose outputs are on their way while the next one is processed.
MAX_BATCHES_IN_FLIGHT: Final = 4
# Scans of a partition wait for its premises registry to be read (a fresh start with a
# backlog would otherwise park them all), at most this long.
PREMISES_WAIT_S: Final = 30.0
# A record batch written by the worker, at most (the broker's default limit is ~1 MB).
PRODUCER_BATCH_BYTES: Final = 512 * 1024
# Bytes fetched per partition and request: aiokafka asks again only once the last fetch is
# consumed, so a small one (Faust's default is 1 MiB, ~7,000 scans) leaves the worker
# waiting for a round trip every few batches.
FETCH_BYTES_PER_PARTITION: Final = 8 * 1024 * 1024


class FaustTableRef:
    """A `PartitionedTable` as the runner sees it (the store exists once the app runs)."""

    def __init__(self, table: PartitionedTable) -> None:
        self.table = table
        self.name: str = table.name

    @property
    def store(self) -> PartitionedStore:
        return self.table.store

    @property
    def changelog_topic(self) -> str:
        return self.table.changelog_topic.get_topic_name()


class Pipeline:
    """Glue between Faust and the runner: batches in, messages out, timers, gauges."""

    def __init__(self, app: WorkerApp, settings: WorkerSettings, registry: CollectorRegistry):
        self.app = app
        self.settings = settings
        self.metrics = WorkerMetrics(registry)
        self.registry = registry
        kafka = settings.kafka
        n = kafka.partitions
        self.raw_topic = kafka.raw
        self.premises_topic = kafka.premises
        self.exactly_once = settings.worker.processing_guarantee == "exactly_once"
        self.tables: dict[str, PartitionedTable] = {}
        for name in TABLES:
            options: dict[str, Any] = {
                "name": name,
                "partitions": n,
                "key_type": bytes,  # raw keys and values: the runner encodes its records
                "value_type": bytes,
                "recovery_buffer_size": 10_000,
                "beacon": app.tables.beacon,
                "help": f"processors state: {name}",
            }
            table = (
                HorizonTable(
                    app,
                    horizon_ms=settings.core.dedup_horizon_ms,
                    width=HORIZON_WIDTHS[name],
                    **options,
                )
                if name in HORIZON
                else PartitionedTable(app, **options)
            )
            app.tables.add(table)
            self.tables[name] = table
        self.runner = BatchRunner(
            settings.core,
            kafka,
            {name: FaustTableRef(t) for name, t in self.tables.items()},
            self.metrics,
            max_record_bytes=settings.worker.max_record_bytes,
        )
        # The next offset to process, by source partition (for the lag gauge).
        self.positions: dict[TP, int] = {}
        # At least once: the publications in flight, oldest first (each awaits the one
        # before it, so changelog records reach Kafka in the order they were made).
        self._in_flight: list[asyncio.Future[None]] = []
        self._metrics_server: MetricsServer | None = None
        self.heartbeat = Heartbeat()  # every turn of the fetch loop (`/healthz`)
        self._announced: tuple[int, ...] | None = None
        # Partitions whose premises registry has been read since the last rebalance, and
        # since when the others have been waiting.
        self._premises_ready: set[int] = set()
        self._waiting_since: dict[int, float] = {}
        self._generation = -1
        # Partitions held since the last rebalance because a table of theirs is not assigned.
        self._stateless: set[int] = set()

    # -- Kafka plumbing -------------------------------------------------------------------

    @property
    def consumer(self) -> BulkConsumer:
        return cast(BulkConsumer, self.app.consumer)

    @property
    def producer(self) -> BulkProducer:
        return cast(BulkProducer, self.app.producer)

    def transactional_id(self, partition: int) -> str:
        """Faust's transactional id for a partition of the co-partitioned group."""
        group = self.app.assignor.group_for_topic(self.raw_topic)
        return f"{self.app.conf.id}-{group}-{partition}"

    async def publish(self, outboxes: dict[int, Outbox]) -> asyncio.Future[None] | None:
        """Hand a batch's outboxes to the producer.

        Exactly once: on each partition's transaction, nothing to wait for (the commit
        flushes the transaction); returns None. At least once: the outputs now, and a task
        that waits for them, then sends the changelog records and waits for those; the
        batch is acked when the task is done. At most `MAX_BATCHES_IN_FLIGHT` such tasks
        run; a failed one fails every later one.
        """
        producer = self.producer
        if self.exactly_once:
            for partition, out in outboxes.items():
                messages: dict[tuple[str, int], list[Message]] = {**out.outputs, **out.changelog}
                futures = await producer.send_batches(messages, self.transactional_id(partition))
                for fut in futures:
                    fut.add_done_callback(_log_failed_delivery)
            return None
        outputs: dict[tuple[str, int], list[Message]] = {}
        changelog: dict[tuple[str, int], list[Message]] = {}
        for out in outboxes.values():
            outputs.update(out.outputs)
            changelog.update(out.changelog)
        sent = await producer.send_batches(outputs)
        previous = self._in_flight[-1] if self._in_flight else None
        task = asyncio.ensure_future(self._complete(previous, sent, changelog))
        self._in_flight = [t for t in self._in_flight if not t.done()]
        self._in_flight.append(task)
        while len(self._in_flight) > MAX_BATCHES_IN_FLIGHT:
            await self._in_flight.pop(0)
        return task

    async def _complete(
        self,
        previous: asyncio.Future[None] | None,
        sent: list[asyncio.Future[Any]],
        changelog: dict[tuple[str, int], list[Message]],
    ) -> None:
        if previous is not None:
            await previous
        if sent:
            await asyncio.gather(*sent)
        state = await self.producer.send_batches(changelog)
        if state:
            await asyncio.gather(*state)

    async def drain(self) -> None:
        """Wait until every batch handed to the producer is durable (raises if one failed)."""
        while self._in_flight:
            await self._in_flight.pop(0)

    # -- the bulk handler -----------------------------------------------------------------

    async def on_records(self, records: Records) -> asyncio.Future[None] | None:
        """One fetched batch of `scans.raw` and `premises` records (never raises for bad
        records; raises only when Kafka did not take the outputs). Returns what `publish`
        does: when to ack the batch."""
        started = perf_counter()
        now = now_ms()
        runner = self.runner
        premises_topic = self.premises_topic
        outboxes: dict[int, Outbox] = {}
        # Premises first: a scan in the same batch then finds its premises.
        ordered = sorted(records.items(), key=lambda kv: (kv[0].topic != premises_topic, kv[0]))
        for tp, recs in ordered:
            out = outboxes.get(tp.partition)
            if out is None:
                out = outboxes[tp.partition] = Outbox()
            if tp.topic == premises_topic:
                runner.premises(tp.partition, recs, now, out)
            else:
                runner.scans(tp.partition, recs, now, out)
            self.positions[tp] = recs[-1].offset + 1
        processed = perf_counter()
        completion = await self.publish(outboxes)
        done = perf_counter()
        self.metrics.batch_duration.observe(done - started)
        self.metrics.last_progress.set(time.time())
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "batch of %d records: processed in %.1f ms, published in %.1f ms",
                sum(map(len, records.values())),
                (processed - started) * 1000,
                (done - processed) * 1000,
            )
        return completion

    def changelog_topics(self) -> list[str]:
        return [t.changelog_topic.get_topic_name() for t in self.tables.values()]

    def hold(self, tp: TP) -> bool:
        """Whether records of `tp` must wait: records of a partition whose tables are not
        all assigned to this worker (`missing_state`), and scans of a partition whose
        premises topic partition has not been read up to its end since the assignment (or
        for `PREMISES_WAIT_S`)."""
        generation = self.app.consumer_generation_id
        if generation != self._generation:
            self._generation = generation
            self._premises_ready.clear()
            self._waiting_since.clear()
            self._stateless.clear()
        partition = tp.partition
        missing = missing_state(self.consumer.assignment(), self.changelog_topics(), partition)
        if missing:
            if partition not in self._stateless:
                self._stateless.add(partition)
                log.warning(
                    "partition %d held: %s not assigned to this worker (the group should "
                    "rebalance again)",
                    partition,
                    ", ".join(missing),
                )
            return True
        if tp.topic != self.raw_topic:
            return False
        if partition in self._premises_ready:
            return False
        consumer = self.consumer
        premises = TP(self.premises_topic, partition)
        waited = time.monotonic() - self._waiting_since.setdefault(partition, time.monotonic())
        try:
            high = consumer.highwater(premises)
        except Exception:  # not fetched yet
            high = None
        position = self.positions.get(premises)
        if position is None:
            position = consumer._committed_offset.get(premises)
        caught_up = high is not None and (high == 0 or (position is not None and position >= high))
        if caught_up or waited > PREMISES_WAIT_S:
            self._premises_ready.add(partition)
            if not caught_up:
                log.warning(
                    "premises partition %d not read to its end after %.0f s: scans go on "
                    "(those of premises not yet read are parked until they are)",
                    partition,
                    waited,
                )
            return False
        return True

    # -- timers ---------------------------------------------------------------------------

    def _settled(self) -> bool:
        app = self.app
        return not (app.rebalancing or app.in_recovery or app.should_stop)

    async def expire(self) -> None:
        """The core's periodic pass on every assigned partition, under the commit gate."""
        routing = self.app.bulk
        if routing is None or not self._settled():
            return
        async with routing.gate:
            if not self._settled() or not self.consumer.flow_active:
                return
            assigned = self.consumer.assignment()
            changelogs = self.changelog_topics()
            partitions = sorted(
                tp.partition
                for tp in assigned
                if tp.topic == self.raw_topic
                and not missing_state(assigned, changelogs, tp.partition)
            )
            now = now_ms()
            outboxes: dict[int, Outbox] = {}
            for partition in partitions:
                out = Outbox()
                self.runner.expire(partition, now, out)
                if len(out):
                    outboxes[partition] = out
            if not outboxes:
                return
            try:
                await self.drain()  # the changelog keeps the order of the changes
                completion = await self.publish(outboxes)
                if completion is not None:
                    await completion
                    await self.drain()
                if self.exactly_once:
                    # Idle partitions have no offsets to commit their transaction with.
                    await self.consumer.commit_holding_gate()
                    await self.producer.commit_dirty_transactions()
            except Exception as exc:
                log.critical("expire pass could not be published, stopping: %r", exc)
                await self.app.crash(exc)

    def update_gauges(self) -> None:
        metrics = self.metrics
        runner = self.runner
        metrics.parked.set(runner.parked_now())
        for name, entries in runner.table_entries().items():
            metrics.table_entries.labels(name).set(entries)
        consumer = self.consumer
        partitions = tuple(
            sorted(tp.partition for tp in consumer.assignment() if tp.topic == self.raw_topic)
        )
        if partitions != self._announced and self._settled():
            self._announced = partitions
            log.info(
                "processing partitions %s; state: %s",
                list(partitions),
                ", ".join(f"{k}={v}" for k, v in runner.table_entries().items()),
            )
        lags: dict[tuple[str, int], int] = {}
        sources = (self.raw_topic, self.premises_topic)
        for tp in consumer.assignment():
            if tp.topic not in sources:
                continue
            try:
                high = consumer.highwater(tp)
            except Exception:  # noqa: S112  # not fetched yet, or the consumer is restarting
                continue
            position = self.positions.get(tp)
            if position is None:
                position = consumer._committed_offset.get(tp)
            if high is not None and position is not None:
                lags[(tp.topic, tp.partition)] = max(0, high - position)
        metrics.set_lags(lags)

    async def gauges(self) -> None:
        try:
            self.consumer.release_held()  # when no batch comes to do it
            self.update_gauges()
        except Exception:
            log.exception("could not update the gauges")

    # -- start-up ---------------------------------------------------------------------------

    def check_topics(self) -> None:
        kafka = self.settings.kafka
        created = ensure_topics(kafka)
        if created:
            log.info("created topics: %s", ", ".join(created))
        deadline = time.monotonic() + 15
        while True:  # a topic created a moment ago may not be described yet
            counts = partition_counts(kafka)
            raw, premises = counts.get(kafka.raw), counts.get(kafka.premises)
            if (raw and premises) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if raw != kafka.partitions or premises != kafka.partitions:
            raise ImproperlyConfigured(
                f"{kafka.raw} has {raw} partitions and {kafka.premises} {premises}; the worker "
                f"needs both at SCANTRACE_KAFKA__PARTITIONS={kafka.partitions} (co-partitioned)"
            )

    def start_metrics_server(self) -> None:
        options = self.settings.worker
        if options.metrics_port and self._metrics_server is None:
            self._metrics_server = MetricsServer(
                options.metrics_host,
                options.metrics_port,
                self.registry,
                self.heartbeat,
                options.stall_seconds,
            )
            log.info(
                "metrics on http://%s:%d/metrics, liveness on /healthz",
                options.metrics_host,
                options.metrics_port,
            )

    def stop_metrics_server(self) -> None:
        server, self._metrics_server = self._metrics_server, None
        if server is not None:
            threading.Thread(target=server.stop, daemon=True).start()


def missing_state(assigned: Collection[TP], changelogs: Iterable[str], partition: int) -> list[str]:
    """The changelog topics whose `partition` is not in `assigned`: a partition of the
    sources must not be processed without every table's partition of the same number
    (co-partitioned). Faust assigns them together, except when the group leader did not
    know a changelog topic (`processors.faust_transport.RefreshingAssignor`): the worker
    then has no copy of that table's partition, and a scan would be processed against an
    empty premises registry or dedup memory, its offset committed all the same."""
    return [topic for topic in changelogs if TP(topic, partition) not in assigned]


def _log_failed_delivery(fut: asyncio.Future[Any]) -> None:
    if fut.cancelled():
        return
    exc = fut.exception()
    if exc is not None:  # the transaction's commit fails too, and the worker stops
        log.error("Kafka did not take a record batch: %r", exc)


class WorkerApp(faust.App):
    """A Faust app on the bulk transport (`processors.faust_transport`)."""

    bulk: BulkRouting | None = None
    pipeline: Pipeline

    def _new_transport(self) -> BulkTransport:
        return BulkTransport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> BulkTransport:
        return BulkTransport(self.conf.broker_producer, self)

    async def on_first_start(self) -> None:
        await super().on_first_start()
        pipeline = self.pipeline
        await asyncio.get_running_loop().run_in_executor(None, pipeline.check_topics)
        pipeline.start_metrics_server()
        options = pipeline.settings.worker
        log.info(
            "worker %s: %s -> %s, %s, %d partitions, %s, Kafka %s",
            self.conf.id,
            pipeline.raw_topic,
            pipeline.settings.kafka.enriched,
            pipeline.settings.kafka.dlq,
            pipeline.settings.kafka.partitions,
            options.processing_guarantee,
            pipeline.settings.kafka.login(),
        )

    async def on_stop(self) -> None:
        await super().on_stop()
        self.pipeline.stop_metrics_server()


def broker_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """Faust's form of `kafka.security_config()`: Faust builds its aiokafka clients from
    credential objects, not keywords. None for PLAINTEXT."""
    config = kafka.security_config()
    protocol = config["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(config["ssl_context"])
    # SASL_PLAINTEXT without a context, SASL_SSL with one (Faust picks the protocol so).
    return faust.SASLCredentials(
        username=config["sasl_plain_username"],
        password=config["sasl_plain_password"],
        mechanism=config["sasl_mechanism"],
        ssl_context=config.get("ssl_context"),
    )


def create_app(settings: WorkerSettings, registry: CollectorRegistry) -> WorkerApp:
    """The worker's Faust app. Nothing connects until it runs (`faust.Worker(app)`)."""
    kafka = settings.kafka
    options = settings.worker
    brokers = ";".join(f"kafka://{server}" for server in kafka.servers())
    app = WorkerApp(
        settings.app_id,
        broker=brokers,
        broker_credentials=broker_credentials(kafka),
        store="memory://",
        processing_guarantee=options.processing_guarantee,
        datadir=options.data_dir,  # None: Faust's default, or its CLI's --datadir
        autodiscover=False,
        web_enabled=False,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        topic_disable_leader=True,
        table_standby_replicas=0,  # the in-memory store drops standby data after recovery
        broker_commit_interval=options.commit_interval_seconds,
        broker_session_timeout=options.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, options.session_timeout_seconds / 3),
        broker_max_poll_records=options.batch_max_records,
        consumer_max_fetch_size=FETCH_BYTES_PER_PARTITION,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        producer_request_timeout=options.produce_timeout_seconds,
        producer_max_request_size=max(options.max_record_bytes, PRODUCER_BATCH_BYTES) + 65_536,
        consumer_auto_offset_reset="earliest",
        PartitionAssignor=RefreshingAssignor,
    )
    pipeline = app.pipeline = Pipeline(app, settings, registry)
    sources = {
        name: app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=kafka.partitions,
        )
        for name in (kafka.raw, kafka.premises)
    }
    for topic in sources.values():
        app.topics.add(topic)  # subscribed and assigned like an agent's topic
    # Scans come as aiokafka's parsed C records, without a Python ConsumerRecord each
    # (about 8 % of the worker's CPU): the bulk path needs only offsets and values.
    install_lean_records([kafka.raw])
    app.bulk = BulkRouting(
        topics=frozenset(sources),
        handler=pipeline.on_records,
        hold=pipeline.hold,
        beat=pipeline.heartbeat.beat,
    )
    app.timer(interval=options.expire_interval_seconds, name="scantrace.expire")(pipeline.expire)
    app.timer(interval=GAUGE_INTERVAL_S, name="scantrace.gauges")(pipeline.gauges)
    return app


_app: WorkerApp | None = None


def __getattr__(name: str) -> Any:
    """`app` for `faust -A processors.app:app`, built on first use from the environment."""
    global _app
    if name == "app":
        if _app is None:
            _app = create_app(WorkerSettings(), CollectorRegistry())
        return _app
    raise AttributeError(name)
