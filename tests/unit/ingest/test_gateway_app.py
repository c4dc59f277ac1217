"""The HTTP gateway app above a fake publisher: auth, body formats, limits, rejections,
dead letters, 503, health and metrics."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import pytest
from aiohttp.test_utils import TestClient, TestServer
from gateway_kit import app_client
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from ingest.codec import encode_msgpack
from ingest.contract import DEFAULT_MAX_SKEW_MS
from ingest.gateway.app import ReadyCache, build_app, build_metrics_app, validate_batch
from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.settings import GatewayOptions
from ingest.gateway.testing import FakePublisher
from ingest.wire import WireScan

NOW = 1_700_000_000_000
TOKEN = "s3cret-token-AAAA"
OTHER_TOKEN = "other-token-BBBB"
TOKENS = {TOKEN: "gw-hanoi-1", OTHER_TOKEN: "gw-ninhthuan-2"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def scan(i: int = 0, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": f"evt-{i}",
        "person_id": f"person-{i}",
        "premises_id": f"NT-{i % 7:04d}",
        "scanned_at": NOW - 60_000,
        "kind": "checkin",
    }
    base.update(overrides)
    return base


class Env:
    def __init__(self, client: Any, publisher: FakePublisher, registry: CollectorRegistry) -> None:
        self.client = client
        self.publisher = publisher
        self.registry = registry

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def post(
        self,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], Any]:
        hdrs = {**AUTH, "Content-Type": content_type, **(headers or {})}
        resp = await self.client.post("/v1/scans", data=io.BytesIO(body), headers=hdrs)
        payload = await resp.json()
        return resp.status, payload, resp.headers


def run(
    test: Callable[[Env], Awaitable[None]],
    *,
    publisher: FakePublisher | None = None,
    **options: Any,
) -> None:
    async def main() -> None:
        pub = publisher or FakePublisher()
        registry = CollectorRegistry()
        opts = GatewayOptions(tokens=SecretStr(json.dumps(TOKENS)), **options)
        app = build_app(pub, opts, GatewayMetrics(registry), clock=lambda: NOW)
        async with app_client(app) as client:
            await test(Env(client, pub, registry))

    asyncio.run(main())


def as_json(scans: list[dict[str, Any]]) -> bytes:
    return json.dumps({"scans": scans}).encode()


# -- accepted batches ----------------------------------------------------------------


def test_json_batch_is_published_with_gateway_and_receipt_time() -> None:
    async def test(env: Env) -> None:
        status, body, _ = await env.post(as_json([scan(i) for i in range(3)]))
        assert status == 200
        assert body == {"accepted": 3, "rejected": []}
        assert [e.event_id for e in env.publisher.scans] == ["evt-0", "evt-1", "evt-2"]
        assert {e.gateway_id for e in env.publisher.scans} == {"gw-hanoi-1"}
        assert {e.received_at for e in env.publisher.scans} == {NOW}
        assert env.publisher.dead_letters == []

    run(test)


def test_caller_cannot_forge_gateway_id_or_received_at() -> None:
    async def test(env: Env) -> None:
        forged = scan(1, gateway_id="gw-evil", received_at=NOW - 10**9)
        status, body, _ = await env.post(as_json([forged]))
        assert (status, body["accepted"]) == (200, 1)
        (event,) = env.publisher.scans
        assert (event.gateway_id, event.received_at) == ("gw-hanoi-1", NOW)

    run(test)


def test_each_token_maps_to_its_gateway() -> None:
    async def test(env: Env) -> None:
        status, _, _ = await env.post(
            as_json([scan()]), headers={"Authorization": f"Bearer {OTHER_TOKEN}"}
        )
        assert status == 200
        assert env.publisher.scans[0].gateway_id == "gw-ninhthuan-2"

    run(test)


@pytest.mark.parametrize("shape", ["array", "map"])
@pytest.mark.parametrize("gzipped", [False, True])
def test_msgpack_batches(shape: str, gzipped: bool) -> None:
    scans = [scan(i) for i in range(5)]
    body = msgpack.packb(scans if shape == "array" else {"scans": scans})
    headers = {}
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"

    async def test(env: Env) -> None:
        status, payload, _ = await env.post(body, "application/msgpack", headers)
        assert (status, payload) == (200, {"accepted": 5, "rejected": []})
        assert [e.event_id for e in env.publisher.scans] == [s["event_id"] for s in scans]

    run(test)


def test_gzip_json_and_concatenated_gzip_members() -> None:
    first, second = as_json([scan(1)]), b""
    body = gzip.compress(first[:10]) + gzip.compress(first[10:] + second)

    async def test(env: Env) -> None:
        status, payload, _ = await env.post(body, headers={"Content-Encoding": "gzip"})
        assert (status, payload["accepted"]) == (200, 1)

    run(test)


def test_empty_batch_publishes_nothing() -> None:
    async def test(env: Env) -> None:
        status, payload, _ = await env.post(as_json([]))
        assert (status, payload) == (200, {"accepted": 0, "rejected": []})
        assert env.publisher.calls == 0

    run(test)


# -- the fast path and the item-by-item path -----------------------------------------


def slow_path_records(
    items: list[Any], gateway_id: str = "gw-hanoi-1"
) -> list[tuple[bytes, bytes]]:
    """What the item-by-item path publishes for `items`: keys and values on the raw topic."""
    events, _, _ = validate_batch(
        items, gateway_id=gateway_id, received_at=NOW, max_skew_ms=DEFAULT_MAX_SKEW_MS
    )
    return [(e.premises_id.encode(), encode_msgpack(e)) for e in events]


FORMS = [
    ("application/json", lambda scans: json.dumps({"scans": scans}).encode()),
    ("application/msgpack", msgpack.packb),
    ("application/msgpack", lambda scans: msgpack.packb({"scans": scans})),
]


@pytest.mark.parametrize(("content_type", "encode"), FORMS)
def test_valid_batch_takes_the_fast_path_and_publishes_the_slow_paths_bytes(
    content_type: str, encode: Callable[[list[Any]], bytes]
) -> None:
    items = [scan(i, kind="checkout" if i % 4 else "checkin") for i in range(50)]
    items[7] = scan(7, event_id="Đà Lạt-7", scanned_at=NOW + 60_000)  # within the skew

    async def test(env: Env) -> None:
        status, payload, _ = await env.post(encode(items), content_type)
        assert (status, payload) == (200, {"accepted": 50, "rejected": []})
        assert all(isinstance(s, WireScan) for s in env.publisher.scans)  # the fast path
        assert env.publisher.records == slow_path_records(items)
        assert env.publisher.dead_letters == []
        assert env.sample("scantrace_gateway_scans_accepted_total") == 50
        assert env.sample("scantrace_gateway_batch_size_scans_count") == 1

    run(test)


@pytest.mark.parametrize(("content_type", "encode"), FORMS)
def test_forged_gateway_id_and_received_at_are_overwritten_on_the_fast_path(
    content_type: str, encode: Callable[[list[Any]], bytes]
) -> None:
    items = [scan(1, gateway_id="gw-evil", received_at=NOW - 10**9), scan(2, gateway_id="")]

    async def test(env: Env) -> None:
        status, _, _ = await env.post(encode(items), content_type)
        assert status == 200
        assert all(isinstance(s, WireScan) for s in env.publisher.scans)
        assert [(s.gateway_id, s.received_at) for s in env.publisher.scans] == [
            ("gw-hanoi-1", NOW),
            ("gw-hanoi-1", NOW),
        ]
        assert env.publisher.records == slow_path_records(items)
        assert b"gw-evil" not in b"".join(v for _, v in env.publisher.records)

    run(test)


@pytest.mark.parametrize(("content_type", "encode"), FORMS)
def test_one_bad_item_goes_the_item_by_item_way_with_the_same_answer(
    content_type: str, encode: Callable[[list[Any]], bytes]
) -> None:
    good = [scan(i) for i in range(5)]
    items = [*good[:3], scan(9, kind="bogus"), *good[3:]]

    async def test(env: Env) -> None:
        status, payload, _ = await env.post(encode(items), content_type)
        assert status == 200
        assert payload["accepted"] == 5
        assert [(r["index"], r["reason"], r["field"]) for r in payload["rejected"]] == [
            (3, "unknown_kind", "kind")
        ]
        assert not any(isinstance(s, WireScan) for s in env.publisher.scans)  # the slow path
        assert [d.event_id for d in env.publisher.dead_letters] == ["evt-9"]
        # the valid ones are published exactly as a batch of only them would be (fast path)
        slow_records = list(env.publisher.records)
        status, _, _ = await env.post(encode(good), content_type)
        assert status == 200
        assert isinstance(env.publisher.scans[-1], WireScan)
        assert env.publisher.records[5:] == slow_records == slow_path_records(good)

    run(test)


@pytest.mark.parametrize("one_bad", [False, True])
def test_batch_limit_is_413_on_both_paths(one_bad: bool) -> None:
    items = [scan(i) for i in range(11)]
    if one_bad:
        items[4] = scan(4, kind="bogus")

    async def test(env: Env) -> None:
        status, payload, _ = await env.post(msgpack.packb(items), "application/msgpack")
        assert (status, payload) == (
            413,
            {"error": "batch_too_large", "detail": "11 scans > 10 per request"},
        )
        assert env.publisher.calls == 0

    run(test, max_batch=10)


# -- rejections and dead letters -----------------------------------------------------


def test_mixed_batch_rejects_only_the_invalid_items_and_dead_letters_them() -> None:
    bad_kind = scan(1, kind="bogus")
    future = scan(3, scanned_at=NOW + 3_600_000)
    items: list[Any] = [scan(0), bad_kind, scan(2), future, "not a map", scan(5)]
    del items[5]["person_id"]

    async def test(env: Env) -> None:
        status, payload, _ = await env.post(as_json(items))
        assert status == 200
        assert payload["accepted"] == 2
        assert [(r["index"], r["reason"], r["field"]) for r in payload["rejected"]] == [
            (1, "unknown_kind", "kind"),
            (3, "future_timestamp", "scanned_at"),
            (4, "not_a_map", None),
            (5, "missing_field", "person_id"),
        ]
        assert all("detail" in r for r in payload["rejected"])
        assert [e.event_id for e in env.publisher.scans] == ["evt-0", "evt-2"]
        letters = env.publisher.dead_letters
        assert [d.reason for d in letters] == [
            "unknown_kind", "future_timestamp", "not_a_map", "missing_field",
        ]  # fmt: skip
        assert {d.stage for d in letters} == {"gateway"}
        assert {d.at for d in letters} == {NOW}
        assert msgpack.unpackb(letters[0].raw) == bad_kind
        assert msgpack.unpackb(letters[2].raw) == "not a map"
        assert [d.event_id for d in letters] == ["evt-1", "evt-3", "", "evt-5"]
        assert "gw-hanoi-1" in letters[0].detail
        assert env.sample("scantrace_gateway_scans_rejected_total", reason="unknown_kind") == 1
        assert env.sample("scantrace_gateway_scans_accepted_total") == 2

    run(test)


def test_all_invalid_still_publishes_the_dead_letters() -> None:
    async def test(env: Env) -> None:
        status, payload, _ = await env.post(as_json([scan(0, kind="x"), scan(1, kind="y")]))
        assert (status, payload["accepted"], len(payload["rejected"])) == (200, 0, 2)
        assert env.publisher.calls == 1
        assert len(env.publisher.dead_letters) == 2

    run(test)


def test_huge_rejected_item_is_cut_in_its_dead_letter() -> None:
    async def test(env: Env) -> None:
        status, payload, _ = await env.post(as_json([scan(0, person_id="x" * 200_000)]))
        assert (status, payload["rejected"][0]["reason"]) == (200, "id_too_long")
        (letter,) = env.publisher.dead_letters
        assert len(letter.raw) == 64 * 1024
        assert "raw cut from" in letter.detail

    run(test)


def test_json_integer_beyond_msgpack_range_is_dead_lettered_as_repr() -> None:
    async def test(env: Env) -> None:
        status, payload, _ = await env.post(as_json([scan(0, scanned_at=2**70)]))
        assert (status, payload["rejected"][0]["reason"]) == (200, "bad_timestamp")
        assert b"1180591620717411303424" in env.publisher.dead_letters[0].raw

    run(test)


# -- refused requests ----------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer ünïcode"],
)
def test_missing_or_wrong_token_is_401_and_publishes_nothing(authorization: str | None) -> None:
    async def test(env: Env) -> None:
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        resp = await env.client.post("/v1/scans", data=as_json([scan()]), headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert (await resp.json())["error"] == "unauthorized"
        assert env.publisher.calls == 0
        assert env.sample("scantrace_gateway_requests_total", status="401") == 1

    run(test)


def test_no_tokens_configured_refuses_everyone() -> None:
    async def main() -> None:
        pub = FakePublisher()
        app = build_app(pub, GatewayOptions(), GatewayMetrics(CollectorRegistry()))
        async with app_client(app) as client:
            resp = await client.post("/v1/scans", data=as_json([scan()]), headers=AUTH)
            assert resp.status == 401

    asyncio.run(main())


def test_tokens_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def test(env: Env) -> None:
        await env.post(as_json([scan()]))
        await env.post(as_json([scan()]), headers={"Authorization": "Bearer guessed-token"})

    run(test, publisher=FakePublisher(fail="kafka down"))
    assert TOKEN not in caplog.text and "guessed-token" not in caplog.text


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "code"),
    [
        (b"{not json", "application/json", {}, "undecodable"),
        (b"\xc1", "application/msgpack", {}, "undecodable"),
        (b"[]", "application/json", {}, "not_a_batch"),
        (b'{"scans": {}}', "application/json", {}, "not_a_batch"),
        (b'{"scans": [], "extra": 1}', "application/json", {}, "not_a_batch"),
        (msgpack.packb(7), "application/msgpack", {}, "not_a_batch"),
        (b"definitely not gzip", "application/json", {"Content-Encoding": "gzip"}, "bad_gzip"),
        (
            gzip.compress(b'{"scans": []}')[:-6],
            "application/json",
            {"Content-Encoding": "gzip"},
            "bad_gzip",
        ),
        (b'{"scans": [' * 100_000, "application/json", {}, "undecodable"),
    ],
)
def test_malformed_body_is_400_with_a_reason(
    body: bytes, content_type: str, headers: dict[str, str], code: str
) -> None:
    async def test(env: Env) -> None:
        status, payload, _ = await env.post(body, content_type, headers)
        assert status == 400
        assert payload["error"] == code and payload["detail"]
        assert env.publisher.calls == 0

    run(test)


def test_unsupported_content_type_or_encoding_is_415() -> None:
    async def test(env: Env) -> None:
        status, payload, _ = await env.post(b"x", "text/plain")
        assert (status, payload["error"]) == (415, "unsupported_media_type")
        status, payload, _ = await env.post(as_json([]), headers={"Content-Encoding": "br"})
        assert (status, payload["error"]) == (415, "unsupported_encoding")

    run(test)


def test_body_over_the_limit_is_413() -> None:
    async def test(env: Env) -> None:
        status, payload, _ = await env.post(as_json([scan(i) for i in range(100)]))
        assert (status, payload["error"]) == (413, "body_too_large")

        async def chunks() -> Any:  # no Content-Length: the limit holds while reading
            for _ in range(10):
                yield b" " * 1000

        resp = await env.client.post(
            "/v1/scans", data=chunks(), headers={**AUTH, "Content-Type": "application/json"}
        )
        assert resp.status == 413
        assert env.publisher.calls == 0

    run(test, max_body_bytes=4096)


def test_gzip_bomb_is_413_without_inflating_it() -> None:
    bomb = gzip.compress(b'{"scans": [' + b" " * 50_000_000 + b"]}")
    assert len(bomb) < 100_000

    async def test(env: Env) -> None:
        status, payload, _ = await env.post(bomb, headers={"Content-Encoding": "gzip"})
        assert (status, payload["error"]) == (413, "body_too_large")

    run(test, max_body_bytes=1_000_000)


def test_too_many_scans_is_413() -> None:
    async def test(env: Env) -> None:
        status, payload, _ = await env.post(as_json([scan(i) for i in range(11)]))
        assert (status, payload["error"]) == (413, "batch_too_large")
        status, _, _ = await env.post(as_json([scan(i) for i in range(10)]))
        assert status == 200

    run(test, max_batch=10)


def test_publisher_unavailable_is_503_with_retry_after_and_no_claim() -> None:
    async def test(env: Env) -> None:
        status, payload, headers = await env.post(as_json([scan(1), scan(2, kind="x")]))
        assert status == 503
        assert headers["Retry-After"] == "3"
        assert payload == {"error": "unavailable", "detail": "kafka down"}
        assert env.sample("scantrace_gateway_scans_accepted_total") == 0
        assert env.sample("scantrace_gateway_requests_total", status="503") == 1

    run(test, publisher=FakePublisher(fail="kafka down"))


# -- health and metrics --------------------------------------------------------------


@pytest.mark.parametrize(("is_ready", "status"), [(True, 200), (False, 503)])
def test_health_and_readiness(is_ready: bool, status: int) -> None:
    async def test(env: Env) -> None:
        assert (await env.client.get("/healthz")).status == 200
        assert (await env.client.get("/readyz")).status == status

    run(test, publisher=FakePublisher(is_ready=is_ready))


def test_metrics_exposition() -> None:
    async def test(env: Env) -> None:
        await env.post(as_json([scan(i) for i in range(4)] + [scan(9, kind="?")]))
        await env.post(b"{", "application/json")
        resp = await env.client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
        for name in (
            "scantrace_gateway_requests_total",
            "scantrace_gateway_scans_accepted_total",
            "scantrace_gateway_scans_rejected_total",
            "scantrace_gateway_publish_latency_seconds_bucket",
            "scantrace_gateway_batch_size_scans_bucket",
        ):
            assert name in text
        assert "NT-000" not in text and "person-" not in text and "gw-hanoi" not in text
        assert env.sample("scantrace_gateway_requests_total", status="200") == 1
        assert env.sample("scantrace_gateway_requests_total", status="400") == 1
        assert env.sample("scantrace_gateway_scans_accepted_total") == 4
        assert env.sample("scantrace_gateway_scans_rejected_total", reason="unknown_kind") == 1
        assert env.sample("scantrace_gateway_batch_size_scans_count") == 1
        assert env.sample("scantrace_gateway_batch_size_scans_sum") == 5
        assert env.sample("scantrace_gateway_publish_latency_seconds_count") == 1
        assert env.sample("scantrace_gateway_requests_in_flight") == 0

    run(test)


# -- limits: in flight, timeouts, refusals counted -----------------------------------


async def _post_task(env: Env, body: bytes) -> asyncio.Task[Any]:
    return asyncio.create_task(
        env.client.post(
            "/v1/scans", data=body, headers={**AUTH, "Content-Type": "application/json"}
        )
    )


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 5 s")


def test_requests_in_flight_beyond_the_limit_are_503_with_retry_after() -> None:
    publisher = FakePublisher()
    publisher.hold = asyncio.Event()

    async def test(env: Env) -> None:
        held = [await _post_task(env, as_json([scan(i)])) for i in range(2)]
        await _until(lambda: env.publisher.calls == 2)
        status, payload, headers = await env.post(as_json([scan(9)]))
        assert (status, payload["error"], headers["Retry-After"]) == (
            503,
            "in_flight_requests",
            "7",
        )
        assert env.sample("scantrace_gateway_requests_refused_total", reason="in_flight_requests")
        assert (await env.client.get("/healthz")).status == 200  # not counted, not refused
        assert publisher.hold is not None
        publisher.hold.set()
        assert [(await t).status for t in held] == [200, 200]
        status, _, _ = await env.post(as_json([scan(10)]))
        assert status == 200
        assert [s.event_id for s in env.publisher.scans] == ["evt-0", "evt-1", "evt-10"]

    run(test, publisher=publisher, max_in_flight_requests=2, retry_after_s=7)


def test_bytes_in_flight_beyond_the_limit_are_503_and_released_after() -> None:
    publisher = FakePublisher()
    publisher.hold = asyncio.Event()
    pad = " " * 2900  # three such bodies exceed 8192 bytes, two do not

    async def test(env: Env) -> None:
        body = as_json([scan(0)]) + pad.encode()
        held = [await _post_task(env, body) for _ in range(2)]
        await _until(lambda: env.publisher.calls == 2)
        assert env.sample("scantrace_gateway_bytes_in_flight") == 2 * len(body)
        status, payload, headers = await env.post(body)
        assert (status, payload["error"], headers["Retry-After"]) == (503, "in_flight_bytes", "2")
        assert publisher.hold is not None
        publisher.hold.set()
        assert [(await t).status for t in held] == [200, 200]
        assert env.sample("scantrace_gateway_bytes_in_flight") == 0
        assert (await env.post(body))[0] == 200

    run(test, publisher=publisher, max_body_bytes=4096, max_in_flight_bytes=8192)


def test_gzip_output_counts_against_the_bytes_in_flight() -> None:
    publisher = FakePublisher()
    publisher.hold = asyncio.Event()

    def padded(i: int) -> bytes:
        body = as_json([scan(i)])
        return body + b" " * (16_380 - len(body))

    async def test(env: Env) -> None:
        held = await _post_task(env, padded(0))
        await _until(lambda: env.publisher.calls == 1)
        small = gzip.compress(padded(1))  # fits as sent, not once decoded
        status, payload, headers = await env.post(small, headers={"Content-Encoding": "gzip"})
        assert (status, payload["error"], headers["Retry-After"]) == (503, "in_flight_bytes", "2")
        assert env.sample("scantrace_gateway_bytes_in_flight") == 16_380
        assert publisher.hold is not None
        publisher.hold.set()
        assert (await held).status == 200
        status, _, _ = await env.post(small, headers={"Content-Encoding": "gzip"})
        assert status == 200
        assert env.sample("scantrace_gateway_bytes_in_flight") == 0

    run(test, publisher=publisher, max_body_bytes=16_384, max_in_flight_bytes=32_768)


def test_a_body_slower_than_the_timeout_is_408_and_the_connection_closed() -> None:
    async def test(env: Env) -> None:
        async def trickle() -> Any:
            yield b'{"scans": ['
            await asyncio.sleep(30)
            yield b"]}"

        resp = await env.client.post(
            "/v1/scans", data=trickle(), headers={**AUTH, "Content-Type": "application/json"}
        )
        assert resp.status == 408
        assert (await resp.json())["error"] == "body_timeout"
        assert resp.headers.get("Connection", "").lower() == "close"
        assert env.sample("scantrace_gateway_requests_refused_total", reason="body_timeout") == 1
        assert env.publisher.calls == 0

    run(test, body_timeout_s=0.3)


@pytest.mark.parametrize("offload_bytes", [0, 1 << 30])
def test_decoding_in_a_thread_or_inline_gives_the_same_answer(offload_bytes: int) -> None:
    items = [scan(0), scan(1, kind="bogus"), scan(2)]

    async def test(env: Env) -> None:
        status, payload, _ = await env.post(msgpack.packb(items), "application/msgpack")
        assert (status, payload["accepted"], len(payload["rejected"])) == (200, 2, 1)
        assert msgpack.unpackb(env.publisher.dead_letters[0].raw) == items[1]

    run(test, offload_bytes=offload_bytes)


def test_million_empty_maps_are_413_before_decoding() -> None:
    body = b"\xdd\x00\x0f\x42\x40" + b"\x80" * 1_000_000

    async def test(env: Env) -> None:
        status, payload, _ = await env.post(body, "application/msgpack")
        assert (status, payload["error"]) == (413, "batch_too_large")
        assert env.sample("scantrace_gateway_requests_refused_total", reason="batch_too_large")
        assert env.publisher.calls == 0

    run(test)


def test_many_gzip_members_are_400() -> None:
    body = gzip.compress(b"") * 100_000

    async def test(env: Env) -> None:
        status, payload, _ = await env.post(body, headers={"Content-Encoding": "gzip"})
        assert (status, payload["error"]) == (400, "too_many_gzip_members")

    run(test, max_gzip_members=4)


def test_every_refusal_is_counted_by_reason() -> None:
    async def test(env: Env) -> None:
        await env.post(b"{", headers={"Authorization": "Bearer nope"})
        await env.post(b"{")
        await env.post(b"x", "text/plain")
        await env.post(as_json([scan(i) for i in range(11)]))
        for reason in ("unauthorized", "undecodable", "unsupported_media_type"):
            assert env.sample("scantrace_gateway_requests_refused_total", reason=reason) == 1
        assert env.sample("scantrace_gateway_requests_refused_total", reason="batch_too_large")

    run(test, max_batch=10)


@pytest.mark.parametrize(("ttl", "calls"), [(60.0, 1), (0.0, 5)])
def test_readyz_asks_the_publisher_at_most_once_per_ttl(ttl: float, calls: int) -> None:
    async def test(env: Env) -> None:
        for _ in range(5):
            assert (await env.client.get("/readyz")).status == 200
        assert env.publisher.ready_calls == calls

    run(test, ready_cache_s=ttl)


def test_ready_cache_shares_one_check_between_concurrent_callers() -> None:
    async def main() -> None:
        started = 0
        gate = asyncio.Event()

        async def check() -> bool:
            nonlocal started
            started += 1
            await gate.wait()
            return True

        now = [100.0]
        cache = ReadyCache(check, 1.0, clock=lambda: now[0])
        waiting = [asyncio.create_task(cache()) for _ in range(3)]
        await asyncio.sleep(0.01)
        gate.set()
        assert await asyncio.gather(*waiting) == [True, True, True]
        assert started == 1
        now[0] += 0.5
        assert await cache() and started == 1
        now[0] += 1.0
        assert await cache() and started == 2

    asyncio.run(main())


def test_metrics_port_takes_metrics_off_the_main_app() -> None:
    async def main() -> None:
        metrics = GatewayMetrics(CollectorRegistry())
        opts = GatewayOptions(tokens=SecretStr(json.dumps(TOKENS)), metrics_port=9999)
        app = build_app(FakePublisher(), opts, metrics)
        async with app_client(app) as client:
            await client.post(
                "/v1/scans", data=b"{", headers={**AUTH, "Content-Type": "application/json"}
            )
            assert (await client.get("/metrics")).status == 404
        async with TestClient(TestServer(build_metrics_app(metrics))) as client:
            resp = await client.get("/metrics")
            assert resp.status == 200
            text = await resp.text()
            assert 'scantrace_gateway_requests_total{status="400"} 1.0' in text
            assert 'scantrace_gateway_requests_refused_total{reason="undecodable"} 1.0' in text

    asyncio.run(main())
