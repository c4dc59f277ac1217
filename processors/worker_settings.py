"""Settings of the Faust worker (`scantrace worker`), from SCANTRACE_* environment variables.

The Kafka connection is shared with every component (`SCANTRACE_KAFKA__BOOTSTRAP`,
`SCANTRACE_KAFKA__TOPIC_PREFIX`, `SCANTRACE_KAFKA__PARTITIONS`, ...); the core's horizons
nest under `core` (`SCANTRACE_CORE__DEDUP_HORIZON_MS`, ...), the worker's own options under
`worker` (`SCANTRACE_WORKER__PROCESSING_GUARANTEE`, `SCANTRACE_WORKER__METRICS_PORT`, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.kafka_settings import KafkaSettings
from processors.settings import ProcessorSettings


class WorkerOptions(BaseModel):
    """How the worker runs. Durations in seconds.

    - `app_id`: Faust application id, also the Kafka consumer group and the prefix of the
      table changelog topics; the topic prefix of `kafka` is put in front of it.
    - `processing_guarantee`: `at_least_once` (outputs are acknowledged by Kafka before the
      input offsets are committed; a crash can repeat outputs, which the idempotent store
      absorbs) or `exactly_once` (outputs, state changes and input offsets of a partition
      committed in one Kafka transaction; read `scans.enriched` with read_committed).
    - `batch_max_records`: most records fetched and processed as one batch.
    - `expire_interval_seconds`: how often parked scans past their timeout are
      dead-lettered and old dedup memory dropped.
    - `data_dir`: Faust's working folder (its tables are in memory and come back from
      their changelog topics on start). None: the caller picks it (`scantrace worker`:
      `worker-data` in the local state directory; Faust's own CLI: its `--datadir`).
    - `metrics_host`, `metrics_port`: serve /metrics there; port 0 = off.
    - `session_timeout_seconds`: a worker that stops heartbeating (killed, partitioned)
      leaves the consumer group after this long and its partitions move; a restarted one
      waits at most this long to get them back. Heartbeats run in the consumer's own
      thread, so a long batch does not count against it.
    - `produce_timeout_seconds`: how long Kafka may take to acknowledge what the worker
      writes before the batch fails and the worker stops (its offsets uncommitted); also
      bounds a graceful stop while Kafka is unreachable.
    - `max_record_bytes`: the largest record the worker writes (the broker's default
      `message.max.bytes` is about 1 MB); a dead letter above it carries its raw bytes cut.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_id: str = Field(default="scantrace-worker", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    batch_max_records: int = Field(default=10_000, ge=1, le=1_000_000)
    expire_interval_seconds: float = Field(default=5.0, gt=0)
    commit_interval_seconds: float = Field(default=2.8, gt=0)
    session_timeout_seconds: float = Field(default=10.0, ge=6.0, le=300.0)
    produce_timeout_seconds: float = Field(default=30.0, ge=1.0)
    data_dir: Path | None = None
    metrics_host: str = "0.0.0.0"  # noqa: S104  # scraped from other hosts (deploy/)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    max_record_bytes: int = Field(default=1_000_000, ge=10_000)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCANTRACE_", env_nested_delimiter="__", frozen=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    core: ProcessorSettings = Field(default_factory=ProcessorSettings)
    worker: WorkerOptions = Field(default_factory=WorkerOptions)

    @property
    def app_id(self) -> str:
        """The Faust id: topic prefix + app id, so tests and shared clusters stay apart."""
        return f"{self.kafka.topic_prefix}{self.worker.app_id}"

    def with_options(self, **changes: object) -> WorkerSettings:
        """A copy with some worker options replaced (flags over environment), validated."""
        options = WorkerOptions.model_validate({**self.worker.model_dump(), **changes})
        return self.model_copy(update={"worker": options})
