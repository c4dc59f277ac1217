"""Helpers for running the real worker against a real broker (integration tests and the
benchmarks, which import it as `tests.worker_kit`): publish keyed records fast, read a
topic back, and drive a `scantrace worker` subprocess (start, wait on its /metrics, stop,
kill)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ingest.batch_send import send_in_batches
from ingest.kafka_settings import KafkaSettings
from ingest.partitioning import partition_for
from processors.records import frame_rows
from scantrace.services.process import free_port


@dataclass(frozen=True, slots=True)
class Record:
    """A record read back from a topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def publish(
    kafka: KafkaSettings, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]
) -> int:
    """Write (key, value) records, keyed records on Kafka's default partition for the key
    (as the gateway and the premises import do), unkeyed ones on partition 0; in order."""
    return asyncio.run(_publish(kafka, topic, list(records)))


async def _publish(
    kafka: KafkaSettings, topic: str, records: Sequence[tuple[bytes | None, bytes | None]]
) -> int:
    producer = AIOKafkaProducer(
        **kafka.aiokafka_config(), acks="all", max_batch_size=512 * 1024, linger_ms=5
    )
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        for key, value in records:
            p = partition_for(key, partitions) if key is not None else partitions[0]
            by_partition.setdefault((topic, p), []).append((key, value))
        await asyncio.gather(*await send_in_batches(producer, by_partition))
    finally:
        await producer.stop()
    return len(records)


def end_offsets(kafka: KafkaSettings, topic: str, *, committed_only: bool = False) -> int:
    """Records in a topic (sum of its partitions' end offsets; with `committed_only`, the
    last stable offsets, i.e. up to the first open transaction)."""
    return asyncio.run(_end_offsets(kafka, topic, committed_only))


async def _end_offsets(kafka: KafkaSettings, topic: str, committed_only: bool) -> int:
    consumer = AIOKafkaConsumer(
        **kafka.aiokafka_config(),
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


class RowWatcher:
    """Counts the scans in `scans.enriched` (frames hold many) by reading it as it grows, on
    one connection (kafka-python); with `committed_only`, what read_committed sees."""

    def __init__(self, kafka: KafkaSettings, topic: str, *, committed_only: bool = False):
        from kafka import KafkaConsumer
        from kafka import TopicPartition as KTopicPartition

        self._consumer = KafkaConsumer(
            **kafka.kafka_python_config(),
            isolation_level="read_committed" if committed_only else "read_uncommitted",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            check_crcs=False,  # kafka-python's CRC is pure Python: the bench's CPU is shared
        )
        parts = self._consumer.partitions_for_topic(topic) or set()
        self._consumer.assign([KTopicPartition(topic, p) for p in sorted(parts)])
        self.rows = 0

    def size(self) -> int:
        """The scans read so far, after one poll for more."""
        for records in self._consumer.poll(timeout_ms=100, max_records=100_000).values():
            self.rows += sum(frame_rows(r.value) for r in records)
        return self.rows

    def close(self) -> None:
        self._consumer.close()


def read_topic(
    kafka: KafkaSettings, topic: str, *, read_committed: bool = False, timeout_s: float = 30.0
) -> list[Record]:
    """Every record of a topic now (up to its end offsets), by partition and offset. With
    `read_committed`, records of open or aborted transactions are left out."""
    return asyncio.run(_read_topic(kafka, topic, read_committed, timeout_s))


async def _read_topic(
    kafka: KafkaSettings, topic: str, read_committed: bool, timeout_s: float
) -> list[Record]:
    consumer = AIOKafkaConsumer(
        **kafka.aiokafka_config(),
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while True:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end in {timeout_s} s")
            batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for tp, msgs in batches.items():
                out.extend(Record(tp.partition, m.offset, m.key, m.value) for m in msgs)
        out.sort(key=lambda r: (r.partition, r.offset))
        return out
    finally:
        await consumer.stop()


def worker_env(kafka: KafkaSettings, data_dir: Path, **options: Any) -> dict[str, str]:
    """The environment of a worker subprocess on `kafka`'s topics: `options` are worker
    options (`metrics_port=...`) or, prefixed `core__`, core settings."""
    env = dict(os.environ)
    env.update(
        {
            "SCANTRACE_KAFKA__BOOTSTRAP": kafka.bootstrap,
            "SCANTRACE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
            "SCANTRACE_KAFKA__PARTITIONS": str(kafka.partitions),
            "SCANTRACE_KAFKA__REPLICATION_FACTOR": str(kafka.replication_factor),
            "SCANTRACE_WORKER__DATA_DIR": str(data_dir),
        }
    )
    for name, value in options.items():
        if name.startswith("core__"):
            env[f"SCANTRACE_CORE__{name[6:].upper()}"] = str(value)
        else:
            env[f"SCANTRACE_WORKER__{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """A `python -m scantrace.cli worker` subprocess (or `python ARGV...` that runs it) with
    /metrics on a free port."""

    def __init__(
        self,
        kafka: KafkaSettings,
        data_dir: Path,
        *,
        log: IO[bytes] | None = None,
        argv: Sequence[str] = ("-m", "scantrace.cli", "worker"),
        **options: Any,
    ) -> None:
        self.argv = list(argv)
        options.setdefault("metrics_host", "127.0.0.1")
        options.setdefault("metrics_port", free_port())
        self.port = int(options["metrics_port"])
        self.env = worker_env(kafka, data_dir, **options)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, *self.argv],
            env=self.env,
            stdout=self.log if self.log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self.log is not None else subprocess.DEVNULL,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> dict[str, float]:
        """The scantrace_ samples of /metrics: name{labels} -> value ({} if unreachable)."""
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as resp:  # loopback
                text = resp.read().decode()
        except OSError:
            return {}
        samples = {}
        for line in text.splitlines():
            if line.startswith("scantrace_"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def wait_for(
        self,
        predicate: Callable[[Mapping[str, float]], bool],
        timeout_s: float,
        what: str = "condition",
    ) -> dict[str, float]:
        """Poll /metrics until `predicate` holds; fails if the worker exits first."""
        deadline = time.monotonic() + timeout_s
        samples: dict[str, float] = {}
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"worker exited ({code}) while waiting for {what}")
            samples = self.metrics()
            if samples and predicate(samples):
                return samples
            time.sleep(0.2)
        raise TimeoutError(f"worker: no {what} within {timeout_s} s; last metrics {samples}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not stopped in time; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Workers:
    """Starts workers with a log file each; stops every one at teardown (by PID)."""

    def __init__(self, kafka: KafkaSettings, tmp_path: Path) -> None:
        self.kafka = kafka
        self.tmp_path = tmp_path
        self.started: list[tuple[WorkerProcess, Path]] = []
        self.files: list[IO[bytes]] = []

    def start(self, data: str = "data", **options: Any) -> WorkerProcess:
        log_path = self.tmp_path / f"worker-{len(self.started)}.log"
        log = log_path.open("wb")
        self.files.append(log)
        worker = WorkerProcess(self.kafka, self.tmp_path / data, log=log, **options)
        self.started.append((worker, log_path))
        return worker.start()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}"
            for _, path in self.started
        )

    def stop_all(self) -> None:
        for worker, _ in self.started:
            worker.stop(timeout_s=20)
        for log in self.files:
            log.close()


def total(samples: Mapping[str, float], name: str) -> float:
    """Sum of a metric's samples over all its labels (`name` without labels)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))
