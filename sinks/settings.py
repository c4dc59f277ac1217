"""Settings of the sink component, from SCANTRACE_* environment variables.

The connections are shared with every component (`SCANTRACE_KAFKA__BOOTSTRAP`,
`SCANTRACE_CLICKHOUSE__URL`, ...); the sink's own options nest under `sink`:
`SCANTRACE_SINK__BATCH_ROWS`, `SCANTRACE_SINK__BATCH_SECONDS`, `SCANTRACE_SINK__METRICS_PORT`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.kafka_settings import KafkaSettings
from sinks.clickhouse_settings import ClickHouseSettings


class SinkOptions(BaseModel):
    """How the sink batches, retries and reports. Durations in seconds.

    - `batch_rows`: rows per insert; a partition's records are cut into inserts of this
      many (a frame of scans is not split: an insert ends with the record that reaches it;
      the last one of a quiet partition may be shorter, see `sinks.batch`).
    - `batch_seconds`: a partition that has caught up with its topic is flushed when its
      oldest buffered record is this old; one that has not is flushed at the latest after
      `max_wait_factor` times this.
    - `retry_initial_seconds` .. `retry_max_seconds`: backoff while ClickHouse is down or
      answers with a transient error (the consumer is paused meanwhile).
    - `rollup_seconds`: how often the days that received scans are recomputed in the
      report rollup (`premises_daily`). A refresh reads the whole day's scans for its exact
      distinct counts (seconds of a ClickHouse core once a day holds millions) and the
      report is weekly, so every 5 minutes (it was every minute: in `python -m bench e2e`
      that was five growing refreshes competing with the stream for the 2 cores).
    - `metrics_port`: serve /metrics on `metrics_host:metrics_port`; 0 = off.
    - `stall_seconds`: `/healthz` on the metrics port answers 503 once the consumer loop
      has not turned for this long (a round takes well under a second, idle or busy).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    group_id: str = "scantrace-sink"
    batch_rows: int = Field(default=50_000, ge=1, le=1_000_000)
    batch_seconds: float = Field(default=1.0, gt=0)
    max_wait_factor: float = Field(default=5.0, ge=1)
    retry_initial_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=30.0, gt=0)
    rollup_seconds: float = Field(default=300.0, gt=0)
    # Kafka fetch sizes: large enough that one fetch fills a batch of small records.
    max_partition_fetch_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    fetch_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    # Records of aborted transactions (a worker under exactly_once) are never stored.
    isolation_level: str = Field(default="read_committed", pattern="^read_(committed|uncommitted)$")
    # Prometheus scrapes it from other hosts (deploy/); it is off unless a port is set.
    metrics_host: str = "0.0.0.0"  # noqa: S104
    metrics_port: int = Field(default=0, ge=0, le=65535)
    stall_seconds: float = Field(default=120.0, gt=0)
    # On SIGTERM: how long the last flush may take before the sink gives up (uncommitted
    # records are then read again by whoever owns the partition next).
    shutdown_timeout_seconds: float = Field(default=30.0, ge=0)


class SinkSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCANTRACE_", env_nested_delimiter="__", frozen=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    sink: SinkOptions = Field(default_factory=SinkOptions)

    def with_options(self, **changes: object) -> SinkSettings:
        """A copy with some sink options replaced (flags over environment), validated."""
        options = SinkOptions.model_validate({**self.sink.model_dump(), **changes})
        return self.model_copy(update={"sink": options})
