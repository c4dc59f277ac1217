"""Kafka connection and topic layout, shared by every stage that talks to Kafka.

Env: SCANTRACE_KAFKA__BOOTSTRAP, SCANTRACE_KAFKA__TOPIC_PREFIX, SCANTRACE_KAFKA__PARTITIONS ...
(nested under each component's settings with `env_nested_delimiter="__"`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


class KafkaSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    bootstrap: str = Field(
        default="", description="host:port[,host:port]; empty = the local services' broker"
    )
    # Tests and shared clusters isolate themselves with a prefix; production leaves it empty.
    topic_prefix: str = ""
    # scans.raw and premises must have the same count: the worker joins them per partition.
    partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    raw_topic: str = "scans.raw"
    enriched_topic: str = "scans.enriched"
    dlq_topic: str = "scans.dlq"
    premises_topic: str = "premises"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def raw(self) -> str:
        return self.topic(self.raw_topic)

    @property
    def enriched(self) -> str:
        return self.topic(self.enriched_topic)

    @property
    def dlq(self) -> str:
        return self.topic(self.dlq_topic)

    @property
    def premises(self) -> str:
        return self.topic(self.premises_topic)

    def topic_specs(self) -> list[TopicSpec]:
        """Every source topic with its partition count; the premises registry is compacted."""
        n = self.partitions
        return [
            TopicSpec(self.raw, n, {}),
            TopicSpec(self.enriched, n, {}),
            TopicSpec(self.dlq, n, {}),
            TopicSpec(self.premises, n, {"cleanup.policy": "compact"}),
        ]

    def servers(self) -> list[str]:
        if not self.bootstrap:
            raise RuntimeError(
                "no Kafka bootstrap: run `scantrace services up` or set SCANTRACE_KAFKA__BOOTSTRAP"
            )
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]
