"""Dead-letter records: every event that is not stored ends here, with its reason and bytes.

Written to the dead-letter topic by the gateway and the worker, and stored by the sink in
the `dead_letters` table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import msgpack


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stage: str  # gateway | worker | sink
    reason: str  # a ScanRejected reason code, unknown_premises, exception, ...
    raw: bytes
    detail: str = ""
    topic: str = ""
    partition: int = -1
    offset: int = -1
    at: int = 0  # epoch ms when it was dead-lettered
    event_id: str = ""  # when known; lets the sink dedup dead letters too

    def to_wire(self) -> dict[str, object]:
        return asdict(self)


def encode_dead_letter(dl: DeadLetter) -> bytes:
    return msgpack.packb(dl.to_wire(), use_bin_type=True)  # type: ignore[no-any-return]


def decode_dead_letter(data: bytes) -> DeadLetter:
    obj = msgpack.unpackb(data, raw=False)
    if not isinstance(obj, dict):
        raise ValueError("dead letter is not a map")
    return DeadLetter(**obj)
