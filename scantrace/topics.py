"""`scantrace topics describe`: the pipeline's topics as the brokers see them (partitions,
leaders, replicas, in-sync replicas, under-replicated partitions) and how far each
component's consumer group is behind, from the Kafka admin API (kafka-python).
`scantrace topics create`: those topics made as the settings describe them (the end of
this module).

A partition is under-replicated when fewer replicas are in sync than it has: one more
broker loss and writes with `acks=all` stop (below `min.insync.replicas`), or data held
by one broker only is lost with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final, Literal

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka import errors as kafka_errors
from kafka.errors import CoordinatorNotAvailableError

from ingest.errors import InvalidInput, ScantraceError
from ingest.kafka_probe import KafkaRefused, check_kafka
from ingest.kafka_settings import ENV, KafkaSettings, TopicSpec


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


# -- topics create --------------------------------------------------------------------------

# Kafka's error codes in a topic's metadata and in the CreateTopics/CreatePartitions answers.
UNKNOWN_TOPIC: Final = 3
TOPIC_EXISTS: Final = 36
DENIED: Final = frozenset({29, 31})  # TOPIC_, CLUSTER_AUTHORIZATION_FAILED
# INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_REPLICA_ASSIGNMENT, INVALID_CONFIG,
# POLICY_VIOLATION: what was asked is wrong, asking again cannot help.
REFUSED_AS_ASKED: Final = frozenset({37, 38, 39, 40, 44})
PAST: Final = {"create": "created", "keep": "exists"}
Action = Literal["create", "keep"]


@dataclass(frozen=True, slots=True)
class Existing:
    """A topic as the brokers hold it."""

    partitions: int
    replication_factor: int


@dataclass(frozen=True, slots=True)
class TopicStep:
    """What `topics create` does with one topic, and what the topic is afterwards:
    `partitions` and `replication_factor` are the topic's once the step ran; `config`, what
    a created topic gets (a kept one keeps its own)."""

    topic: str
    action: Action
    partitions: int
    replication_factor: int
    config: dict[str, str]
    asked_partitions: int
    asked_replication: int

    def notes(self) -> list[str]:
        """Where a kept topic differs from what was asked (nothing is changed for it)."""
        out = []
        if self.action == "keep" and self.partitions > self.asked_partitions:
            out.append(f"asked {self.asked_partitions} partitions")
        if self.action == "keep" and self.replication_factor != self.asked_replication:
            out.append(f"asked replication {self.asked_replication}")
        return out


@dataclass(frozen=True, slots=True)
class Created:
    brokers: int
    steps: list[TopicStep]

    def as_json(self) -> dict[str, Any]:
        return {
            "brokers": self.brokers,
            "topics": [
                {
                    "topic": s.topic,
                    "state": PAST[s.action],
                    "partitions": s.partitions,
                    "replication_factor": s.replication_factor,
                    "config": s.config if s.action == "create" else None,
                    "notes": s.notes(),
                }
                for s in self.steps
            ],
        }


def plan_topics(
    specs: list[TopicSpec],
    existing: dict[str, Existing],
    brokers: int,
    replication_factor: int,
    min_insync_replicas: int,
) -> list[TopicStep]:
    """What to do with each topic of `specs`: create it when missing, else keep it as it
    is (its configs and a larger partition count included). Raises `InvalidInput`, before
    anything is done, for a `min.insync.replicas` above the replication factor, a
    replication factor above the brokers' count when a topic must be created, and a topic
    with fewer partitions than asked.

    Partitions are never added: a key would then hash to another partition, and the
    worker's per-partition state (its tables, their changelogs, the premises registry it
    joins scans with) would no longer hold the keys its partitions receive."""
    if min_insync_replicas > replication_factor:
        raise InvalidInput(
            f"min.insync.replicas {min_insync_replicas} is more than the replication factor "
            f"{replication_factor}: every write with acks=all would be refused",
            hint=f"give --min-insync-replicas {max(1, replication_factor - 1)} "
            "(the default: the replication factor minus one, at least 1)",
        )
    if replication_factor > brokers and any(s.name not in existing for s in specs):
        raise InvalidInput(
            f"replication factor {replication_factor} needs {replication_factor} brokers; "
            f"the cluster has {brokers}",
            hint=f"give --replication-factor (SCANTRACE_KAFKA__REPLICATION_FACTOR) of at most "
            f"{brokers}, or start more brokers",
        )
    short = [s for s in specs if s.name in existing and existing[s.name].partitions < s.partitions]
    if short:
        have = ", ".join(f"{s.name} has {existing[s.name].partitions}" for s in short)
        keep = min(existing[s.name].partitions for s in short)
        raise InvalidInput(
            f"topics with fewer partitions than the {short[0].partitions} asked: {have}; "
            "partitions are not added to existing topics",
            hint=f"keep them with --partitions {keep} (SCANTRACE_KAFKA__PARTITIONS), or make "
            "new topics (another SCANTRACE_KAFKA__TOPIC_PREFIX)",
        )
    steps = []
    for spec in specs:
        config = {**spec.config, "min.insync.replicas": str(min_insync_replicas)}
        had = existing.get(spec.name)
        asked = (spec.partitions, replication_factor)
        if had is None:
            steps.append(TopicStep(spec.name, "create", *asked, config, *asked))
        else:
            steps.append(
                TopicStep(spec.name, "keep", had.partitions, had.replication_factor, config, *asked)
            )
    return steps


def create_topics(
    kafka: KafkaSettings,
    *,
    min_insync_replicas: int | None = None,
    timeout_ms: int = 30_000,
) -> Created:
    """Make the pipeline's topics (`kafka.topic_specs()`, with `kafka`'s partitions and
    replication factor) as `plan_topics` says, and wait until each has its leaders."""
    check_kafka(kafka)
    specs = kafka.topic_specs()
    admin = KafkaAdminClient(
        **kafka.kafka_python_config(), client_id="scantrace-topics", request_timeout_ms=timeout_ms
    )
    try:
        brokers = sum(not b.get("is_fenced") for b in admin.describe_cluster()["brokers"])
        steps = plan_topics(
            specs,
            existing_topics(admin, kafka, [s.name for s in specs]),
            brokers,
            kafka.replication_factor,
            kafka.min_insync_replicas if min_insync_replicas is None else min_insync_replicas,
        )
        return Created(brokers, _apply(admin, kafka, steps, timeout_ms))
    finally:
        admin.close()


def existing_topics(
    admin: KafkaAdminClient, kafka: KafkaSettings, names: list[str]
) -> dict[str, Existing]:
    """Those of `names` that exist, with their partitions and replication factor."""
    out = {}
    for t in admin.describe_topics(names):
        code = int(t.get("error_code") or 0)
        if code == UNKNOWN_TOPIC:
            continue
        if code:
            raise topic_error(kafka, t["name"], code, "", "describe")
        parts = t.get("partitions") or []
        replicas = max((len(p["replica_nodes"]) for p in parts), default=0)
        out[t["name"]] = Existing(len(parts), replicas)
    return out


def _apply(
    admin: KafkaAdminClient, kafka: KafkaSettings, steps: list[TopicStep], timeout_ms: int
) -> list[TopicStep]:
    create = {
        s.topic: {
            "num_partitions": s.partitions,
            "replication_factor": s.replication_factor,
            "configs": s.config,
        }
        for s in steps
        if s.action == "create"
    }
    raced: set[str] = set()  # made by another process between the plan and the creation
    if create:
        answer = admin.create_topics(create, timeout_ms=timeout_ms, raise_errors=False)
        for t in answer["topics"]:
            code = int(t["error_code"])
            if code == TOPIC_EXISTS:
                raced.add(t["name"])
            elif code:
                raise topic_error(kafka, t["name"], code, t.get("error_message"), "create")
    admin.wait_for_topics(sorted(set(create) - raced), timeout_ms=timeout_ms)
    if not raced:
        return steps
    now = existing_topics(admin, kafka, sorted(raced))
    return [
        replace(s, action="keep", partitions=now[s.topic].partitions,
                replication_factor=now[s.topic].replication_factor)
        if s.topic in now else s
        for s in steps
    ]  # fmt: skip


def topic_error(
    kafka: KafkaSettings, topic: str, code: int, message: str | None, doing: str
) -> ScantraceError:
    """The one-line error for Kafka's answer `code` to `doing` a topic."""
    error = kafka_errors.for_code(code).__name__
    detail = f"{error}{f': {message}' if message else ''}"
    if code in DENIED:
        who = f"user {kafka.sasl_username!r}" if kafka.uses_sasl else "this client"
        return KafkaRefused(
            f"Kafka refuses {who} to {doing} {topic} ({error}): the broker's ACLs do not allow it",
            hint=f"topics are made by the admin user: check {ENV}SASL_USERNAME "
            "(`scantrace services env admin` prints the local one)",
        )
    if code in REFUSED_AS_ASKED:
        return InvalidInput(f"Kafka refuses to {doing} {topic}: {detail}")
    return ScantraceError(f"Kafka could not {doing} {topic}: {detail}")


def render_created(c: Created) -> str:
    """One line per topic: name, partitions, replication factor, what was done."""
    lines = []
    for s in c.steps:
        state = PAST[s.action]
        notes = s.notes()
        if notes:
            state += f" ({'; '.join(notes)})"
        lines.append(
            f"{s.topic:<36} {s.partitions:>4} partitions  replication {s.replication_factor}  "
            f"{state}"
        )
    return "\n".join(lines)
