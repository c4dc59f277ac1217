"""Running the gateway: graceful stop (requests in flight finish, no new ones), SIGTERM,
and the Kafka publisher's behaviour with no broker at all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket

import aiohttp
import msgpack
import pytest
from pydantic import SecretStr

from ingest.codec import encode_msgpack
from ingest.contract import ScanEvent
from ingest.gateway.base import PublishUnavailable
from ingest.gateway.kafka_publish import KafkaBatchPublisher
from ingest.gateway.server import serve
from ingest.gateway.settings import GatewayOptions, GatewaySettings
from ingest.gateway.testing import FakePublisher
from ingest.kafka_settings import KafkaSettings

TOKEN = "tok-server-test"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
SCAN = {"event_id": "e1", "person_id": "p1", "premises_id": "NT-1", "scanned_at": 1_700_000_000_000}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings(**options: object) -> GatewaySettings:
    return GatewaySettings(
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{closed_port()}"),
        gateway=GatewayOptions(port=0, tokens=SecretStr(json.dumps({TOKEN: "gw-1"})), **options),
    )


async def started(
    stop: asyncio.Event | None, publisher: FakePublisher
) -> tuple[asyncio.Task[None], str]:
    ports: list[int] = []
    task = asyncio.create_task(
        serve(settings(), publisher=publisher, stop=stop, on_listening=ports.append)
    )
    for _ in range(200):
        if ports:
            break
        await asyncio.sleep(0.01)
    assert ports, "gateway did not start listening"
    return task, f"http://127.0.0.1:{ports[0]}"


def test_stop_finishes_requests_in_flight_and_refuses_new_ones() -> None:
    async def main() -> None:
        publisher = FakePublisher()
        publisher.hold = asyncio.Event()
        stop = asyncio.Event()
        task, url = await started(stop, publisher)
        async with aiohttp.ClientSession() as session:
            body = json.dumps({"scans": [SCAN]})
            in_flight = asyncio.create_task(
                session.post(f"{url}/v1/scans", data=body, headers=HEADERS)
            )
            while publisher.calls == 0:
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.sleep(0.2)
            async with aiohttp.ClientSession() as other:
                with pytest.raises(aiohttp.ClientConnectionError):
                    await other.get(f"{url}/healthz")
            assert not task.done() and not publisher.closed
            publisher.hold.set()
            resp = await in_flight
            assert resp.status == 200
            assert (await resp.json())["accepted"] == 1
        await asyncio.wait_for(task, 10)
        assert publisher.closed
        assert [e.event_id for e in publisher.scans] == ["e1"]

    asyncio.run(main())


def test_sigterm_stops_the_gateway() -> None:
    async def main() -> None:
        publisher = FakePublisher()
        task, url = await started(None, publisher)
        async with aiohttp.ClientSession() as session:
            assert (await session.get(f"{url}/healthz")).status == 200
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(task, 10)
        assert publisher.closed

    asyncio.run(main())


def test_bad_token_table_fails_before_listening() -> None:
    bad = settings().with_options(tokens=SecretStr("[1]"))
    with pytest.raises(ValueError, match="JSON object"):
        asyncio.run(serve(bad, publisher=FakePublisher()))


def test_kafka_publisher_without_a_broker_is_unavailable_and_not_ready() -> None:
    async def main() -> None:
        opts = GatewayOptions(kafka_request_timeout_ms=500, retry_after_s=4)
        publisher = KafkaBatchPublisher(KafkaSettings(bootstrap=f"127.0.0.1:{closed_port()}"), opts)
        await publisher.start()
        assert not await publisher.wait_connected(0.5)
        assert not await publisher.ready()
        event = ScanEvent("e1", "p1", "NT-1", 1_700_000_000_000)
        with pytest.raises(PublishUnavailable) as info:
            await publisher.publish([event], [])
        assert info.value.retry_after == 4
        assert "not reachable" in info.value.detail
        await publisher.close()
        with pytest.raises(PublishUnavailable, match="shutting down"):
            await publisher.publish([event], [])

    asyncio.run(main())


def test_wire_bytes_are_the_codecs() -> None:
    """The publisher packs with a reused Packer: the bytes must be encode_msgpack's."""
    event = ScanEvent("e1", "p1", "Chợ Đầm", 1_700_000_000_000, "checkout", "gw", 1_700_000_000_001)
    assert msgpack.Packer(use_bin_type=True).pack(event.to_wire()) == encode_msgpack(event)
