"""The HTTP ingest gateway as an aiohttp Application, above the `Publisher` seam.

`POST /v1/scans` takes a batch (JSON `{"scans": [...]}`, or msgpack: an array of maps or a
map with `scans`; gzip bodies too), authenticates the caller by bearer token, validates
every scan with the contract, and answers only after Kafka acknowledged every accepted
scan and every dead letter:

A body whose scans are all plainly valid is decoded in one go by `ingest.wire.fast_body`
(msgspec, in C) straight into the scans that are published; any other body is decoded to
Python objects and every item goes through `contract.parse_scan`, which names what is
wrong with each rejected one. Both paths publish the same bytes.

    200 {"accepted": N, "rejected": [{"index": i, "reason": ..., "field": ..., "detail": ...}]}

Errors: 401 (token), 413 (body or batch too large), 415 (content type or encoding),
400 (malformed body), 503 + Retry-After (Kafka unreachable or buffer full; nothing of the
request is claimed). `GET /healthz`, `/readyz`, `/metrics`.

Run it with `RUNNER_KWARGS` (gzip is decoded here, under the body limit, not by aiohttp).
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgpack
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.auth import BearerTokens
from ingest.codec import unpack_json, unpack_msgpack
from ingest.contract import MAX_ID_LEN, ScanEvent, ScanRejected, now_ms, parse_scan
from ingest.deadletter import DeadLetter
from ingest.gateway.base import Publisher, PublishUnavailable
from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.settings import GatewayOptions
from ingest.wire import AnyScan, fast_body

log = logging.getLogger(__name__)

JSON_TYPES: Final = frozenset({"application/json"})
MSGPACK_TYPES: Final = frozenset(
    {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
)
GZIP_ENCODINGS: Final = frozenset({"gzip", "x-gzip"})
# A dead letter keeps the raw item, but never so much that Kafka would refuse the record.
MAX_DEAD_LETTER_RAW: Final = 64 * 1024
# aiohttp must hand us the body as sent: we decode gzip ourselves, under the size limit.
RUNNER_KWARGS: Final[Mapping[str, Any]] = {"auto_decompress": False, "access_log": None}

PUBLISHER_KEY: Final = web.AppKey("publisher", Publisher)
METRICS_KEY: Final = web.AppKey("metrics", GatewayMetrics)


class BodyError(Exception):
    """The request as a whole is refused; `status` and a stable `code` for the answer."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class TokenAuth(BearerTokens[str]):
    """Bearer tokens to gateway ids."""

    __slots__ = ()

    def gateway_for(self, authorization: str | None) -> str | None:
        return self.lookup(authorization)


def gunzip(data: bytes, limit: int) -> bytes:
    """Decode a gzip body (members may be concatenated), refusing more than `limit` bytes
    of output before producing them."""
    out = bytearray()
    while data:
        decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += decoder.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise BodyError(400, "bad_gzip", f"gzip: {exc}") from None
        if len(out) > limit:
            raise BodyError(413, "body_too_large", f"more than {limit} bytes after gzip decoding")
        if not decoder.eof:
            raise BodyError(400, "bad_gzip", "gzip: truncated stream")
        data = decoder.unused_data
    return bytes(out)


def decode_batch(body: bytes, content_type: str) -> list[Any]:
    """The list of raw scan items in a body, or `BodyError(400)`."""
    try:
        obj = unpack_json(body) if content_type in JSON_TYPES else unpack_msgpack(body)
    except ScanRejected as exc:
        raise BodyError(400, "undecodable", exc.detail) from None
    if isinstance(obj, dict):
        extra = [k for k in obj if k != "scans"]
        if extra:
            raise BodyError(400, "not_a_batch", f"unknown top-level key {str(extra[0])[:64]!r}")
        obj = obj.get("scans")
        if not isinstance(obj, list):
            raise BodyError(400, "not_a_batch", '"scans" must be an array of scans')
        return obj
    if isinstance(obj, list) and content_type not in JSON_TYPES:
        return obj
    want = (
        '{"scans": [...]}' if content_type in JSON_TYPES else "an array of scans or {scans: [...]}"
    )
    raise BodyError(400, "not_a_batch", f"expected {want}, got {type(obj).__name__}")


def _raw_item(item: object) -> tuple[bytes, str]:
    """msgpack of the item as received, for the dead letter; a note when it was cut."""
    try:
        raw: bytes = msgpack.packb(item, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):  # e.g. a JSON integer beyond 64 bits
        raw, note = repr(item).encode("utf-8", "backslashreplace"), " (raw is repr: not msgpack)"
    else:
        note = ""
    if len(raw) > MAX_DEAD_LETTER_RAW:
        note += f" (raw cut from {len(raw)} bytes)"
        raw = raw[:MAX_DEAD_LETTER_RAW]
    return raw, note


def _event_id(item: object) -> str:
    if isinstance(item, dict):
        value = item.get("event_id")
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN and value.isprintable():
            return value
    return ""


def validate_batch(
    items: list[Any], *, gateway_id: str, received_at: int, max_skew_ms: int
) -> tuple[list[ScanEvent], list[dict[str, object]], list[DeadLetter]]:
    """Accepted events, the rejections for the answer, and their dead letters."""
    events: list[ScanEvent] = []
    rejected: list[dict[str, object]] = []
    dead: list[DeadLetter] = []
    append = events.append
    parse = parse_scan
    for index, item in enumerate(items):
        try:
            append(
                parse(
                    item,
                    now=received_at,
                    max_skew_ms=max_skew_ms,
                    gateway_id=gateway_id,
                    received_at=received_at,
                )
            )
        except ScanRejected as exc:
            rejected.append({"index": index, **exc.as_dict()})
            raw, note = _raw_item(item)
            dead.append(
                DeadLetter(
                    stage="gateway",
                    reason=exc.reason,
                    raw=raw,
                    detail=f"{exc.describe()}; gateway {gateway_id}{note}",
                    at=received_at,
                    event_id=_event_id(item),
                )
            )
    return events, rejected, dead


def _json(
    status: int, body: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )


def _error(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return _json(status, {"error": code, "detail": detail}, headers)


class ScansHandler:
    """`POST /v1/scans`."""

    def __init__(
        self,
        publisher: Publisher,
        options: GatewayOptions,
        auth: TokenAuth,
        metrics: GatewayMetrics,
        clock: Callable[[], int],
    ) -> None:
        self.publisher = publisher
        self.options = options
        self.auth = auth
        self.metrics = metrics
        self.clock = clock

    async def handle(self, request: web.Request) -> web.StreamResponse:
        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            response = await self._handle(request)
        finally:
            metrics.in_flight.dec()
        metrics.requests.labels(str(response.status)).inc()
        return response

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.options.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BodyError(
                413, "body_too_large", f"body of {request.content_length} > {limit} bytes"
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BodyError(413, "body_too_large", f"body over {limit} bytes") from None
        self.metrics.body_bytes.inc(len(body))
        if len(body) > limit:
            raise BodyError(413, "body_too_large", f"body of {len(body)} > {limit} bytes")
        return body

    async def _handle(self, request: web.Request) -> web.Response:
        options = self.options
        gateway_id = self.auth.gateway_for(request.headers.get("Authorization"))
        if gateway_id is None:
            return _error(
                401,
                "unauthorized",
                "missing or unknown bearer token",
                {"WWW-Authenticate": "Bearer"},
            )
        content_type = request.content_type
        if content_type not in JSON_TYPES and content_type not in MSGPACK_TYPES:
            return _error(
                415, "unsupported_media_type", "send application/json or application/msgpack"
            )
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in GZIP_ENCODINGS and encoding not in ("", "identity"):
            return _error(415, "unsupported_encoding", "Content-Encoding must be gzip or identity")
        events: Sequence[AnyScan]
        rejected: list[dict[str, object]] = []
        dead: list[DeadLetter] = []
        try:
            body = await self._read_body(request)
            if encoding in GZIP_ENCODINGS:
                body = gunzip(body, options.max_body_bytes)
            received_at = self.clock()
            fast = fast_body(
                body,
                json=content_type in JSON_TYPES,
                latest_ms=received_at + options.max_skew_ms,
            )
            items: list[Any] = decode_batch(body, content_type) if fast is None else fast
            if len(items) > options.max_batch:
                raise BodyError(
                    413, "batch_too_large", f"{len(items)} scans > {options.max_batch} per request"
                )
        except BodyError as exc:
            return _error(exc.status, exc.code, exc.detail)
        self.metrics.batch_size.observe(len(items))
        if fast is not None:
            for scan in fast:  # the gateway's own, whatever the caller sent
                scan.gateway_id = gateway_id
                scan.received_at = received_at
            events = fast
        else:
            events, rejected, dead = validate_batch(
                items,
                gateway_id=gateway_id,
                received_at=received_at,
                max_skew_ms=options.max_skew_ms,
            )
        if events or dead:
            started = time.perf_counter()
            try:
                await self.publisher.publish(events, dead)
            except PublishUnavailable as exc:
                retry = max(1, round(exc.retry_after))
                log.warning("publish failed, answering 503: %s", exc.detail)
                return _error(503, "unavailable", exc.detail, {"Retry-After": str(retry)})
            self.metrics.publish_latency.observe(time.perf_counter() - started)
        self.metrics.scans_accepted.inc(len(events))
        for letter in dead:
            self.metrics.scans_rejected.labels(letter.reason).inc()
        return _json(200, {"accepted": len(events), "rejected": rejected})


def build_app(
    publisher: Publisher,
    options: GatewayOptions,
    metrics: GatewayMetrics,
    *,
    tokens: Mapping[str, str] | None = None,
    clock: Callable[[], int] = now_ms,
) -> web.Application:
    """The gateway application. `tokens` defaults to `options.token_map()`; the caller
    starts and closes the publisher (see `ingest.gateway.server`)."""
    auth = TokenAuth(options.token_map() if tokens is None else tokens)
    app = web.Application(client_max_size=options.max_body_bytes)
    app[PUBLISHER_KEY] = publisher
    app[METRICS_KEY] = metrics
    scans = ScansHandler(publisher, options, auth, metrics, clock)

    async def healthz(request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        if await publisher.ready():
            return _json(200, {"status": "ready"})
        return _json(
            503, {"status": "kafka unreachable"}, {"Retry-After": str(options.retry_after_s)}
        )

    async def metrics_view(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_post("/v1/scans", scans.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app
