"""Fault tests of the sink as a process: its ClickHouse stopped for 30 s mid-stream and
restarted; the sink killed with SIGKILL mid-batch and restarted. Afterwards ClickHouse
holds exactly the expected rows: nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest
from kafka import KafkaProducer
from pydantic import SecretStr
from sink_kit import enriched

from ingest.kafka_settings import KafkaSettings
from scantrace.services import clickhouse_local
from scantrace.services.process import stop, wait_until
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.migrations import migrate

NOW = int(time.time() * 1000)

PERSON_HASH_KEY = "sink-faults-person-hash-key"


class OwnClickHouse:
    """A ClickHouse server of this test's own, stopped and started again on its ports."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.record: dict[str, object] = {}

    @property
    def settings(self) -> ClickHouseSettings:
        return ClickHouseSettings(
            url=f"clickhouse://127.0.0.1:{self.record['native_port']}/faults",
            person_hash_key=SecretStr(PERSON_HASH_KEY),
        )

    def start(self) -> None:
        old = self.record
        ports = (int(old["native_port"]), int(old["http_port"])) if old else None  # type: ignore[call-overload]
        self.record = clickhouse_local.start(self.home, ports)
        wait_until(
            self.answers,
            pid=int(self.record["pid"]),  # type: ignore[call-overload]
            log=Path(str(self.record["log"])),
            what="ClickHouse",
            timeout=60,
        )

    def answers(self) -> bool:
        client = connect(self.settings, database="default")
        try:
            return bool(client.execute("SELECT 1") == [(1,)])
        finally:
            client.disconnect()

    def stop(self) -> None:
        stop(int(self.record["pid"]), "scantrace.services.chserver")  # type: ignore[call-overload]


@pytest.fixture
def own_clickhouse(tmp_path: Path) -> Iterator[OwnClickHouse]:
    server = OwnClickHouse(tmp_path / "ch")
    server.start()
    migrate(server.settings)
    try:
        yield server
    finally:
        server.stop()


def _produce(kafka: KafkaSettings, first: int, n: int) -> set[str]:
    producer = KafkaProducer(bootstrap_servers=kafka.servers(), linger_ms=20, batch_size=256 * 1024)
    ids = set()
    try:
        # As the worker writes them: frames (here of 25 scans of one premises), and every
        # seventh group as lone maps, as earlier workers wrote.
        for start in range(first, first + n, 25):
            pid = f"NT-{(start // 25) % 97:03d}"
            values = []
            for i in range(start, min(start + 25, first + n)):
                eid = f"f{i:07d}"
                ids.add(eid)
                t = NOW - (i % 1440) * 60_000
                values.append(enriched(eid, f"u{i % 501}", pid, t, received_at=NOW))
            if (start // 25) % 7 == 0:
                for value in values:
                    producer.send(kafka.enriched, key=pid.encode(), value=value)
            else:
                frame = msgpack.packb([msgpack.unpackb(v) for v in values])
                producer.send(kafka.enriched, key=pid.encode(), value=frame)
        producer.flush(timeout=60)
    finally:
        producer.close()
    return ids


def _stored(server: OwnClickHouse) -> int:
    client = connect(server.settings)
    try:
        return int(client.execute("SELECT uniqExact(event_id) FROM scans")[0][0])
    finally:
        client.disconnect()


def _until(check: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out: {what}\n{log.read_text(errors='replace')[-3000:]}")


def test_clickhouse_down_30s_and_sink_sigkill_lose_nothing_and_double_nothing(
    kafka_settings: KafkaSettings, own_clickhouse: OwnClickHouse, tmp_path: Path
) -> None:
    log = tmp_path / "sink.log"
    env = {
        **os.environ,
        "SCANTRACE_KAFKA__BOOTSTRAP": kafka_settings.bootstrap,
        "SCANTRACE_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "SCANTRACE_CLICKHOUSE__URL": own_clickhouse.settings.url,
        "SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY": PERSON_HASH_KEY,
        "SCANTRACE_SINK__GROUP_ID": f"sink-faults-{uuid.uuid4().hex[:8]}",
        "SCANTRACE_SINK__BATCH_SECONDS": "0.5",
        "SCANTRACE_SINK__RETRY_MAX_SECONDS": "2",
    }

    def sink() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "scantrace.cli", "sink", "--batch-rows", "5000"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    expected = _produce(kafka_settings, 0, 60_000)
    proc = sink()
    try:
        # 1. SIGKILL mid-stream: some batches stored, others in flight or not started.
        _until(lambda: _stored(own_clickhouse) >= 5_000, 120, "the first batches", log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert _stored(own_clickhouse) < len(expected), "killed too late to test anything"
        proc = sink()
        _until(lambda: _stored(own_clickhouse) >= len(expected), 180, "all after restart", log)

        # 2. ClickHouse stopped for 30 s while scans keep coming; the same sink waits.
        own_clickhouse.stop()
        expected |= _produce(kafka_settings, 60_000, 20_000)
        time.sleep(30)
        assert proc.poll() is None, "the sink must wait for ClickHouse, not exit"
        own_clickhouse.start()
        _until(lambda: _stored(own_clickhouse) >= len(expected), 180, "all after the outage", log)
        time.sleep(2)  # a late double would show up now
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)

    client = connect(own_clickhouse.settings)
    try:
        ids = {r[0] for r in client.execute("SELECT DISTINCT event_id FROM scans")}
        client.execute("OPTIMIZE TABLE scans FINAL")
        rows = int(client.execute("SELECT count() FROM scans")[0][0])
    finally:
        client.disconnect()
    assert ids == expected  # nothing lost, nothing foreign
    assert rows == len(expected)  # nothing twice once parts are merged
