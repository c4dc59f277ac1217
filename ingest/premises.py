"""The premises registry record (docs/architecture.md, "Premises and dead letters") and
category dwell times."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Final

import msgpack

# Minutes a visit is assumed to last when no check-out was scanned.
DWELL_MINUTES: Final[dict[str, int]] = {
    "office": 240,
    "school": 300,
    "market": 45,
    "supermarket": 40,
    "mall": 90,
    "bus_station": 30,
    "tourist_site": 120,
    "accommodation": 720,
    "factory": 480,
    "shop": 20,
    "restaurant": 60,
    "hospital": 120,
    "religious": 60,
    "other": 30,
}
CATEGORIES: Final = frozenset(DWELL_MINUTES)
CSV_COLUMNS: Final = (
    "premises_id",
    "name",
    "category",
    "district",
    "ward",
    "agency",
    "address",
    "lat",
    "lon",
)


@dataclass(frozen=True, slots=True)
class Premises:
    premises_id: str
    name: str
    category: str
    district: str
    ward: str = ""
    agency: str = ""
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    # Epoch ms of the import that wrote this version; the latest version wins downstream.
    version: int = 0

    @property
    def dwell_minutes(self) -> int:
        return DWELL_MINUTES.get(self.category, DWELL_MINUTES["other"])

    def to_wire(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_wire(cls, obj: dict[str, object]) -> Premises:
        return cls(**obj)  # type: ignore[arg-type]


def encode_premises(p: Premises) -> bytes:
    return msgpack.packb(p.to_wire(), use_bin_type=True)  # type: ignore[no-any-return]


def decode_premises(data: bytes) -> Premises:
    obj = msgpack.unpackb(data, raw=False)
    if not isinstance(obj, dict):
        raise ValueError("premises record is not a map")
    return Premises.from_wire(obj)
