"""`scantrace topics describe`: the pipeline's topics as the brokers see them (partitions,
leaders, replicas, in-sync replicas, under-replicated partitions) and how far each
component's consumer group is behind, from the Kafka admin API (kafka-python).

A partition is under-replicated when fewer replicas are in sync than it has: one more
broker loss and writes with `acks=all` stop (below `min.insync.replicas`), or data held
by one broker only is lost with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import CoordinatorNotAvailableError

from ingest.kafka_settings import KafkaSettings


@dataclass(frozen=True, slots=True)
class PartitionState:
    partition: int
    leader: int  # -1: no leader (the partition is offline)
    replicas: list[int]
    isr: list[int]

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)


@dataclass(frozen=True, slots=True)
class TopicState:
    topic: str
    partitions: list[PartitionState]
    error: str = ""  # the broker's error for this topic (e.g. it does not exist)

    @property
    def under_replicated(self) -> int:
        return sum(p.under_replicated for p in self.partitions)


@dataclass(frozen=True, slots=True)
class GroupLag:
    """A component's consumer group on one topic: committed offsets against the ends."""

    component: str
    group: str
    topic: str
    lag: int
    partitions_committed: int


@dataclass(frozen=True, slots=True)
class Description:
    brokers: list[int]
    topics: list[TopicState]
    lags: list[GroupLag] = field(default_factory=list)

    @property
    def under_replicated(self) -> int:
        return sum(t.under_replicated for t in self.topics)

    def as_json(self) -> dict[str, Any]:
        return {
            "brokers": self.brokers,
            "under_replicated_partitions": self.under_replicated,
            "topics": [
                {
                    "topic": t.topic,
                    "error": t.error or None,
                    "under_replicated_partitions": t.under_replicated,
                    "partitions": [
                        {**asdict(p), "under_replicated": p.under_replicated} for p in t.partitions
                    ],
                }
                for t in self.topics
            ],
            "consumer_lag": [asdict(g) for g in self.lags],
        }


def _admin(kafka: KafkaSettings) -> KafkaAdminClient:
    return KafkaAdminClient(
        **kafka.kafka_python_config(), client_id="scantrace-topics", request_timeout_ms=10_000
    )


def topic_states(admin: KafkaAdminClient, names: list[str]) -> list[TopicState]:
    out = []
    for t in admin.describe_topics(names):
        code = int(t.get("error_code") or 0)
        parts = sorted(
            (
                PartitionState(
                    partition=int(p["partition_index"]),
                    leader=int(p["leader_id"]),
                    replicas=sorted(int(r) for r in p["replica_nodes"]),
                    isr=sorted(int(r) for r in p["isr_nodes"]),
                )
                for p in t.get("partitions") or []
            ),
            key=lambda p: p.partition,
        )
        out.append(TopicState(t["name"], parts, f"error code {code}" if code else ""))
    return sorted(out, key=lambda t: names.index(t.topic) if t.topic in names else len(names))


def _group_offsets(admin: KafkaAdminClient, group: str) -> dict[TopicPartition, Any]:
    """The committed offsets of `group`; none before any consumer group exists (the
    brokers make their offsets topic at the first group's first request)."""
    try:
        offsets: dict[TopicPartition, Any] = admin.list_group_offsets(group).get(group, {})
    except CoordinatorNotAvailableError:
        return {}
    return offsets


def under_replicated(kafka: KafkaSettings) -> dict[str, int]:
    """Under-replicated partitions of each of the pipeline's topics."""
    admin = _admin(kafka)
    try:
        names = [s.name for s in kafka.topic_specs()]
        return {t.topic: t.under_replicated for t in topic_states(admin, names)}
    finally:
        admin.close()


def describe(kafka: KafkaSettings, groups: dict[str, tuple[str, list[str]]]) -> Description:
    """The pipeline's topics, and the lag of each `{component: (group, topics)}`."""
    names = [s.name for s in kafka.topic_specs()]
    admin = _admin(kafka)
    try:
        brokers = sorted(int(b["broker_id"]) for b in admin.describe_cluster()["brokers"])
        topics = topic_states(admin, names)
        committed = {
            component: _group_offsets(admin, group) for component, (group, _) in groups.items()
        }
    finally:
        admin.close()
    tps = [TopicPartition(t.topic, p.partition) for t in topics for p in t.partitions]
    consumer = KafkaConsumer(**kafka.kafka_python_config(), client_id="scantrace-topics")
    try:
        ends = consumer.end_offsets(tps) if tps else {}
        starts = consumer.beginning_offsets(tps) if tps else {}
    finally:
        consumer.close()
    lags = []
    for component, (group, topics_read) in groups.items():
        offsets = committed[component]
        for topic in topics_read:
            mine = [tp for tp in tps if tp.topic == topic]
            lag = 0
            done = 0
            for tp in mine:
                meta = offsets.get(tp)
                position = meta.offset if meta is not None and meta.offset >= 0 else None
                if position is not None:
                    done += 1
                lag += max(
                    0, ends.get(tp, 0) - (starts.get(tp, 0) if position is None else position)
                )
            lags.append(GroupLag(component, group, topic, lag, done))
    return Description(brokers, topics, lags)


def render(d: Description) -> str:
    """The description as text tables."""
    lines = [
        f"brokers: {', '.join(map(str, d.brokers))}; "
        f"under-replicated partitions: {d.under_replicated}",
        "",
        f"{'topic':<36} {'part':>4} {'leader':>6}  {'replicas':<12} {'isr':<12} state",
    ]
    for t in d.topics:
        if t.error:
            lines.append(f"{t.topic:<36} {t.error}")
        for p in t.partitions:
            state = (
                "OFFLINE" if p.leader < 0 else "UNDER-REPLICATED" if p.under_replicated else "ok"
            )
            lines.append(
                f"{t.topic:<36} {p.partition:>4} {p.leader:>6}  "
                f"{','.join(map(str, p.replicas)):<12} {','.join(map(str, p.isr)):<12} {state}"
            )
    if d.lags:
        lines += ["", f"{'component':<10} {'group':<32} {'topic':<36} {'lag':>10} committed"]
        for g in d.lags:
            lines.append(
                f"{g.component:<10} {g.group:<32} {g.topic:<36} {g.lag:>10,} "
                f"{g.partitions_committed} partitions"
            )
    return "\n".join(lines)
