"""Fuzz campaign against the gateway's request handler, in process: generated and mutated
bodies (JSON, msgpack, gzip; nested, oversized, truncated, wrong types, non-UTF-8, huge
numbers, NaN, deep nesting, duplicate keys; bad content types and encodings, chunked
bodies) sent through aiohttp's test server to the real app above the fake publisher.

For every request: no 5xx but 503, an answer in the gateway's error shape, nothing
published or dead-lettered unless it is a 200; for a 200, accepted + rejected == the items
in the body, every rejected item dead-lettered with its reason, every accepted scan
published with the gateway's stamps, and the verdict on each item the contract's own
(`parse_scan` on the item decoded by a reference decoder). No error is logged.

The number of requests is `SCANTRACE_FUZZ_EXAMPLES` (default 5,000, seconds; the big run
is recorded in bench/RESULTS.md), the seed `SCANTRACE_FUZZ_SEED`.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import os
import random
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
from gateway_kit import app_client
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from ingest.contract import DEFAULT_MAX_SKEW_MS, ScanRejected, parse_scan
from ingest.gateway.app import build_app
from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.settings import GatewayOptions
from ingest.gateway.testing import FakePublisher

EXAMPLES = int(os.environ.get("SCANTRACE_FUZZ_EXAMPLES", "5000"))
SEED = int(os.environ.get("SCANTRACE_FUZZ_SEED", "20261204"))
NOW = 1_700_000_000_000
TOKEN = "fuzz-token"
GATEWAY = "gw-fuzz"
OPTIONS = {
    "max_body_bytes": 256 * 1024,
    "max_batch": 64,
    "max_gzip_members": 4,
    "offload_bytes": 8 * 1024,  # some bodies decoded inline, some in a worker thread
}
ERROR_CODES = {
    "unauthorized",
    "unsupported_media_type",
    "unsupported_encoding",
    "body_too_large",
    "batch_too_large",
    "bad_gzip",
    "too_many_gzip_members",
    "undecodable",
    "not_a_batch",
    "bad_body",
}
JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"


# -- generation ------------------------------------------------------------------------


@dataclass
class Case:
    """One request: its body, headers, and what the generator knows about it."""

    family: str
    body: bytes
    content_type: str | None
    encoding: str | None = None
    token: str | None = TOKEN
    chunked: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)


class Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    # values and items

    def text(self, max_len: int = 12) -> str:
        r = self.r
        alphabets = [
            "abcdefghijklmnopqrstuvwxyz0123456789-_",
            "ĐàLạtChợ✓ẞ",
            "\x00\x01\n\t\x7f\u200b\u2028",
            "\U0001f600\ud7ff\ufffd",
            ",:[]{}\"\\'",
        ]
        alphabet = r.choice(alphabets) if r.random() < 0.4 else alphabets[0]
        return "".join(r.choice(alphabet) for _ in range(r.randint(0, max_len)))

    def weird(self, depth: int = 0) -> Any:
        r = self.r
        choice = r.randrange(18)
        if choice == 0:
            return None
        if choice == 1:
            return r.choice([True, False])
        if choice == 2:
            return r.choice([0, -1, 1, 2**31, 2**63 - 1, -(2**63), 2**64 - 1, NOW])
        if choice == 3:
            return r.choice([2**64, 2**70, -(2**80), 10**30])  # beyond msgpack's ints
        if choice == 4:
            return r.choice([0.5, -0.0, 1e308, float("nan"), float("inf"), float("-inf")])
        if choice == 5:
            return self.text(r.choice([0, 1, 8, 64, 65, 200]))
        if choice == 6:
            return "x" * r.choice([64, 65, 1000, 70_000])
        if choice == 7:
            return r.choice(["checkin", "checkout", "CHECKIN", "", "2023-11-14T22:03:20Z"])
        if choice == 8:
            return r.choice(
                ["2023-11-14T22:03:20+07:00", "2023-11-14", "2023-11-14T22:03:20", "+99999-01-01"]
            )
        if choice == 9:
            return bytes(r.randrange(256) for _ in range(r.randint(0, 16)))
        if choice == 10 and depth < 3:
            return [self.weird(depth + 1) for _ in range(r.randint(0, 4))]
        if choice == 11 and depth < 3:
            return {self.text(6): self.weird(depth + 1) for _ in range(r.randint(0, 4))}
        if choice == 12:
            return msgpack.ExtType(r.randrange(128), r.randbytes(r.randint(0, 8)))
        if choice == 13:
            return msgpack.Timestamp(r.randrange(2**32), r.randrange(10**9))
        if choice == 14:
            return NOW - r.randrange(10**9)
        if choice == 15:
            return NOW + r.choice([DEFAULT_MAX_SKEW_MS, DEFAULT_MAX_SKEW_MS + 1, 10**9])
        return r.choice([1, "1", "x", [], {}])

    def scan(self, i: int) -> dict[str, Any]:
        r = self.r
        item: dict[str, Any] = {
            "event_id": f"evt-{r.randrange(10**9)}-{i}",
            "person_id": f"p-{r.randrange(1000)}",
            "premises_id": r.choice(["NT-0001", "NT-0002", "Chợ-3", "x" * 64]),
            "scanned_at": NOW - r.randrange(10**8),
        }
        if r.random() < 0.3:
            item["kind"] = r.choice(["checkin", "checkout"])
        if r.random() < 0.1:
            item["gateway_id"] = "forged"
            item["received_at"] = NOW - 10**9
        if r.random() < 0.05:
            item["schema"] = 1
        if r.random() < 0.1:
            item["scanned_at"] = "2023-11-14T22:03:20.5+07:00"
        return item

    def item(self, i: int, bad_rate: float) -> Any:
        r = self.r
        item: Any = self.scan(i)
        if r.random() < bad_rate:
            how = r.randrange(5)
            if how == 0:
                item[r.choice(list(item))] = self.weird()
            elif how == 1:
                del item[r.choice(list(item))]
            elif how == 2:
                item[self.text(10) or "extra"] = self.weird()
            elif how == 3:
                item = self.weird()
            else:
                for _ in range(r.randint(1, 4)):
                    item[r.choice([*item, "kind", "schema"])] = self.weird()
        return item

    def items(self) -> list[Any]:
        r = self.r
        n = r.choice([0, 1, 2, 5, 20, 64, 65, r.randint(0, 70)])
        bad_rate = r.choice([0.0, 0.0, 0.1, 0.5, 1.0])
        return [self.item(i, bad_rate) for i in range(n)]

    # encodings

    def encode(self, items: list[Any], as_json: bool) -> bytes | None:
        r = self.r
        if as_json:
            obj: Any = {"scans": items}
            if r.random() < 0.05:
                obj = items if r.random() < 0.5 else {"scans": items, "extra": 1}
            try:
                return json.dumps(
                    obj, ensure_ascii=r.random() < 0.5, default=_json_default
                ).encode()
            except (TypeError, ValueError):
                return None
        obj = items if r.random() < 0.5 else {"scans": items}
        try:
            return msgpack.packb(obj, use_bin_type=r.random() < 0.9, default=_msgpack_default)
        except (TypeError, ValueError, OverflowError):
            return None

    def mutate(self, data: bytes) -> bytes:
        r = self.r
        b = bytearray(data)
        for _ in range(r.choice([1, 1, 2, 4, 16])):
            how = r.randrange(8)
            pos = r.randrange(len(b) + 1)
            if how == 0 and b:
                b[min(pos, len(b) - 1)] ^= 1 << r.randrange(8)
            elif how == 1:
                b[pos:pos] = bytes([r.randrange(256)])
            elif how == 2 and b:
                del b[pos : pos + r.randint(1, 8)]
            elif how == 3:
                del b[pos:]
            elif how == 4 and b:
                start = r.randrange(len(b))
                b[pos:pos] = b[start : start + r.randint(1, 64)] * r.randint(1, 8)
            elif how == 5:
                b[pos:pos] = r.choice(
                    [b"\xff\xfe", b"\xc1", b"\xdd\xff\xff\xff\xff", b"NaN", b"1e999", b"\\u0000"]
                )
            elif how == 6 and b:
                b[min(pos, len(b) - 1)] = r.choice([0x80, 0x90, 0xC0, 0xDC, 0xDE, 0x22, 0x7B])
            else:
                b[pos:pos] = r.randbytes(r.randint(1, 32))
        return bytes(b)

    def gzip_wrap(self, data: bytes) -> bytes:
        r = self.r
        how = r.randrange(7)
        if how == 0:
            cut = r.randint(0, len(data))
            return gzip.compress(data[:cut]) + gzip.compress(data[cut:])
        if how == 1:
            zipped = gzip.compress(data)
            return zipped[: r.randrange(max(len(zipped), 1))]
        if how == 2:
            zipped = bytearray(gzip.compress(data))
            zipped[-5] ^= 0xFF  # CRC
            return bytes(zipped)
        if how == 3:
            return gzip.compress(b"") * r.choice([3, 5, 1000]) + gzip.compress(data)
        if how == 4:
            return gzip.compress(data) + r.choice([b"\0", b"garbage", self.r.randbytes(20)])
        if how == 5:
            return zlib.compress(data)  # zlib framing, not gzip
        return gzip.compress(data, compresslevel=r.choice([0, 1, 9]))

    def bomb(self, as_json: bool) -> bytes:
        r = self.r
        how = r.randrange(8)
        if how == 0:
            n = r.choice([65, 1000, 100_000])
            return (
                b'{"scans": [' + b",".join([b"{}"] * n) + b"]}"
                if as_json
                else (b"\xdd" + n.to_bytes(4, "big") + b"\x80" * n)
            )
        if how == 1:
            depth = r.choice([100, 1000, 5000, 100_000])
            if as_json:
                return b'{"scans": [' + b"[" * depth + b"]" * depth + b"]}"
            return b"\x91" + b"\x91" * depth + b"\x80"
        if how == 2:
            return b"\xdd\xff\xff\xff\xff" if not as_json else b'{"scans": [' * 50_000
        if how == 3:  # one element, large, nested inside
            inner = b"\xdc" + (60_000).to_bytes(2, "big") + b"\x80" * 60_000
            return (
                b"\x91\x81\xa8event_id" + inner
                if not as_json
                else (b'{"scans": [{"event_id": [' + b",".join([b"{}"] * 20_000) + b"]}]}")
            )
        if how == 4:
            big = "y" * r.choice([70_000, 200_000, 300_000])
            item = {**self.scan(0), "person_id": big}
            return json.dumps({"scans": [item]}).encode() if as_json else msgpack.packb([item])
        if how == 5:
            return gzip.compress(b" " * 5_000_000)  # inflates past the body limit
        if how == 6:
            digits = "9" * r.choice([20, 4300, 5000])
            item = '"event_id": "e", "person_id": "p", "premises_id": "x", "scanned_at": '
            return f'{{"scans": [{{{item}{digits}}}]}}'.encode()
        return r.randbytes(r.choice([1, 100, 300_000]))

    def case(self) -> Case:
        r = self.r
        as_json = r.random() < 0.5
        content_type: str | None = JSON_TYPE if as_json else MSGPACK_TYPE
        family = r.choices(
            ["valid", "mixed", "mutated", "gzip", "bomb", "raw_json", "headers"],
            weights=[10, 30, 25, 12, 6, 7, 10],
        )[0]
        encoding: str | None = None
        if family == "bomb":
            body = self.bomb(as_json)
            if body[:2] == b"\x1f\x8b":
                encoding = "gzip"
        elif family == "raw_json":
            body = self.raw_json()
            content_type = JSON_TYPE
        else:
            items = (
                self.items()
                if family != "valid"
                else [self.scan(i) for i in range(r.randint(0, 64))]
            )
            encoded = self.encode(items, as_json)
            body = encoded if encoded is not None else b"{}"
            if family == "mutated":
                body = self.mutate(body)
            elif family == "gzip":
                body = self.gzip_wrap(body if r.random() < 0.8 else self.mutate(body))
                encoding = r.choice(["gzip", "gzip", "x-gzip", "GZIP "])
        case = Case(family, body, content_type, encoding, chunked=r.random() < 0.15)
        if family == "headers":
            how = r.randrange(6)
            if how == 0:
                case.content_type = r.choice(
                    ["text/plain", "application/json; charset=latin-1", "multipart/form-data",
                     "application/msgpack; x=1", "", "application/x-www-form-urlencoded",
                     "application/vnd.msgpack", "application/x-msgpack"]
                )  # fmt: skip
            elif how == 1:
                case.encoding = r.choice(
                    ["br", "deflate", "gzip, gzip", "identity", "", "zstd", "ü"]
                )
            elif how == 2:
                case.token = r.choice([None, "", "wrong", TOKEN + "x", "ünïcode"])
            elif how == 3:
                case.content_type = None
            elif how == 4:
                case.extra_headers = {"Content-Encoding": "identity", "X-Junk": "\t" * 10}
            else:
                case.body = b""
        return case

    def raw_json(self) -> bytes:
        """JSON texts json.dumps would not write: duplicate keys, NaN, comments, BOM..."""
        r = self.r
        scan = self.scan(0)
        fields = ", ".join(f'"{k}": {json.dumps(v)}' for k, v in scan.items())
        choices = [
            f'{{"scans": [{{{fields}, "event_id": "dup"}}]}}',
            f'{{"scans": [{{{fields}}}], "scans": []}}',
            f'{{"scans": [{{{fields}, "scanned_at": NaN}}]}}',
            f'{{"scans": [{{{fields}, "scanned_at": Infinity}}]}}',
            f'{{"scans": [{{{fields}, "scanned_at": -1e400}}]}}',
            f'{{"scans": [{{{fields}}}] /* comment */}}',
            f'\ufeff{{"scans": [{{{fields}}}]}}',
            f'{{"scans": [{{{fields}}},]}}',
            f'{{"scans": [{{{fields}, "person_id": "\\ud800"}}]}}',
            '{"scans": [' + ",".join(['{"event_id": "e"}'] * r.randint(0, 80)) + "]}",
            "null",
            '"scans"',
            "[]",
        ]
        text = r.choice(choices)
        data = text.encode("utf-8", "surrogatepass")
        if r.random() < 0.2:
            data = data.replace(b'"p-', b'"\xff\xfe-')  # not UTF-8
        return data


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("latin-1")
    return repr(obj)


def _msgpack_default(obj: Any) -> Any:
    return repr(obj)


# -- the reference view of a body --------------------------------------------------------


def reference_items(body: bytes, content_type: str) -> list[Any] | None:
    """The items of a body by the plain decoders, when they decode it whole."""
    try:
        if content_type == JSON_TYPE:
            obj = json.loads(body)
        else:
            obj = msgpack.unpackb(body, raw=False, strict_map_key=True, timestamp=0)
    except Exception:  # any failure: no reference
        return None
    if isinstance(obj, dict) and list(obj) == ["scans"]:
        obj = obj["scans"]
    return obj if isinstance(obj, list) else None


def reference_count(body: bytes, content_type: str) -> int | None:
    """The number of items, from the msgpack headers (items that do not decode count)."""
    if content_type == JSON_TYPE:
        items = reference_items(body, content_type)
        return None if items is None else len(items)
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(body), 1))
    unpacker.feed(body)
    try:
        is_map = bool(body) and (0x80 <= body[0] <= 0x8F or body[0] in (0xDE, 0xDF))
        if is_map and (unpacker.read_map_header() != 1 or unpacker.unpack() != "scans"):
            return None
        return int(unpacker.read_array_header())
    except Exception:  # not a batch
        return None


def decoded_body(case: Case) -> bytes | None:
    if case.encoding is None or case.encoding.strip().lower() not in ("gzip", "x-gzip"):
        return case.body
    try:
        return gzip.decompress(case.body)
    except Exception:  # not gzip: the gateway refuses it
        return None


# -- the campaign ------------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    by_family: dict[str, int] = field(default_factory=dict)
    items_sent: int = 0
    accepted: int = 0
    rejected: int = 0
    checked_verdicts: int = 0


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _chunks(data: bytes, rand: random.Random) -> AsyncIterator[bytes]:
    pos = 0
    while pos < len(data):
        step = rand.choice([1, 7, 100, 4096, 65536])
        yield data[pos : pos + step]
        pos += step


def check_answer(case: Case, status: int, payload: Any, publisher: FakePublisher,
                 before: tuple[int, int, int], tally: Tally) -> None:  # fmt: skip
    context = (
        f"family={case.family} type={case.content_type} enc={case.encoding} body={case.body[:80]!r}"
    )
    assert status < 500 or status == 503, f"{status} {payload} {context}"
    assert isinstance(payload, dict), context
    scans_before, dead_before, calls_before = before
    new_scans = publisher.scans[scans_before:]
    new_dead = publisher.dead_letters[dead_before:]
    if status != 200:
        assert payload.get("error") in ERROR_CODES | {"in_flight_bytes", "in_flight_requests"}, (
            payload,
            context,
        )
        assert isinstance(payload.get("detail"), str) and payload["detail"], context
        assert (new_scans, new_dead, publisher.calls) == ([], [], calls_before), context
        return
    accepted, rejected = payload["accepted"], payload["rejected"]
    assert accepted == len(new_scans), context
    assert len(rejected) == len(new_dead), context
    assert [r["reason"] for r in rejected] == [d.reason for d in new_dead], context
    indices = [r["index"] for r in rejected]
    assert indices == sorted(set(indices)), context
    for letter in new_dead:
        assert letter.stage == "gateway" and letter.at == NOW and letter.raw, context
        assert len(letter.raw) <= 64 * 1024
    for scan in new_scans:
        assert (scan.gateway_id, scan.received_at) == (GATEWAY, NOW), context
    body = decoded_body(case)
    assert body is not None, context
    content_type = case.content_type or ""
    content_type = JSON_TYPE if content_type.split(";")[0].strip() == JSON_TYPE else MSGPACK_TYPE
    count = reference_count(body, content_type)
    assert count is not None, context
    assert accepted + len(rejected) == count, context
    tally.items_sent += count
    tally.accepted += accepted
    tally.rejected += len(rejected)
    items = reference_items(body, content_type)
    if items is None:
        return
    # the verdict on every item is the contract's, and accepted ones are published in order
    want_ids = []
    rejected_at = {r["index"]: r["reason"] for r in rejected}
    for index, item in enumerate(items):
        try:
            event = parse_scan(
                item, now=NOW, max_skew_ms=DEFAULT_MAX_SKEW_MS, gateway_id=GATEWAY, received_at=NOW
            )
        except ScanRejected as exc:
            assert rejected_at.get(index) == exc.reason, (index, exc.reason, context)
        else:
            assert index not in rejected_at, (index, rejected_at[index], context)
            want_ids.append(event.event_id)
    assert [s.event_id for s in new_scans] == want_ids, context
    tally.checked_verdicts += len(items)


async def campaign(examples: int, seed: int) -> Tally:
    gen = Gen(seed)
    publisher = FakePublisher()
    options = GatewayOptions(tokens=SecretStr(json.dumps({TOKEN: GATEWAY})), **OPTIONS)
    app = build_app(publisher, options, GatewayMetrics(CollectorRegistry()), clock=lambda: NOW)
    tally = Tally()
    async with app_client(app) as client:
        for _ in range(examples):
            case = gen.case()
            headers = dict(case.extra_headers)
            if case.content_type is not None:
                headers["Content-Type"] = case.content_type
            if case.encoding is not None:
                headers["Content-Encoding"] = case.encoding
            if case.token is not None:
                headers["Authorization"] = f"Bearer {case.token}"
            data: Any = _chunks(case.body, gen.r) if case.chunked else io.BytesIO(case.body)
            before = (len(publisher.scans), len(publisher.dead_letters), publisher.calls)
            # the session itself: the test client would keep every response until the end
            async with client.session.post(
                client.make_url("/v1/scans"), data=data, headers=headers
            ) as resp:
                status, raw = resp.status, await resp.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw
            check_answer(case, status, payload, publisher, before, tally)
            tally.requests += 1
            tally.by_status[status] = tally.by_status.get(status, 0) + 1
            tally.by_family[case.family] = tally.by_family.get(case.family, 0) + 1
            # the previous batches are checked: drop them to keep the fake's memory flat
            publisher.scans.clear()
            publisher.dead_letters.clear()
            publisher.records.clear()
    return tally


def test_gateway_fuzz_campaign() -> None:
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    started = time.monotonic()
    try:
        tally = asyncio.run(campaign(EXAMPLES, SEED))
    finally:
        logging.getLogger().removeHandler(errors)
    elapsed = time.monotonic() - started
    assert [r.getMessage() for r in errors.records] == []
    assert tally.requests == EXAMPLES
    print(
        f"\nfuzz: {tally.requests} requests in {elapsed:.1f} s (seed {SEED}); "
        f"statuses {dict(sorted(tally.by_status.items()))}; families "
        f"{dict(sorted(tally.by_family.items()))}; items in 200s {tally.items_sent} "
        f"= {tally.accepted} accepted + {tally.rejected} rejected; "
        f"{tally.checked_verdicts} verdicts checked against parse_scan"
    )
    if EXAMPLES >= 1000:  # the generator reaches every kind of answer
        assert {200, 400, 401, 413, 415} <= set(tally.by_status)
        assert tally.accepted and tally.rejected and tally.checked_verdicts


def test_the_campaign_catches_a_gateway_that_loses_a_rejected_scan(
    monkeypatch: Any,
) -> None:
    """The oracle is not vacuous: a gateway that drops its dead letters fails it."""
    import ingest.gateway.app as gateway_app

    real: Callable[..., Any] = gateway_app.validate_batch

    def lossy(*args: Any, **kwargs: Any) -> Any:
        events, rejected, dead = real(*args, **kwargs)
        return events, rejected, dead[1:]

    monkeypatch.setattr(gateway_app, "validate_batch", lossy)
    try:
        asyncio.run(campaign(300, SEED))
    except AssertionError:
        return
    raise AssertionError("a gateway losing dead letters passed the campaign")
