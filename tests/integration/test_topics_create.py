"""`scantrace topics create` against the real broker, run as an operator runs it: the
topics made with their partitions and configs, nothing changed by a second run, a topic
with fewer partitions than asked refused and left as it is, and a replication factor the
cluster cannot hold refused in one line before anything is made.

Each test uses a topic prefix of its own (`SCANTRACE_KAFKA__TOPIC_PREFIX`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from ingest.kafka_settings import DAY_MS, KafkaSettings
from scantrace.services.manager import Endpoints
from scantrace.settings import ServicesSettings


def run_create(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scantrace.cli", "topics", "create", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def prefix() -> str:
    return f"c{uuid.uuid4().hex[:10]}."


@pytest.fixture
def env(services: Endpoints, services_settings: ServicesSettings, prefix: str) -> dict[str, str]:
    """The command's environment: the test broker, a fresh prefix, no other Kafka setting."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCANTRACE_KAFKA__")}
    return {
        **base,
        "SCANTRACE_SERVICES__STATE_DIR": str(services_settings.state_dir),
        "SCANTRACE_KAFKA__BOOTSTRAP": services.kafka_bootstrap,
        "SCANTRACE_KAFKA__TOPIC_PREFIX": prefix,
    }


@pytest.fixture
def admin(services: Endpoints) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    try:
        yield client
    finally:
        client.close()


def described(admin: KafkaAdminClient, names: list[str]) -> dict[str, tuple[int, int]]:
    """{topic: (partitions, replication factor)} of those that exist."""
    return {
        t["name"]: (len(t["partitions"]), len(t["partitions"][0]["replica_nodes"]))
        for t in admin.describe_topics(names)
        if not t.get("error_code")
    }


def topic_configs(admin: KafkaAdminClient, topic: str) -> dict[str, Any]:
    answer = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
    )
    return {key: entry["value"] for key, entry in answer["topic"][topic].items()}


def test_created_then_exists(env: dict[str, str], prefix: str, admin: KafkaAdminClient) -> None:
    first = run_create(env, "--partitions", "3", "--retention-ms", str(2 * DAY_MS), "--json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    names = [f"{prefix}{n}" for n in ("scans.raw", "scans.enriched", "scans.dlq", "premises")]
    assert doc["brokers"] == 1
    assert [(t["topic"], t["state"], t["partitions"]) for t in doc["topics"]] == [
        (name, "created", 3) for name in names
    ]
    assert described(admin, names) == {name: (3, 1) for name in names}
    raw = topic_configs(admin, f"{prefix}scans.raw")
    assert raw["retention.ms"] == str(2 * DAY_MS)
    assert raw["min.insync.replicas"] == "1"
    assert raw["cleanup.policy"] == "delete"
    premises = topic_configs(admin, f"{prefix}premises")
    assert premises["cleanup.policy"] == "compact"
    assert premises["retention.ms"] == "-1"  # --retention-ms is for the scans only

    # Again, with the partitions from the environment this time: nothing changes.
    again = run_create({**env, "SCANTRACE_KAFKA__PARTITIONS": "3"})
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    lines = again.stdout.splitlines()
    assert [line.split()[0] for line in lines] == names
    assert all(line.endswith("3 partitions  replication 1  exists") for line in lines), lines
    assert described(admin, names) == {name: (3, 1) for name in names}


def test_fewer_partitions_than_asked_are_refused_and_left_alone(
    env: dict[str, str], prefix: str, admin: KafkaAdminClient
) -> None:
    assert run_create(env, "--partitions", "2").returncode == 0
    names = [f"{prefix}{n}" for n in ("scans.raw", "scans.enriched", "scans.dlq", "premises")]

    refused = run_create(env, "--partitions", "4")
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.splitlines()
    assert line.startswith("error: topics with fewer partitions than the 4 asked: ")
    assert f"{prefix}scans.raw has 2" in line and "hint: keep them with --partitions 2" in line
    assert refused.stdout == ""
    assert described(admin, names) == {name: (2, 1) for name in names}


def test_a_replication_factor_above_the_brokers_is_one_line_and_exit_2(
    env: dict[str, str], prefix: str, admin: KafkaAdminClient
) -> None:
    done = run_create(env, "--replication-factor", "3")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: replication factor 3 needs 3 brokers; the cluster has 1; hint: give "
        "--replication-factor (SCANTRACE_KAFKA__REPLICATION_FACTOR) of at most 1, or start "
        "more brokers"
    ]
    assert not [t for t in admin.list_topics() if t.startswith(prefix)]


def test_the_fixture_topics_are_what_the_command_makes(kafka_settings: KafkaSettings) -> None:
    """The test fixtures make their topics with `ensure_topics`; the command reads the same
    specs: run on the fixture's prefix, it finds every topic there and changes nothing."""
    from scantrace.topics import create_topics

    done = create_topics(kafka_settings)
    assert [(s.topic, s.action, s.partitions) for s in done.steps] == [
        (spec.name, "keep", spec.partitions) for spec in kafka_settings.topic_specs()
    ]
