"""The scan event, wire contract v1 (docs/architecture.md, "The wire contract v1"), and
its validation.

Every rejection is a `ScanRejected` carrying a machine-readable `reason` code and the
`field` it concerns; nothing else is ever raised for bad input.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

SCHEMA_VERSION: Final = 1
MAX_ID_LEN: Final = 64
DEFAULT_MAX_SKEW_MS: Final = 5 * 60 * 1000
# Scans before PC-COVID existed are corrupt clocks, not late uploads.
MIN_SCANNED_AT_MS: Final = 1_577_836_800_000  # 2020-01-01T00:00:00Z
MAX_SCANNED_AT_MS: Final = 4_102_444_800_000  # 2100-01-01T00:00:00Z

# The ISO-8601 profile we accept: extended calendar date, `T` (or space), hh:mm[:ss[.f]],
# then `Z` or a +hh[[:]mm] offset. The offset is optional here only so that a naive time gets
# its own message below. `datetime.fromisoformat` alone is too lenient for a wire contract:
# it takes any separator character, ignores text after a NUL, and accepts week dates.
_ISO_8601: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?",
    re.ASCII,
)

Kind = Literal["checkin", "checkout"]
KINDS: Final[frozenset[str]] = frozenset({"checkin", "checkout"})

ID_FIELDS: Final = ("event_id", "person_id", "premises_id")
# Fields a caller may send; `gateway_id` and `received_at` are overwritten by the gateway.
FIELDS: Final = frozenset({*ID_FIELDS, "scanned_at", "kind", "gateway_id", "received_at", "schema"})

Reason = Literal[
    "undecodable",
    "not_a_map",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "empty_id",
    "id_too_long",
    "bad_id_chars",
    "bad_timestamp",
    "future_timestamp",
    "unknown_kind",
    "unknown_schema",
]


class ScanRejected(ValueError):
    """A scan that breaks the contract. `reason` is a stable code, `field` the culprit."""

    def __init__(self, reason: Reason, field: str | None = None, detail: str = "") -> None:
        self.reason: Reason = reason
        self.field = field
        self.detail = detail
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"{self.reason}{where}{': ' + self.detail if self.detail else ''}"

    def as_dict(self) -> dict[str, str | None]:
        return {"reason": self.reason, "field": self.field, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ScanEvent:
    """One QR scan. Times are epoch milliseconds UTC."""

    event_id: str
    person_id: str
    premises_id: str
    scanned_at: int
    kind: Kind = "checkin"
    gateway_id: str = ""
    received_at: int | None = None
    schema: int = SCHEMA_VERSION

    def to_wire(self) -> dict[str, object]:
        """The wire map (msgpack and JSON share it)."""
        return {
            "event_id": self.event_id,
            "person_id": self.person_id,
            "premises_id": self.premises_id,
            "scanned_at": self.scanned_at,
            "kind": self.kind,
            "gateway_id": self.gateway_id,
            "received_at": self.received_at,
            "schema": self.schema,
        }


def now_ms() -> int:
    """The wall clock in epoch milliseconds (UTC), the unit of every time in the contract."""
    return time.time_ns() // 1_000_000


def _int_text(value: int) -> str:
    """`str(value)` for sane ints; a huge one would raise ValueError (4300-digit limit)."""
    if -(10**30) < value < 10**30:
        return str(value)
    return f"{'-' if value < 0 else ''}2**{value.bit_length() - 1}+"


def _key_text(key: object) -> str:
    """A short printable name for a map key we do not know, whatever its type."""
    if isinstance(key, str):
        text = key if key and key.isprintable() else ascii(key)
    elif isinstance(key, bytes):
        text = ascii(key[:MAX_ID_LEN])
    else:
        text = f"<{type(key).__name__} key>"
    return text[:MAX_ID_LEN]


def _check_id(obj: Mapping[str, object], name: str, *, required: bool = True) -> str:
    if name not in obj:
        if required:
            raise ScanRejected("missing_field", name)
        return ""
    value = obj[name]
    if not isinstance(value, str):
        raise ScanRejected("wrong_type", name, f"expected string, got {type(value).__name__}")
    if not value:
        if required:
            raise ScanRejected("empty_id", name)
        return ""
    if len(value) > MAX_ID_LEN:
        raise ScanRejected("id_too_long", name, f"{len(value)} > {MAX_ID_LEN} characters")
    # Control characters break logs, CSV exports and terminal tables downstream.
    if not value.isprintable():
        raise ScanRejected("bad_id_chars", name, "control or non-printable characters")
    return value


def parse_timestamp(value: object, name: str) -> int:
    """Epoch milliseconds (int) or ISO-8601 with an explicit offset, to epoch ms."""
    if isinstance(value, bool):  # bool is an int subclass; True is not a time
        raise ScanRejected("wrong_type", name, "expected epoch milliseconds or ISO-8601")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, str):
        if _ISO_8601.fullmatch(value) is None:
            raise ScanRejected("bad_timestamp", name, "not ISO-8601 (YYYY-MM-DDThh:mm:ss+hh:mm)")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ScanRejected("bad_timestamp", name, "not ISO-8601") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise ScanRejected("bad_timestamp", name, "ISO-8601 without an offset")
        # Exact integer arithmetic: a float round trip would shift some milliseconds.
        delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
        ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    else:
        got = type(value).__name__
        raise ScanRejected(
            "wrong_type", name, f"expected epoch milliseconds or ISO-8601, got {got}"
        )
    if ms < MIN_SCANNED_AT_MS or ms > MAX_SCANNED_AT_MS:
        raise ScanRejected("bad_timestamp", name, f"{_int_text(ms)} is out of range")
    return ms


def parse_scan(
    obj: object,
    *,
    now: int | None = None,
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
    gateway_id: str | None = None,
    received_at: int | None = None,
) -> ScanEvent:
    """Validate one decoded scan (a map) into a `ScanEvent`, or raise `ScanRejected`.

    `gateway_id` and `received_at`, when given, replace whatever the caller sent:
    the gateway stamps them from the caller's credentials and its own clock.
    """
    if not isinstance(obj, Mapping):
        raise ScanRejected("not_a_map", None, f"got {type(obj).__name__}")
    for key in obj:
        if key not in FIELDS:
            raise ScanRejected("unknown_field", _key_text(key))
    schema = obj.get("schema", SCHEMA_VERSION)
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise ScanRejected("wrong_type", "schema", "expected integer")
    if schema != SCHEMA_VERSION:
        raise ScanRejected(
            "unknown_schema", "schema", f"{_int_text(schema)} (supported: {SCHEMA_VERSION})"
        )
    event_id = _check_id(obj, "event_id")
    person_id = _check_id(obj, "person_id")
    premises_id = _check_id(obj, "premises_id")
    if "scanned_at" not in obj:
        raise ScanRejected("missing_field", "scanned_at")
    scanned_at = parse_timestamp(obj["scanned_at"], "scanned_at")
    reference = now if now is not None else now_ms()
    if scanned_at > reference + max_skew_ms:
        raise ScanRejected(
            "future_timestamp", "scanned_at", f"{scanned_at - reference} ms ahead of server time"
        )
    kind = obj.get("kind", "checkin")
    if not isinstance(kind, str):
        raise ScanRejected("wrong_type", "kind", "expected string")
    if kind not in KINDS:
        raise ScanRejected("unknown_kind", "kind", f"{kind[:MAX_ID_LEN]!r}")
    if gateway_id is None:
        gateway_id = _check_id(obj, "gateway_id", required=False)
    if received_at is None:
        raw_received = obj.get("received_at")
        received_at = None if raw_received is None else parse_timestamp(raw_received, "received_at")
    return ScanEvent(
        event_id=event_id,
        person_id=person_id,
        premises_id=premises_id,
        scanned_at=scanned_at,
        kind="checkin" if kind == "checkin" else "checkout",
        gateway_id=gateway_id,
        received_at=received_at,
        schema=SCHEMA_VERSION,
    )
