"""Settings of the pure processors core.

A plain frozen pydantic model, not `BaseSettings`: the Faust app's settings (read from
`SCANTRACE_...`) nest it, e.g. `SCANTRACE_PROCESSORS__CORE__DEDUP_HORIZON_MS`.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from ingest.contract import DEFAULT_MAX_SKEW_MS

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS


class ProcessorSettings(BaseModel):
    """How long the core remembers, waits and tolerates. All durations in milliseconds.

    - `dedup_horizon_ms`: a scan whose event_id was first seen at most this long before
      (by arrival time: `received_at` when the gateway stamped it, else processing time)
      is a duplicate. It also bounds how long the last kept scan of a person, premises and
      kind is remembered for repeat suppression.
    - `repeat_window_ms`: a scan within this distance of `scanned_at`, either side, of the
      last kept scan of the same person, premises and kind is a repeat (a double tap).
    - `park_timeout_ms`: how long (processing time) a scan for an unknown premises waits
      for the premises before it is dead-lettered as `unknown_premises`.
    - `max_skew_ms`: scans from further in the future than this are rejected.
    - `max_parked_per_premises`: scans parked for one unknown premises beyond this many are
      dead-lettered at once as `unknown_premises` (with their raw bytes, for a replay once
      the premises is registered). A premises' parked scans are one changelog record,
      which must stay under Kafka's record size limit (about 350 bytes a scan: 2,000 fit
      in 1 MB) and is rewritten at each batch.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dedup_horizon_ms: int = Field(default=24 * HOUR_MS, gt=0)
    repeat_window_ms: int = Field(default=5 * MINUTE_MS, ge=0)
    park_timeout_ms: int = Field(default=72 * HOUR_MS, gt=0)
    max_skew_ms: int = Field(default=DEFAULT_MAX_SKEW_MS, ge=0)
    max_parked_per_premises: int = Field(default=2_000, gt=0)
