"""`scantrace topics describe`'s view of the brokers' metadata: what counts as
under-replicated or offline, and how it is shown; `scantrace topics create`'s plan of what
to create, grow or keep, and its errors as the shell prints them."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from ingest.errors import InvalidInput
from ingest.kafka_settings import KafkaSettings
from scantrace import exits
from scantrace.topics import (
    Created,
    Description,
    Existing,
    GroupLag,
    PartitionState,
    TopicState,
    plan_topics,
    render,
    render_created,
    topic_error,
)


def _description() -> Description:
    raw = TopicState(
        "scans.raw",
        [
            PartitionState(0, leader=1, replicas=[1, 2, 3], isr=[1, 2, 3]),
            PartitionState(1, leader=2, replicas=[1, 2, 3], isr=[2, 3]),
            PartitionState(2, leader=-1, replicas=[1, 2, 3], isr=[]),
        ],
    )
    premises = TopicState("premises", [PartitionState(0, 3, [1, 2, 3], [1, 2, 3])])
    lag = GroupLag("worker", "scantrace-worker", "scans.raw", 1234, 2)
    return Description([2, 3], [raw, premises], [lag])


def test_fewer_in_sync_replicas_than_replicas_is_under_replicated() -> None:
    d = _description()
    assert [p.under_replicated for p in d.topics[0].partitions] == [False, True, True]
    assert d.topics[0].under_replicated == 2 and d.under_replicated == 2
    data = d.as_json()
    assert data["under_replicated_partitions"] == 2
    assert data["topics"][0]["partitions"][1] == {
        "partition": 1,
        "leader": 2,
        "replicas": [1, 2, 3],
        "isr": [2, 3],
        "under_replicated": True,
    }
    assert data["consumer_lag"][0]["lag"] == 1234


def test_the_table_names_the_state_of_each_partition() -> None:
    lines = render(_description()).splitlines()
    assert lines[0] == "brokers: 2, 3; under-replicated partitions: 2"
    states = [line.split()[-1] for line in lines if line.startswith("scans.raw")]
    assert states == ["ok", "UNDER-REPLICATED", "OFFLINE"]
    assert any("1,234" in line and line.startswith("worker") for line in lines)


# -- topics create --------------------------------------------------------------------------

KAFKA = KafkaSettings(bootstrap="127.0.0.1:9092", partitions=6, replication_factor=3)
SPECS = KAFKA.topic_specs()
NAMES = [s.name for s in SPECS]


def test_missing_topics_are_created_with_the_settings_specs() -> None:
    steps = plan_topics(SPECS, {}, brokers=3, replication_factor=3, min_insync_replicas=2)
    assert [(s.topic, s.action, s.partitions, s.replication_factor) for s in steps] == [
        (name, "create", 6, 3) for name in ["scans.raw", "scans.enriched", "scans.dlq", "premises"]
    ]
    by_name = {s.topic: s.config for s in steps}
    assert by_name["premises"]["cleanup.policy"] == "compact"
    assert by_name["premises"]["retention.ms"] == "-1"
    assert "cleanup.policy" not in by_name["scans.raw"]
    assert by_name["scans.raw"]["retention.ms"] == str(KAFKA.raw_retention_ms)
    assert {c["min.insync.replicas"] for c in by_name.values()} == {"2"}


def test_a_second_run_keeps_everything_as_it_is() -> None:
    existing = {name: Existing(6, 3) for name in NAMES}
    steps = plan_topics(SPECS, existing, brokers=3, replication_factor=3, min_insync_replicas=2)
    assert {s.action for s in steps} == {"keep"}
    assert all(s.notes() == [] for s in steps)
    assert render_created(Created(3, steps)).splitlines() == [
        f"{name:<36}    6 partitions  replication 3  exists" for name in NAMES
    ]


def test_a_kept_topic_says_where_it_differs_from_what_was_asked() -> None:
    existing = {name: Existing(12, 1) for name in NAMES}
    steps = plan_topics(SPECS, existing, brokers=1, replication_factor=3, min_insync_replicas=2)
    assert [(s.action, s.partitions, s.replication_factor) for s in steps] == [("keep", 12, 1)] * 4
    assert steps[0].notes() == ["asked 6 partitions", "asked replication 3"]
    assert (
        render_created(Created(1, steps))
        .splitlines()[0]
        .endswith("exists (asked 6 partitions; asked replication 3)")
    )


def test_too_few_partitions_are_refused_before_anything_is_done() -> None:
    existing = {"scans.raw": Existing(4, 3), "premises": Existing(4, 3)}
    with pytest.raises(InvalidInput) as caught:
        plan_topics(SPECS, existing, brokers=3, replication_factor=3, min_insync_replicas=2)
    failure = exits.describe(caught.value)
    assert failure.code == exits.USAGE
    line = failure.line()
    assert "scans.raw has 4, premises has 4" in line and "the 6 asked" in line
    assert "partitions are not added to existing topics" in line
    assert "hint: keep them with --partitions 4 (SCANTRACE_KAFKA__PARTITIONS)" in line


def test_missing_topics_are_created_beside_existing_ones() -> None:
    existing = {"scans.raw": Existing(6, 3), "scans.dlq": Existing(8, 3)}
    steps = plan_topics(SPECS, existing, brokers=3, replication_factor=3, min_insync_replicas=2)
    got = {s.topic: (s.action, s.partitions) for s in steps}
    assert got == {
        "scans.raw": ("keep", 6),
        "scans.enriched": ("create", 6),
        "scans.dlq": ("keep", 8),
        "premises": ("create", 6),
    }
    doc = Created(3, steps).as_json()
    assert [t["state"] for t in doc["topics"]] == ["exists", "created", "exists", "created"]
    assert doc["topics"][0]["config"] is None  # a kept topic keeps its own configs
    assert doc["topics"][1]["config"]["min.insync.replicas"] == "2"
    assert doc["topics"][2]["notes"] == ["asked 6 partitions"]
    json.dumps(doc)


def test_a_replication_factor_above_the_brokers_is_a_usage_error() -> None:
    with pytest.raises(InvalidInput) as caught:
        plan_topics(SPECS, {}, brokers=1, replication_factor=3, min_insync_replicas=2)
    failure = exits.describe(caught.value)
    assert failure.code == exits.USAGE
    assert failure.line() == (
        "error: replication factor 3 needs 3 brokers; the cluster has 1; hint: give "
        "--replication-factor (SCANTRACE_KAFKA__REPLICATION_FACTOR) of at most 1, or start "
        "more brokers"
    )
    # Nothing to create: nothing needs the brokers (a broker down must not fail a rerun).
    existing = {name: Existing(6, 3) for name in NAMES}
    plan_topics(SPECS, existing, brokers=1, replication_factor=3, min_insync_replicas=2)


def test_min_insync_replicas_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(InvalidInput, match="every write with acks=all would be refused"):
        plan_topics(SPECS, {}, brokers=3, replication_factor=2, min_insync_replicas=3)
    steps = plan_topics(SPECS, {}, brokers=3, replication_factor=2, min_insync_replicas=2)
    assert {s.config["min.insync.replicas"] for s in steps} == {"2"}


@pytest.mark.parametrize(
    ("code", "exit_code", "words"),
    [
        (29, exits.USAGE, "Kafka refuses user 'tracer' to create scans.raw"),
        (31, exits.USAGE, "the broker's ACLs do not allow it"),
        (38, exits.USAGE, "InvalidReplicationFactorError: no brokers"),
        (41, exits.FAILED, "Kafka could not create scans.raw: NotControllerError"),
    ],
)
def test_the_brokers_answers_become_one_line(code: int, exit_code: int, words: str) -> None:
    password = SecretStr("pw")
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", sasl_username="tracer", sasl_password=password
    )
    failure = exits.describe(topic_error(kafka, "scans.raw", code, "no brokers", "create"))
    assert failure.code == exit_code
    assert words in failure.line() and "\n" not in failure.line()
    if code in (29, 31):
        assert "hint: topics are made by the admin user" in failure.line()
