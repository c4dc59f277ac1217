"""The HTTP ingest gateway as an aiohttp Application, above the `Publisher` seam.

`POST /v1/scans` takes a batch (JSON `{"scans": [...]}`, or msgpack: an array of maps or a
map with `scans`; gzip bodies too), authenticates the caller by bearer token, validates
every scan with the contract, and answers only after Kafka acknowledged every accepted
scan and every dead letter:

A body whose scans are all plainly valid is decoded in one go by `ingest.wire.fast_body`
(msgspec, in C) straight into the scans that are published; any other body is decoded
item by item (`ingest.gateway.body`, within bounds) and every item goes through
`contract.parse_scan`, which names what is wrong with each rejected one. Both paths
publish the same bytes.

    200 {"accepted": N, "rejected": [{"index": i, "reason": ..., "field": ..., "detail": ...}]}

Errors: 401 (token), 413 (body or batch too large), 415 (content type or encoding),
400 (malformed body), 408 (body too slow), 503 + Retry-After (too much in flight, Kafka
unreachable or its buffer full; nothing of the request is claimed). `GET /healthz`,
`/readyz`, `/metrics` (unless it has a port of its own: `build_metrics_app`).

A request refused as a whole is counted by reason (`requests_refused_total`) and not
dead-lettered: nothing of it was acknowledged, the caller holds the body and has the
reason, and dead-lettering what anyone may send would let them fill the dead-letter topic.
Every scan of an accepted body that breaks the contract is dead-lettered.

Serve it with `runner_kwargs(options)` (gzip is decoded here, under the limits, not by
aiohttp; the header timeout is aiohttp's keep-alive timer).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.auth import BearerTokens
from ingest.contract import MAX_ID_LEN, ScanEvent, ScanRejected, now_ms, parse_scan
from ingest.deadletter import DeadLetter
from ingest.gateway.base import Publisher, PublishUnavailable
from ingest.gateway.body import (
    Gunzip,
    MsgpackItems,
    check_json_size,
    decode_json_batch,
)
from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.settings import GatewayOptions
from ingest.http import HttpError, json_response
from ingest.wire import AnyScan, fast_body

log = logging.getLogger(__name__)

JSON_TYPES: Final = frozenset({"application/json"})
MSGPACK_TYPES: Final = frozenset(
    {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
)
GZIP_ENCODINGS: Final = frozenset({"gzip", "x-gzip"})
# A dead letter keeps the raw item, but never so much that Kafka would refuse the record.
MAX_DEAD_LETTER_RAW: Final = 64 * 1024
# After an early answer (413, 408), how long aiohttp keeps reading what the client still
# sends before closing, so that the client sees the answer rather than a reset.
LINGER_S: Final = 2.0

PUBLISHER_KEY: Final = web.AppKey("publisher", Publisher)
METRICS_KEY: Final = web.AppKey("metrics", GatewayMetrics)
OPTIONS_KEY: Final = web.AppKey("options", GatewayOptions)

__all__ = [
    "HttpError",
    "build_app",
    "build_metrics_app",
    "decode_batch",
    "runner_kwargs",
    "validate_batch",
]


def runner_kwargs(options: GatewayOptions) -> dict[str, Any]:
    """aiohttp server settings for the gateway: it must hand us the body as sent (we decode
    gzip ourselves, under the limits); a connection that does not finish its request head
    within `header_timeout_s` (aiohttp's keep-alive timer runs from the connection's start
    and from each answer) is closed."""
    return {
        "auto_decompress": False,
        "access_log": None,
        "keepalive_timeout": options.header_timeout_s,
        "lingering_time": LINGER_S,
    }


class TokenAuth(BearerTokens[str]):
    """Bearer tokens to gateway ids."""

    __slots__ = ()

    def gateway_for(self, authorization: str | None) -> str | None:
        return self.lookup(authorization)


def decode_batch(body: bytes, content_type: str, *, max_batch: int) -> list[Any] | MsgpackItems:
    """The raw scan items of a body (msgpack ones decoded when read), or `HttpError`."""
    if content_type in JSON_TYPES:
        return decode_json_batch(body, max_batch)
    items = MsgpackItems(body, max_batch)
    items.check()
    return items


class InFlight:
    """Requests and bytes being processed, against their limits (thread-safe: gzip
    decoding reserves its output from a worker thread)."""

    def __init__(self, max_requests: int, max_bytes: int, metrics: GatewayMetrics) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._gauge = metrics.bytes_in_flight

    def enter(self) -> bool:
        with self._lock:
            if self.requests >= self.max_requests:
                return False
            self.requests += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.requests -= 1

    def take(self, n: int) -> bool:
        with self._lock:
            if self.bytes + n > self.max_bytes:
                return False
            self.bytes += n
        self._gauge.inc(n)
        return True

    def give(self, n: int) -> None:
        with self._lock:
            self.bytes -= n
        self._gauge.dec(n)


@dataclass(slots=True)
class Reservation:
    """The bytes one request holds in `InFlight`; `take` refuses (503) beyond the limit."""

    in_flight: InFlight
    retry_after_s: int
    held: int = 0

    def take(self, n: int) -> None:
        if not self.in_flight.take(n):
            raise HttpError(
                503,
                "in_flight_bytes",
                f"more than {self.in_flight.max_bytes} request bytes in flight",
                {"Retry-After": str(self.retry_after_s)},
            )
        self.held += n

    def release(self) -> None:
        if self.held:
            self.in_flight.give(self.held)
            self.held = 0


@dataclass(slots=True)
class Decoded:
    """A body's outcome: how many items, the scans to publish, the rejected items' answers
    and dead letters."""

    count: int
    events: Sequence[AnyScan]
    rejected: list[dict[str, object]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


def _raw_item(item: object) -> tuple[bytes, str]:
    """msgpack of the item as received, for the dead letter; a note when it was cut."""
    try:
        raw: bytes = msgpack.packb(item, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):  # e.g. a JSON integer beyond 64 bits
        raw, note = repr(item).encode("utf-8", "backslashreplace"), " (raw is repr: not msgpack)"
    else:
        note = ""
    return _cut(raw, note)


def _cut(raw: bytes, note: str) -> tuple[bytes, str]:
    if len(raw) > MAX_DEAD_LETTER_RAW:
        note += f" (raw cut from {len(raw)} bytes)"
        raw = raw[:MAX_DEAD_LETTER_RAW]
    return raw, note


def _raw_element(items: MsgpackItems, index: int) -> tuple[bytes, str]:
    size = items.size(index)
    note = f" (raw cut from {size} bytes)" if size > MAX_DEAD_LETTER_RAW else ""
    return items.raw(index, MAX_DEAD_LETTER_RAW), note


def _event_id(item: object) -> str:
    if isinstance(item, dict):
        value = item.get("event_id")
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN and value.isprintable():
            return value
    return ""


def validate_batch(
    items: Sequence[Any] | MsgpackItems, *, gateway_id: str, received_at: int, max_skew_ms: int
) -> tuple[list[ScanEvent], list[dict[str, object]], list[DeadLetter]]:
    """Accepted events, the rejections for the answer, and their dead letters. Items of a
    `MsgpackItems` are decoded one at a time (only the outcome of each is kept), and a
    rejected one is dead-lettered with its bytes as received."""
    events: list[ScanEvent] = []
    rejected: list[dict[str, object]] = []
    dead: list[DeadLetter] = []
    append = events.append
    parse = parse_scan
    lazy = items if isinstance(items, MsgpackItems) else None
    for index in range(len(items)):
        item: Any = None
        try:
            item = lazy.item(index) if lazy is not None else items[index]  # type: ignore[index]
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
            raw, note = _raw_element(lazy, index) if lazy is not None else _raw_item(item)
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
        self.in_flight = InFlight(
            options.max_in_flight_requests, options.max_in_flight_bytes, metrics
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            try:
                response = await self._handle(request)
            except HttpError as exc:
                metrics.refused.labels(exc.code).inc()
                response = exc.response()
                if exc.status == 408:
                    response.force_close()  # what is left of the body is not worth waiting for
        finally:
            metrics.in_flight.dec()
        metrics.requests.labels(str(response.status)).inc()
        return response

    def _busy(self, code: str, detail: str) -> HttpError:
        return HttpError(503, code, detail, {"Retry-After": str(self.options.retry_after_s)})

    async def _handle(self, request: web.Request) -> web.Response:
        gateway_id = self.auth.gateway_for(request.headers.get("Authorization"))
        if gateway_id is None:
            raise HttpError(
                401,
                "unauthorized",
                "missing or unknown bearer token",
                {"WWW-Authenticate": "Bearer"},
            )
        content_type = request.content_type
        if content_type not in JSON_TYPES and content_type not in MSGPACK_TYPES:
            raise HttpError(
                415, "unsupported_media_type", "send application/json or application/msgpack"
            )
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in GZIP_ENCODINGS and encoding not in ("", "identity"):
            raise HttpError(
                415, "unsupported_encoding", "Content-Encoding must be gzip or identity"
            )
        in_flight = self.in_flight
        if not in_flight.enter():
            raise self._busy(
                "in_flight_requests", f"more than {in_flight.max_requests} requests in flight"
            )
        reservation = Reservation(in_flight, self.options.retry_after_s)
        try:
            body = await self._read_body(request, reservation)
            gzipped = encoding in GZIP_ENCODINGS
            received_at = self.clock()

            work = functools.partial(
                self._decode,
                body,
                gzipped=gzipped,
                json=content_type in JSON_TYPES,
                gateway_id=gateway_id,
                received_at=received_at,
                reserve=reservation.take,
            )
            if gzipped or len(body) > self.options.offload_bytes:
                decoded = await asyncio.get_running_loop().run_in_executor(None, work)
            else:
                decoded = work()
            del work, body  # not held while Kafka acknowledges
            return await self._publish(decoded)
        finally:
            reservation.release()
            in_flight.leave()

    async def _read_body(self, request: web.Request, reservation: Reservation) -> bytes:
        """The body as sent, within the size limit, the byte budget and the body timeout."""
        options = self.options
        limit = options.max_body_bytes
        declared = request.content_length
        if declared is not None:
            if declared > limit:
                raise HttpError(413, "body_too_large", f"body of {declared} > {limit} bytes")
            reservation.take(declared)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(options.body_timeout_s):
                while chunk := await request.content.readany():
                    size += len(chunk)
                    if size > limit:
                        raise HttpError(413, "body_too_large", f"body over {limit} bytes")
                    if declared is None:
                        reservation.take(len(chunk))
                    chunks.append(chunk)
        except TimeoutError:
            raise HttpError(
                408, "body_timeout", f"body not received within {options.body_timeout_s:g} s"
            ) from None
        except web.RequestPayloadError as exc:
            raise HttpError(400, "bad_body", f"body: {exc}") from None
        self.metrics.body_bytes.inc(size)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _decode(
        self,
        body: bytes,
        *,
        gzipped: bool,
        json: bool,
        gateway_id: str,
        received_at: int,
        reserve: Callable[[int], None],
    ) -> Decoded:
        """Everything between the body's bytes and what to publish: CPU only, no I/O (it
        may run in a worker thread)."""
        options = self.options
        if gzipped:
            body = Gunzip(options.max_body_bytes, options.max_gzip_members, reserve)(body)
        max_batch = options.max_batch
        lazy: MsgpackItems | None = None
        if json:
            check_json_size(body, max_batch)
        else:
            lazy = MsgpackItems(body, max_batch)
        fast = fast_body(body, json=json, latest_ms=received_at + options.max_skew_ms)
        if fast is not None:
            if len(fast) > max_batch:
                raise HttpError(
                    413, "batch_too_large", f"{len(fast)} scans > {max_batch} per request"
                )
            for scan in fast:  # the gateway's own, whatever the caller sent
                scan.gateway_id = gateway_id
                scan.received_at = received_at
            return Decoded(len(fast), fast)
        items: list[Any] | MsgpackItems
        if lazy is None:
            items = decode_json_batch(body, max_batch)
        else:
            lazy.check()
            items = lazy
        events, rejected, dead = validate_batch(
            items,
            gateway_id=gateway_id,
            received_at=received_at,
            max_skew_ms=options.max_skew_ms,
        )
        return Decoded(len(items), events, rejected, dead)

    async def _publish(self, decoded: Decoded) -> web.Response:
        metrics = self.metrics
        metrics.batch_size.observe(decoded.count)
        events, dead = decoded.events, decoded.dead
        if events or dead:
            started = time.perf_counter()
            try:
                await self.publisher.publish(events, dead)
            except PublishUnavailable as exc:
                log.warning("publish failed, answering 503: %s", exc.detail)
                raise HttpError(
                    503,
                    "unavailable",
                    exc.detail,
                    {"Retry-After": str(max(1, round(exc.retry_after)))},
                ) from None
            metrics.publish_latency.observe(time.perf_counter() - started)
        metrics.scans_accepted.inc(len(events))
        for letter in dead:
            metrics.scans_rejected.labels(letter.reason).inc()
        return json_response(200, {"accepted": len(events), "rejected": decoded.rejected})


class ReadyCache:
    """`check()` at most once per `ttl_s`: answers in between are the last one, and
    callers that arrive while a check runs share it."""

    def __init__(
        self,
        check: Callable[[], Awaitable[bool]],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._ttl_s = ttl_s
        self._clock = clock
        self._value = False
        self._at: float | None = None
        self._running: asyncio.Future[bool] | None = None

    async def __call__(self) -> bool:
        if self._at is not None and self._clock() - self._at < self._ttl_s:
            return self._value
        if self._running is None:
            self._running = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._running)

    async def _refresh(self) -> bool:
        try:
            self._value = bool(await self._check())
            self._at = self._clock()
            return self._value
        finally:
            self._running = None


def _metrics_view(metrics: GatewayMetrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def view(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return view


def build_metrics_app(metrics: GatewayMetrics) -> web.Application:
    """`GET /metrics` alone, for the internal listener (`options.metrics_port`)."""
    app = web.Application()
    app.router.add_get("/metrics", _metrics_view(metrics))
    return app


def build_app(
    publisher: Publisher,
    options: GatewayOptions,
    metrics: GatewayMetrics,
    *,
    tokens: Mapping[str, str] | None = None,
    clock: Callable[[], int] = now_ms,
) -> web.Application:
    """The gateway application. `tokens` defaults to `options.token_map()`; the caller
    starts and closes the publisher (see `ingest.gateway.server`). `/metrics` is served here
    unless `options.metrics_port` gives it a listener of its own."""
    auth = TokenAuth(options.token_map() if tokens is None else tokens)
    app = web.Application(client_max_size=options.max_body_bytes)
    app[PUBLISHER_KEY] = publisher
    app[METRICS_KEY] = metrics
    app[OPTIONS_KEY] = options
    scans = ScansHandler(publisher, options, auth, metrics, clock)
    ready = ReadyCache(publisher.ready, options.ready_cache_s)

    async def healthz(request: web.Request) -> web.Response:
        return json_response(200, {"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        if await ready():
            return json_response(200, {"status": "ready"})
        return json_response(
            503, {"status": "kafka unreachable"}, {"Retry-After": str(options.retry_after_s)}
        )

    app.router.add_post("/v1/scans", scans.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if not options.metrics_port:
        app.router.add_get("/metrics", _metrics_view(metrics))
    return app
