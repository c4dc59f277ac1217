"""Request bodies of the gateway, decoded within bounds that hold whatever the body holds.

- `Gunzip`: gzip members (concatenated or not) in time linear in the body: each member's
  decoder is fed a window that starts small and doubles, so zlib never copies more than
  twice what the member spans (a 16 MiB body of 20-byte empty members costs the same per
  byte as one member). The member count is capped, the output limit holds while decoding,
  and every piece of output is reported to `reserve` (the in-flight byte budget) first.
- JSON: before anything is built, `check_json_size` bounds the number of values the body
  can hold by counting the characters that open or separate one (`[ { , :`; in strings
  they only over-count): a body that could hold more values than `max_batch` scans of
  `JSON_VALUES_PER_SCAN` each is refused, so a decode never builds more than that.
- msgpack: `MsgpackItems` reads the top-level headers first (an array, or a map whose only
  key is `scans`), so an array that claims more than `max_batch` elements is refused
  before one is decoded. The slow path then walks the elements without building them
  (`Unpacker.skip`) and decodes each one only when it is validated, one at a time; an
  element too large to be a scan is read shallowly (its map's keys and scalar values;
  nested containers as empty ones) so that an element of millions of tiny nested objects
  costs nothing. A rejected element's dead letter keeps
  its bytes as received.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from typing import Any, Final

import msgpack

from ingest.codec import unpack_json
from ingest.contract import FIELDS, ScanRejected
from ingest.http import HttpError

# The first window fed to a member's decoder (a gzip member is at least 18 bytes), doubled
# while the member goes on, up to the largest window.
GZIP_FIRST_FEED: Final = 64
GZIP_MAX_FEED: Final = 1 << 20
# Upper bound of JSON values (keys count as values) a scan may bring on average: a scan
# with all eight fields has about 25 (ISO times add colons); ids with commas or colons
# add theirs.
JSON_VALUES_PER_SCAN: Final = 64
# An element up to this size is decoded whole (one at a time, so at most this many objects
# exist at once); a valid scan is far smaller (under 2 KiB).
ITEM_DECODE_BYTES: Final = 64 * 1024
# Entries read from a larger element's map; a scan has at most eight fields.
ITEM_MAX_ENTRIES: Final = 64

_ARRAY_HEADERS: Final = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])
_MAP_HEADERS: Final = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
_STR_HEADERS: Final = frozenset([*range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB])


class Gunzip:
    """Decodes one gzip body; `members` and `fed` (bytes handed to zlib, an upper bound of
    what it copies) say what it cost. `reserve(n)` is called before `n` more bytes of output
    are kept; it may raise to stop the decoding."""

    __slots__ = ("fed", "limit", "max_members", "members", "reserve")

    def __init__(
        self, limit: int, max_members: int, reserve: Callable[[int], None] | None = None
    ) -> None:
        self.limit = limit
        self.max_members = max_members
        self.reserve = reserve
        self.members = 0
        self.fed = 0

    def __call__(self, data: bytes) -> bytes:
        view = memoryview(data)
        size = len(view)
        limit = self.limit
        out = bytearray()
        pos = 0
        while pos < size:
            if self.members >= self.max_members:
                raise HttpError(
                    400, "too_many_gzip_members", f"more than {self.max_members} gzip members"
                )
            self.members += 1
            decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            feed = GZIP_FIRST_FEED
            while True:
                chunk = view[pos : pos + feed]
                self.fed += len(chunk)
                try:
                    piece = decoder.decompress(chunk, limit + 1 - len(out))
                except zlib.error as exc:
                    raise HttpError(400, "bad_gzip", f"gzip: {exc}") from None
                if len(out) + len(piece) > limit:
                    raise HttpError(
                        413, "body_too_large", f"more than {limit} bytes after gzip decoding"
                    )
                if piece:
                    if self.reserve is not None:
                        self.reserve(len(piece))
                    out += piece
                if decoder.eof:
                    pos += len(chunk) - len(decoder.unused_data)
                    break
                # Not at the member's end, and under the output limit: zlib took all of it.
                pos += len(chunk)
                if pos >= size:
                    raise HttpError(400, "bad_gzip", "gzip: truncated stream")
                feed = min(2 * feed, GZIP_MAX_FEED)
        return bytes(out)


def gunzip(data: bytes, limit: int, max_members: int) -> bytes:
    """A gzip body decoded (members may be concatenated), refusing more than `limit` bytes
    of output or more than `max_members` members before producing them."""
    return Gunzip(limit, max_members)(data)


def json_values_bound(body: bytes) -> int:
    """At least the number of values and keys a JSON text holds: each one but the first is
    preceded by one of `[ { , :` (those inside strings only make it larger)."""
    return len(body) - len(body.translate(None, b"[{,:")) + 1


def check_json_size(body: bytes, max_batch: int) -> None:
    """Refuse (413) a JSON body that could hold more values than `max_batch` scans bring.
    A value and what separates it from the next take two bytes at least, so a body of up
    to twice the cap needs no counting."""
    cap = max_batch * JSON_VALUES_PER_SCAN + 8
    if (len(body) + 1) // 2 > cap and json_values_bound(body) > cap:
        raise HttpError(
            413,
            "batch_too_large",
            f"body holds more than {cap} JSON values; at most {max_batch} scans per request",
        )


def decode_json_batch(body: bytes, max_batch: int) -> list[Any]:
    """The raw scan items of a JSON body `{"scans": [...]}`, or `HttpError`."""
    check_json_size(body, max_batch)
    try:
        obj = unpack_json(body)
    except ScanRejected as exc:
        raise HttpError(400, "undecodable", exc.detail) from None
    if isinstance(obj, dict):
        extra = [k for k in obj if k != "scans"]
        if extra:
            raise HttpError(400, "not_a_batch", f"unknown top-level key {str(extra[0])[:64]!r}")
        items = obj.get("scans")
        if not isinstance(items, list):
            raise HttpError(400, "not_a_batch", '"scans" must be an array of scans')
        if len(items) > max_batch:
            raise _too_many(len(items), max_batch)
        return items
    raise HttpError(400, "not_a_batch", f'expected {{"scans": [...]}}, got {type(obj).__name__}')


def _too_many(count: int, max_batch: int) -> HttpError:
    return HttpError(413, "batch_too_large", f"{count} scans > {max_batch} per request")


def _undecodable(exc: BaseException) -> HttpError:
    return HttpError(400, "undecodable", f"msgpack: {type(exc).__name__}")


def _unpacker(body: bytes, start: int, end: int) -> msgpack.Unpacker:
    """An unpacker over `body[start:end]` that reads it in windows (no copy of the whole)."""
    stream = io.BytesIO(body)
    stream.seek(start)
    size = max(end - start, 1)
    return msgpack.Unpacker(
        stream,
        read_size=min(64 * 1024, size),
        max_buffer_size=size,
        raw=False,
        strict_map_key=True,
        timestamp=0,
    )


class MsgpackItems:
    """The elements of a msgpack batch body, decoded one at a time on demand.

    Constructing it checks the body's shape (an array of items, or a map with the single
    key `scans` holding one) and the element count against `max_batch`, reading headers
    only; `HttpError` otherwise. `item(i)` decodes element `i` (or raises `ScanRejected`),
    `raw(i)` gives its bytes as received."""

    __slots__ = ("_body", "_count", "_ends", "_start", "_unpacker")

    def __init__(self, body: bytes, max_batch: int) -> None:
        self._body = body
        if not body:
            raise HttpError(400, "undecodable", "msgpack: empty body")
        unpacker = _unpacker(body, 0, len(body))
        try:
            count = self._array_header(unpacker)
        except HttpError:
            raise
        except Exception as exc:  # OutOfData, StackError, ...: msgpack's family of errors
            raise _undecodable(exc) from None
        if count > max_batch:
            raise _too_many(count, max_batch)
        self._count = count
        self._start = unpacker.tell()
        self._unpacker = unpacker
        self._ends: list[int] | None = None

    def _array_header(self, unpacker: msgpack.Unpacker) -> int:
        body = self._body
        first = body[0]
        if first in _ARRAY_HEADERS:
            return int(unpacker.read_array_header())
        if first not in _MAP_HEADERS:
            # a scalar (one object, whatever its size) or garbage
            got = type(msgpack.unpackb(body, raw=False, strict_map_key=True, timestamp=0))
            raise HttpError(
                400,
                "not_a_batch",
                f"expected an array of scans or {{scans: [...]}}, got {got.__name__}",
            )
        keys = unpacker.read_map_header()
        if keys != 1:
            raise HttpError(
                400, "not_a_batch", f"a batch map has one key, scans; this one has {keys}"
            )
        pos = unpacker.tell()
        key = unpacker.unpack() if pos < len(body) and body[pos] in _STR_HEADERS else None
        if key != "scans":
            name = repr(key[:64]) if isinstance(key, str) else "that is not a string"
            raise HttpError(400, "not_a_batch", f"unknown top-level key {name}")
        pos = unpacker.tell()
        if pos >= len(body) or body[pos] not in _ARRAY_HEADERS:
            raise HttpError(400, "not_a_batch", '"scans" must be an array of scans')
        return int(unpacker.read_array_header())

    def __len__(self) -> int:
        return self._count

    def _spans(self) -> list[int]:
        """Where each element ends, found by skipping (nothing is built); a truncated body
        or bytes after the batch are `HttpError(400)`."""
        if self._ends is None:
            unpacker = self._unpacker
            ends: list[int] = []
            try:
                for _ in range(self._count):
                    unpacker.skip()
                    ends.append(unpacker.tell())
            except Exception as exc:  # OutOfData, StackError, ...
                raise _undecodable(exc) from None
            end = ends[-1] if ends else self._start
            if end != len(self._body):
                raise HttpError(400, "undecodable", "msgpack: ExtraData after the batch")
            self._ends = ends
        return self._ends

    def check(self) -> None:
        """Walk the whole body (`HttpError` if it is malformed); `item` may follow."""
        self._spans()

    def _bounds(self, index: int) -> tuple[int, int]:
        ends = self._spans()
        return (ends[index - 1] if index else self._start), ends[index]

    def size(self, index: int) -> int:
        start, end = self._bounds(index)
        return end - start

    def raw(self, index: int, limit: int | None = None) -> bytes:
        """Element `index` as received (its first `limit` bytes)."""
        start, end = self._bounds(index)
        return self._body[start : end if limit is None else min(end, start + limit)]

    def item(self, index: int) -> Any:
        start, end = self._bounds(index)
        try:
            if end - start <= ITEM_DECODE_BYTES:
                return msgpack.unpackb(
                    memoryview(self._body)[start:end], raw=False, strict_map_key=True, timestamp=0
                )
            return self._shallow(start, end)
        except ScanRejected:
            raise
        except Exception as exc:  # msgpack raises a family of unrelated types on bad input
            raise ScanRejected("undecodable", None, f"msgpack: {type(exc).__name__}") from None

    def _shallow(self, start: int, end: int) -> Any:
        """A large element without its nested containers: they cannot be a scan's fields,
        so an empty one of the same kind stands for each (the contract names it the same).
        A map is read up to its first key the contract does not know, which is all the
        contract looks at then; a map of more than `ITEM_MAX_ENTRIES` known keys (repeated,
        since there are eight) is undecodable."""
        body = self._body
        first = body[start]
        if first in _ARRAY_HEADERS:
            return []
        unpacker = _unpacker(body, start, end)
        if first not in _MAP_HEADERS:
            return unpacker.unpack()  # one scalar: costs what its bytes cost
        entries = unpacker.read_map_header()
        obj: dict[Any, Any] = {}
        for n in range(entries):
            if n == ITEM_MAX_ENTRIES:
                raise ScanRejected(
                    "undecodable",
                    None,
                    f"msgpack: a map of {entries} > {ITEM_MAX_ENTRIES} entries",
                )
            if body[start + unpacker.tell()] in _ARRAY_HEADERS | _MAP_HEADERS:
                raise ScanRejected("undecodable", None, "msgpack: a map key that is a container")
            key = unpacker.unpack()
            if not isinstance(key, (str, bytes)):
                raise ScanRejected("undecodable", None, "msgpack: a map key of another type")
            head = body[start + unpacker.tell()]
            if head in _ARRAY_HEADERS:
                unpacker.skip()
                obj[key] = []
            elif head in _MAP_HEADERS:
                unpacker.skip()
                obj[key] = {}
            else:
                obj[key] = unpacker.unpack()
            if key not in FIELDS:
                break
        return obj
