"""The real `Publisher`: aiokafka, acks=all, idempotent, compressed, whole batches.

aiokafka's `send()` costs a coroutine and a future per message; at tens of thousands of
scans a second that is most of a core. Here a request's scans go out as frames, one record
per partition (`ingest.wire.raw_frames`; partition = Kafka's murmur2 rule on the premises
id, see `ingest.partitioning`), appended straight into per-partition `BatchBuilder`s, and
one future per batch tells the waiting requests when Kafka acknowledged it.

Per partition ("lane"): a queue of batches not yet handed to aiokafka; the last one is
open and fills up while the one before it is on its way. A small pump task hands them
over in order; aiokafka keeps at most one waiting batch per partition and one produce
request in flight per broker, so batches grow by themselves under load (no linger delay
when idle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

from ingest.deadletter import DeadLetter, encode_dead_letter
from ingest.gateway.base import PublishUnavailable
from ingest.gateway.settings import GatewayOptions
from ingest.kafka_settings import KafkaSettings
from ingest.partitioning import KeyPartitioner
from ingest.wire import AnyScan, encode_scan, raw_frames

log = logging.getLogger(__name__)

READY_TIMEOUT_S: Final = 2.0
MAX_BACKOFF_S: Final = 5.0


class _Lane:
    """One topic-partition."""

    __slots__ = ("partition", "pumping", "queue", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.queue: deque[_Batch] = deque()
        self.pumping = False


class _Batch:
    """One Kafka record batch and the future the requests with records in it wait on.
    `count`: the scans and dead letters in it."""

    __slots__ = ("builder", "count", "done", "lane")

    def __init__(self, builder: Any, lane: _Lane) -> None:
        self.builder = builder
        self.lane = lane
        self.count = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.done.add_done_callback(_retrieve)


def _retrieve(fut: asyncio.Future[None]) -> None:
    """Mark a batch's failure as seen: its requests may have given up waiting (503)."""
    if not fut.cancelled():
        fut.exception()


class KafkaBatchPublisher:
    """`Publisher` on aiokafka. `start()` returns at once and connects in the background
    (until then, and whenever Kafka is unreachable, `publish` raises `PublishUnavailable`)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        options: GatewayOptions,
        *,
        client_id: str = "scantrace-gateway",
    ) -> None:
        self._kafka = kafka
        self._options = options
        self._client_id = client_id
        self._retry_after = float(options.retry_after_s)
        self._producer: AIOKafkaProducer | None = None
        self._connected = asyncio.Event()
        self._connect_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._unsettled: set[_Batch] = set()
        self._pending = 0
        self._closing = False
        self._scan_keys = KeyPartitioner()
        self._letter_keys = KeyPartitioner()
        self._round_robin = 0
        self.last_error = "not connected yet"

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._connect_task is None:
            self._connect_task = asyncio.create_task(self._connect_loop())

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self._connected.is_set()

    def _new_producer(self) -> AIOKafkaProducer:
        options = self._options
        return AIOKafkaProducer(
            **self._kafka.aiokafka_config(),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=None if options.compression == "none" else options.compression,
            max_batch_size=options.kafka_batch_bytes,
            linger_ms=0,
            request_timeout_ms=options.kafka_request_timeout_ms,
            metadata_max_age_ms=60_000,
        )

    async def _connect_loop(self) -> None:
        backoff = 0.25
        while not self._closing:
            producer = self._new_producer()
            try:
                await producer.start()
                for topic in (self._kafka.raw, self._kafka.dlq):
                    await producer.partitions_for(topic)
            except Exception as exc:  # any failure to connect is retried; it is logged here
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "Kafka not reachable (%s); retrying in %.1f s", self.last_error, backoff
                )
                await _stop_quietly(producer)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if self._closing:
                await _stop_quietly(producer)
                return
            self._producer = producer
            self.last_error = ""
            self._connected.set()
            log.info("connected to Kafka at %s (%s)", self._kafka.bootstrap, self._kafka.login())
            return

    def _restart(self, producer: AIOKafkaProducer, reason: str) -> None:
        """The producer is broken for good (fatal error): fail what waits, connect anew."""
        if self._producer is not producer or self._closing:
            return
        log.error("Kafka producer failed (%s); reconnecting", reason)
        self.last_error = reason
        self._producer = None
        self._connected.clear()
        for lane in self._lanes.values():
            while lane.queue:
                self._fail(lane.queue.popleft(), PublishUnavailable(reason, self._retry_after))
        self._spawn(_stop_quietly(producer))
        self._connect_task = asyncio.create_task(self._connect_loop())

    async def close(self) -> None:
        """Refuse new requests, wait (up to the publish timeout) until every batch already
        accepted is acknowledged, then stop the producer (which flushes)."""
        self._closing = True
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        waiting = [b.done for b in self._unsettled]
        if waiting:
            await asyncio.wait(waiting, timeout=self._options.publish_timeout_ms / 1000)
        producer, self._producer = self._producer, None
        self._connected.clear()
        if producer is not None:
            await _stop_quietly(producer)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def ready(self) -> bool:
        producer = self._producer
        if producer is None or self._closing:
            return False
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), READY_TIMEOUT_S)
        except Exception:  # any failure means not ready; the reason is not the answer's business
            return False
        return True

    # -- publishing ------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records handed over and not yet acknowledged or failed."""
        return self._pending

    def _unavailable(self, detail: str) -> PublishUnavailable:
        return PublishUnavailable(detail, self._retry_after)

    async def publish(self, scans: Sequence[AnyScan], dead_letters: Sequence[DeadLetter]) -> None:
        if self._closing:
            raise self._unavailable("the gateway is shutting down")
        producer = self._producer
        if producer is None:
            raise self._unavailable(f"Kafka is not reachable ({self.last_error})")
        count = len(scans) + len(dead_letters)
        if self._pending and self._pending + count > self._options.max_pending_scans:
            raise self._unavailable(
                f"producer buffer full ({self._pending} records waiting for Kafka)"
            )
        raw, dlq = self._kafka.raw, self._kafka.dlq
        raw_parts = await self._partitions(producer, raw) if scans else ()
        dlq_parts = await self._partitions(producer, dlq) if dead_letters else ()
        if self._producer is not producer:  # restarted while we waited for metadata
            raise self._unavailable("Kafka producer restarted")
        batches: set[_Batch] = set()
        try:
            if scans:
                self._append_scans(raw, raw_parts, scans, batches)
            if dead_letters:
                ordered = sorted(dlq_parts)
                self._letter_keys.use(ordered)
                for letter in dead_letters:
                    letter_key: bytes | None = None
                    if letter.event_id:
                        letter_key, partition = self._letter_keys(letter.event_id)
                    else:
                        partition = ordered[self._round_robin % len(ordered)]
                        self._round_robin += 1
                    value = encode_dead_letter(letter)
                    batches.add(self._append(dlq, partition, letter_key, value))
        finally:
            for lane in {b.lane for b in batches}:
                if not lane.pumping:
                    lane.pumping = True
                    self._spawn(self._pump(producer, lane))
        if not batches:
            return
        done, not_done = await asyncio.wait(
            [b.done for b in batches], timeout=self._options.publish_timeout_ms / 1000
        )
        if not_done:
            raise self._unavailable(
                f"Kafka did not acknowledge within {self._options.publish_timeout_ms} ms"
            )
        for fut in done:
            exc = fut.exception()
            if exc is not None:
                if isinstance(exc, PublishUnavailable):  # shared by requests: raise a copy
                    raise self._unavailable(exc.detail)
                raise self._unavailable(f"Kafka: {type(exc).__name__}: {exc}") from exc

    async def _partitions(self, producer: AIOKafkaProducer, topic: str) -> set[int]:
        """The topic's partitions from the metadata at hand; when the last refresh lacked
        them (a new topic, a leader election), wait for metadata up to the request timeout."""
        parts: set[int] | None = producer.client.cluster.partitions_for_topic(topic)
        if parts:
            return parts
        try:
            parts = await asyncio.wait_for(
                producer.partitions_for(topic), self._options.kafka_request_timeout_ms / 1000
            )
        except Exception as exc:  # timeout or an unknown topic: the request gets a 503
            raise self._unavailable(f"no partitions known for topic {topic}: {exc!r}") from exc
        if not parts:
            raise self._unavailable(f"no partitions known for topic {topic}")
        return parts

    def _append_scans(
        self, topic: str, partitions: Iterable[int], scans: Sequence[AnyScan], batches: set[_Batch]
    ) -> None:
        """Append the scans as frames, one (or more, when large) per partition, to the open
        batch of their partition; the batches touched go into `batches`."""
        keys = self._scan_keys
        keys.use(partitions)
        cached = keys.cached.get
        encode = encode_scan
        by_partition: dict[int, list[bytes]] = {}
        for scan in scans:
            _, partition = cached(scan.premises_id) or keys(scan.premises_id)
            values = by_partition.get(partition)
            if values is None:
                values = by_partition[partition] = []
            values.append(encode(scan))
        for partition, values in by_partition.items():
            for n, frame in raw_frames(values):
                batches.add(self._append(topic, partition, None, frame, n))

    def _append(
        self, topic: str, partition: int, key: bytes | None, value: bytes, events: int = 1
    ) -> _Batch:
        """Append one record of `events` scans or dead letters to the lane's open batch, or
        to a new one."""
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[(topic, partition)] = _Lane(topic, partition)
        queue = lane.queue
        batch = queue[-1] if queue else None
        if batch is None or batch.builder.append(timestamp=None, key=key, value=value) is None:
            producer = self._producer
            assert producer is not None
            batch = _Batch(producer.create_batch(), lane)
            if batch.builder.append(timestamp=None, key=key, value=value) is None:
                raise self._unavailable(f"a record of {len(value)} bytes does not fit in a batch")
            queue.append(batch)
            self._unsettled.add(batch)
        batch.count += events
        self._pending += events
        return batch

    async def _pump(self, producer: AIOKafkaProducer, lane: _Lane) -> None:
        """Hand the lane's batches to aiokafka, oldest first, until the queue is empty."""
        try:
            while lane.queue:
                batch = lane.queue.popleft()
                if not self._is_current(producer):
                    self._fail(batch, self._unavailable("Kafka producer restarted"))
                    continue
                batch.builder.close()
                try:
                    delivery = await producer.send_batch(
                        batch.builder, lane.topic, partition=lane.partition
                    )
                except KafkaTimeoutError as exc:
                    self._fail(batch, self._unavailable(f"Kafka send timed out: {exc}"))
                    continue
                except Exception as exc:  # fatal for this producer: reconnect
                    self._fail(batch, self._unavailable(f"Kafka: {type(exc).__name__}: {exc}"))
                    self._restart(producer, f"{type(exc).__name__}: {exc}")
                    continue
                delivery.add_done_callback(lambda fut, b=batch: self._settle(b, fut))
        finally:
            lane.pumping = False

    def _is_current(self, producer: AIOKafkaProducer) -> bool:
        return self._producer is producer

    def _settle(self, batch: _Batch, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled():
            self._fail(batch, self._unavailable("Kafka delivery cancelled"))
            return
        exc = delivery.exception()
        if exc is not None:
            self._fail(batch, exc)
            return
        self._pending -= batch.count
        self._unsettled.discard(batch)
        if not batch.done.done():
            batch.done.set_result(None)

    def _fail(self, batch: _Batch, exc: BaseException) -> None:
        if batch in self._unsettled:
            self._pending -= batch.count
            self._unsettled.discard(batch)
        if not batch.done.done():
            batch.done.set_exception(exc)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    try:
        await producer.stop()
    except Exception as exc:  # stopping a half-started producer may fail; nothing to do
        log.debug("producer stop: %s", exc)
