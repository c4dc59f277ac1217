"""The HTTP gateway against the real broker: batches land in scans.raw with the right
keys and partitions, invalid items in the dead-letter topic, refused requests publish
nothing, an unreachable broker is a 503, and the CLI stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
from gateway_kit import app_client
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from ingest.contract import now_ms
from ingest.deadletter import decode_dead_letter
from ingest.gateway.app import build_app
from ingest.gateway.base import PublishUnavailable
from ingest.gateway.kafka_publish import KafkaBatchPublisher
from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.settings import GatewayOptions
from ingest.kafka_settings import KafkaSettings
from ingest.partitioning import partition_for
from ingest.wire import split_raw_frame

TOKEN = "integration-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Record = tuple[int, bytes | None, bytes]


def scans(n: int, start: int = 0, **overrides: Any) -> list[dict[str, Any]]:
    now = now_ms()
    return [
        {
            "event_id": f"evt-{uuid.uuid4().hex[:12]}-{i}",
            "person_id": f"person-{i % 17}",
            "premises_id": f"NT-{i % 23:04d}" if i % 5 else f"Chợ-{i % 3}",
            "scanned_at": now - 60_000 - i,
            **overrides,
        }
        for i in range(start, start + n)
    ]


def consume(
    kafka: KafkaSettings, topic: str, expected: int, timeout_s: float = 8.0
) -> list[Record]:
    """Records of `topic` from the start, until `expected` arrived (or the time is up); a
    frame of scans (`ingest.wire.raw_frames`) counts as its scans, each with its key."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka.servers(),
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for msg in consumer:
                for value in split_raw_frame(msg.value) or [msg.value]:
                    records.append((msg.partition, msg.key, value))
                if len(records) >= expected:
                    break
    finally:
        consumer.close()
    return records


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def gateway(kafka: KafkaSettings, **options: Any) -> AsyncIterator[Any]:
    opts = GatewayOptions(tokens=SecretStr(json.dumps({TOKEN: "gw-int"})), **options)
    publisher = KafkaBatchPublisher(kafka, opts)
    await publisher.start()
    try:
        assert await publisher.wait_connected(15), publisher.last_error
        app = build_app(publisher, opts, GatewayMetrics(CollectorRegistry()))
        async with app_client(app) as client:
            yield client
    finally:
        await publisher.close()


def run(kafka: KafkaSettings, test: Callable[[Any], Any], **options: Any) -> None:
    async def main() -> None:
        async with gateway(kafka, **options) as client:
            await test(client)

    asyncio.run(main())


def test_json_and_gzip_msgpack_batches_land_keyed_by_premises(
    kafka_settings: KafkaSettings,
) -> None:
    json_batch, msgpack_batch = scans(120), scans(180, start=120)

    async def test(client: Any) -> None:
        resp = await client.post(
            "/v1/scans",
            json={"scans": json_batch},
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert (resp.status, await resp.json()) == (200, {"accepted": 120, "rejected": []})
        resp = await client.post(
            "/v1/scans",
            data=io.BytesIO(gzip.compress(msgpack.packb(msgpack_batch))),
            headers={**AUTH, "Content-Type": "application/msgpack", "Content-Encoding": "gzip"},
        )
        assert (resp.status, await resp.json()) == (200, {"accepted": 180, "rejected": []})
        assert (await client.get("/readyz")).status == 200

    run(kafka_settings, test)
    records = consume(kafka_settings, kafka_settings.raw, 300)
    assert len(records) == 300
    sent = {s["event_id"]: s for s in json_batch + msgpack_batch}
    partitions = list(range(kafka_settings.partitions))
    for partition, key, value in records:
        wire = msgpack.unpackb(value)
        original = sent.pop(wire["event_id"])
        assert key is None  # a frame: the scans of one partition
        assert original["premises_id"] == wire["premises_id"]
        assert partition == partition_for(wire["premises_id"].encode(), partitions)
        assert wire["gateway_id"] == "gw-int" and wire["received_at"] >= wire["scanned_at"]
        assert (wire["person_id"], wire["scanned_at"], wire["kind"]) == (
            original["person_id"], original["scanned_at"], "checkin",
        )  # fmt: skip
    assert sent == {}


def test_mixed_batch_only_invalid_items_are_rejected_and_dead_lettered(
    kafka_settings: KafkaSettings,
) -> None:
    batch: list[Any] = scans(10)
    batch[2]["kind"] = "bogus"
    batch[5] = {"event_id": "no-person", "premises_id": "NT-1", "scanned_at": now_ms()}
    batch[7] = ["not", "a", "map"]

    async def test(client: Any) -> None:
        resp = await client.post(
            "/v1/scans",
            data=msgpack.packb(batch),
            headers={**AUTH, "Content-Type": "application/msgpack"},
        )
        body = await resp.json()
        assert resp.status == 200 and body["accepted"] == 7
        assert [(r["index"], r["reason"]) for r in body["rejected"]] == [
            (2, "unknown_kind"), (5, "missing_field"), (7, "not_a_map"),
        ]  # fmt: skip

    run(kafka_settings, test)
    raw = consume(kafka_settings, kafka_settings.raw, 7)
    assert sorted(msgpack.unpackb(v)["event_id"] for _, _, v in raw) == sorted(
        s["event_id"] for i, s in enumerate(batch) if i not in (2, 5, 7)
    )
    letters = [decode_dead_letter(v) for _, _, v in consume(kafka_settings, kafka_settings.dlq, 3)]
    by_reason = {d.reason: d for d in letters}
    assert set(by_reason) == {"unknown_kind", "missing_field", "not_a_map"}
    assert {d.stage for d in letters} == {"gateway"}
    assert msgpack.unpackb(by_reason["unknown_kind"].raw) == batch[2]
    assert msgpack.unpackb(by_reason["not_a_map"].raw) == ["not", "a", "map"]
    assert by_reason["missing_field"].event_id == "no-person"


def test_refused_requests_publish_nothing(kafka_settings: KafkaSettings) -> None:
    async def test(client: Any) -> None:
        body = json.dumps({"scans": scans(3)}).encode()
        json_type = {"Content-Type": "application/json"}
        assert (await client.post("/v1/scans", data=body, headers=json_type)).status == 401
        wrong = {"Authorization": "Bearer nope", **json_type}
        assert (await client.post("/v1/scans", data=body, headers=wrong)).status == 401
        resp = await client.post("/v1/scans", data=b'{"scans": [', headers={**AUTH, **json_type})
        assert resp.status == 400 and (await resp.json())["error"] == "undecodable"
        big = json.dumps({"scans": scans(40)}).encode()
        assert (
            await client.post("/v1/scans", data=big, headers={**AUTH, **json_type})
        ).status == 413
        many = json.dumps({"scans": scans(6)}).encode()
        resp = await client.post("/v1/scans", data=many, headers={**AUTH, **json_type})
        assert resp.status == 413 and (await resp.json())["error"] == "batch_too_large"
        # one accepted scan as a marker: it must be the only record in the topic
        marker = json.dumps({"scans": scans(1)}).encode()
        assert (
            await client.post("/v1/scans", data=marker, headers={**AUTH, **json_type})
        ).status == 200

    run(kafka_settings, test, max_body_bytes=4096, max_batch=5)
    records = consume(kafka_settings, kafka_settings.raw, 2, timeout_s=4)
    assert len(records) == 1


def test_unreachable_kafka_is_503_with_retry_after(kafka_settings: KafkaSettings) -> None:
    nowhere = kafka_settings.model_copy(update={"bootstrap": f"127.0.0.1:{closed_port()}"})

    async def main() -> None:
        opts = GatewayOptions(
            tokens=SecretStr(json.dumps({TOKEN: "gw"})),
            kafka_request_timeout_ms=500,
            retry_after_s=5,
        )
        publisher = KafkaBatchPublisher(nowhere, opts)
        await publisher.start()
        try:
            app = build_app(publisher, opts, GatewayMetrics(CollectorRegistry()))
            async with app_client(app) as client:
                resp = await client.post(
                    "/v1/scans",
                    json={"scans": scans(2)},
                    headers={**AUTH, "Content-Type": "application/json"},
                )
                assert resp.status == 503
                assert resp.headers["Retry-After"] == "5"
                body = await resp.json()
                assert body["error"] == "unavailable" and "accepted" not in body
                assert (await client.get("/readyz")).status == 503
                assert (await client.get("/healthz")).status == 200
        finally:
            await publisher.close()

    asyncio.run(main())


def test_full_buffer_refuses_more_until_kafka_acknowledges(kafka_settings: KafkaSettings) -> None:
    async def main() -> None:
        from ingest.contract import parse_scan

        opts = GatewayOptions(max_pending_scans=60)
        publisher = KafkaBatchPublisher(kafka_settings, opts)
        await publisher.start()
        try:
            assert await publisher.wait_connected(15)
            first = [parse_scan(s, gateway_id="gw") for s in scans(50)]
            second = [parse_scan(s, gateway_id="gw") for s in scans(50, start=50)]
            results = await asyncio.gather(
                publisher.publish(first, []), publisher.publish(second, []), return_exceptions=True
            )
            assert results[0] is None
            assert isinstance(results[1], PublishUnavailable) and "buffer full" in results[1].detail
            assert publisher.pending == 0
            await publisher.publish(second, [])  # room again once acknowledged
            await publisher.publish([], [])  # nothing to wait for
        finally:
            await publisher.close()

    asyncio.run(main())
    assert len(consume(kafka_settings, kafka_settings.raw, 100)) == 100


def test_cli_gateway_serves_and_stops_on_sigterm(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: "gw-cli"}))
    port = closed_port()
    env = {
        **os.environ,
        "SCANTRACE_KAFKA__BOOTSTRAP": kafka_settings.bootstrap,
        "SCANTRACE_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scantrace.cli",
            "gateway",
            "--port",
            str(port),
            "--tokens-file",
            str(tokens),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 8
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "gateway not ready"
                time.sleep(0.1)
        request = urllib.request.Request(
            f"{url}/v1/scans",
            data=msgpack.packb(scans(25)),
            headers={**AUTH, "Content-Type": "application/msgpack"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert json.loads(resp.read())["accepted"] == 25
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert "gateway stopped" in output
    assert TOKEN not in output
    assert len(consume(kafka_settings, kafka_settings.raw, 25)) == 25


@pytest.mark.parametrize(
    "flag", ["--host", "--port", "--tokens-file", "--metrics-port", "--metrics-host"]
)
def test_cli_help_names_env_fallbacks(flag: str) -> None:
    from click.testing import CliRunner

    from scantrace.commands.gateway import gateway as command

    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0
    line = next(part for part in result.output.split("\n  -") if part.strip().startswith(flag[1:]))
    assert "SCANTRACE_GATEWAY__" in " ".join(line.split())
