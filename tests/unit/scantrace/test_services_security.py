"""The secured local broker's pieces without a broker: its properties, the ACLs per
component, and which login each command gets from the services state."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import ACLOperation, ACLResourcePatternType, ResourceType

from ingest.kafka_settings import KafkaSettings
from scantrace.services import kafka_security, manager
from scantrace.services.manager import ServiceError
from scantrace.settings import ServicesSettings

BOOTSTRAP = "127.0.0.1:39092"


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    return kafka_security.create(tmp_path_factory.mktemp("kafka"))


@pytest.fixture
def state(tmp_path: Path, record: dict[str, Any]) -> ServicesSettings:
    """A services state whose 'processes' are this test process (alive, never stopped)."""
    settings = ServicesSettings(state_dir=tmp_path / "state")
    me = os.getpid()
    doc = {
        "kafka": {"kind": "apache", "pid": me, "bootstrap": BOOTSTRAP, "security": record},
        "clickhouse": {"kind": "local", "pid": me, "native_port": 9, "http_port": 8},
        "database": "scantrace",
    }
    settings.state_dir.mkdir()
    (settings.state_dir / manager.STATE_FILE).write_text(json.dumps(doc))
    return settings


def test_record_users_and_files(record: dict[str, Any]) -> None:
    users = record["users"]
    assert set(users) == {*kafka_security.USERS, kafka_security.BROKER_USER}
    assert len({u["password"] for u in users.values()}) == len(users)
    for name, user in users.items():
        assert Path(user["password_file"]).read_text() == user["password"] + "\n", name
    public = kafka_security.public(record)
    assert set(public["users"]) == set(kafka_security.USERS)  # not the broker's own
    args = kafka_security.format_args(record)
    assert args.count("--add-scram") == len(users)
    assert f"SCRAM-SHA-512=[name=admin,password={users['admin']['password']}]" in args


def test_broker_listens_on_sasl_ssl_only_with_an_authorizer(record: dict[str, Any]) -> None:
    props = dict(line.split("=", 1) for line in kafka_security.properties(record, 9093, 9094))
    assert props["listeners"] == "CLIENT://127.0.0.1:9093,CONTROLLER://127.0.0.1:9094"
    assert props["listener.security.protocol.map"] == "CLIENT:SASL_SSL,CONTROLLER:SASL_SSL"
    assert props["advertised.listeners"] == "CLIENT://127.0.0.1:9093"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:broker"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512,PLAIN"
    assert "PLAINTEXT://" not in props["listeners"]


def _rights(rules: list[Any]) -> set[tuple[str, str, str, str, str]]:
    return {
        (
            r.principal.removeprefix("User:"),
            ACLOperation(r.operation).name,
            ResourceType(r.resource_pattern.resource_type).name,
            r.resource_pattern.resource_name,
            ACLResourcePatternType(r.resource_pattern.pattern_type).name,
        )
        for r in rules
    }


def test_acls_give_each_component_its_job_only() -> None:
    kafka = KafkaSettings(topic_prefix="p.")
    rights = _rights(kafka_security.acls(kafka, "p.scantrace-worker", "scantrace-sink"))
    lit, pre = "LITERAL", "PREFIXED"
    assert {r for r in rights if r[0] == "gateway"} == {
        ("gateway", "WRITE", "TOPIC", "p.scans.raw", lit),
        ("gateway", "WRITE", "TOPIC", "p.scans.dlq", lit),
        ("gateway", "IDEMPOTENT_WRITE", "CLUSTER", "kafka-cluster", lit),
    }
    assert {r for r in rights if r[0] == "sink"} == {
        ("sink", "READ", "TOPIC", "p.scans.enriched", lit),
        ("sink", "READ", "TOPIC", "p.premises", lit),
        ("sink", "READ", "TOPIC", "p.scans.dlq", lit),
        ("sink", "READ", "GROUP", "scantrace-sink", pre),
    }
    worker = {r for r in rights if r[0] == "worker"}
    assert ("worker", "READ", "TOPIC", "p.scans.raw", lit) in worker
    assert ("worker", "WRITE", "TOPIC", "p.scans.enriched", lit) in worker
    assert ("worker", "ALL", "TOPIC", "p.scantrace-worker", pre) in worker  # changelogs
    assert ("worker", "READ", "GROUP", "p.scantrace-worker", pre) in worker
    assert ("worker", "WRITE", "TRANSACTIONAL_ID", "p.scantrace-worker", pre) in worker
    assert not any(r[1] == "READ" and r[3] == "p.scans.enriched" for r in worker)
    assert not any(r[0] in ("tracer", "admin") for r in rights)  # nothing; super user


def test_services_env_per_component(state: ServicesSettings, record: dict[str, Any]) -> None:
    worker = manager.component_env(state, "worker")
    assert worker == {
        "SCANTRACE_KAFKA__BOOTSTRAP": BOOTSTRAP,
        "SCANTRACE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "SCANTRACE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "SCANTRACE_KAFKA__SASL_USERNAME": "worker",
        "SCANTRACE_KAFKA__SASL_PASSWORD_FILE": record["users"]["worker"]["password_file"],
        "SCANTRACE_KAFKA__SSL_CAFILE": record["cafile"],
    }
    sink = manager.component_env(state, "sink")
    assert sink["SCANTRACE_KAFKA__SASL_USERNAME"] == "sink"
    assert sink["SCANTRACE_CLICKHOUSE__URL"] == "clickhouse://127.0.0.1:9/scantrace"
    assert manager.component_env(state, "premises")["SCANTRACE_KAFKA__SASL_USERNAME"] == "admin"
    assert set(manager.component_env(state, "tracer")) == {"SCANTRACE_CLICKHOUSE__URL"}
    with pytest.raises(ServiceError, match="unknown component"):
        manager.component_env(state, "nobody")


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("SCANTRACE_KAFKA__", "SCANTRACE_CLICKHOUSE__")):
            monkeypatch.delenv(name)


def test_each_command_logs_in_as_its_own_user(
    state: ServicesSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clear(monkeypatch)
    manager.apply_environment(state, "sink")
    assert os.environ["SCANTRACE_KAFKA__SASL_USERNAME"] == "sink"
    kafka = KafkaSettings.model_validate(
        {
            name.removeprefix("SCANTRACE_KAFKA__").lower(): value
            for name, value in os.environ.items()
            if name.startswith("SCANTRACE_KAFKA__")
        }
    )
    assert kafka.sasl_secret() and kafka.bootstrap == BOOTSTRAP

    # `scantrace run` itself takes no user: its children each take theirs.
    _clear(monkeypatch)
    manager.apply_environment(state, "run")
    assert os.environ["SCANTRACE_KAFKA__BOOTSTRAP"] == BOOTSTRAP
    assert "SCANTRACE_KAFKA__SASL_USERNAME" not in os.environ
    manager.apply_environment(state, "worker")  # a child, with the parent's bootstrap
    assert os.environ["SCANTRACE_KAFKA__SASL_USERNAME"] == "worker"


def test_credentials_from_the_environment_win(
    state: ServicesSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("SCANTRACE_KAFKA__SASL_USERNAME", "mine")
    manager.apply_environment(state, "gateway")
    assert os.environ["SCANTRACE_KAFKA__SASL_USERNAME"] == "mine"
    assert "SCANTRACE_KAFKA__SASL_PASSWORD_FILE" not in os.environ

    # another broker named by the environment gets none of the local passwords
    _clear(monkeypatch)
    monkeypatch.setenv("SCANTRACE_KAFKA__BOOTSTRAP", "kafka.example:9093")
    manager.apply_environment(state, "gateway")
    assert "SCANTRACE_KAFKA__SASL_USERNAME" not in os.environ

    base = KafkaSettings(topic_prefix="x.")
    admin = manager.local_kafka("premises", base, state)
    assert (admin.sasl_username, admin.bootstrap, admin.topic_prefix) == ("admin", BOOTSTRAP, "x.")
    elsewhere = KafkaSettings(bootstrap="kafka.example:9093")
    assert manager.local_kafka("premises", elsewhere, state) is elsewhere


def test_status_shows_the_users_not_the_broker(state: ServicesSettings) -> None:
    status = manager.status(state)
    assert "security" not in status["kafka"]
    assert set(status["kafka_security"]["users"]) == set(kafka_security.USERS)
    assert status["kafka_security"]["protocol"] == "SASL_SSL"


def test_secure_needs_the_apache_broker(tmp_path: Path) -> None:
    settings = ServicesSettings(state_dir=tmp_path / "s", kafka="noida")
    with pytest.raises(ServiceError, match=r"--secure needs the local Apache Kafka .* not noida"):
        manager.up(settings, "noida", secure=True)
    with pytest.raises(ServiceError, match="external broker set SCANTRACE_KAFKA__SECURITY"):
        manager.up(settings, "external", secure=True)
