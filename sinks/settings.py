"""Settings of the sink component, from SCANTRACE_* environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.kafka_settings import KafkaSettings
from sinks.clickhouse_settings import ClickHouseSettings


class SinkSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCANTRACE_", env_nested_delimiter="__", frozen=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
