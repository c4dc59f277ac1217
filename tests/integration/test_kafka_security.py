"""`scantrace services up --secure`: the whole pipeline on SASL_SSL with a user per
component, and the broker refusing everyone else.

The secured services are this module's own (their own state folder, started through the
same code as the CLI, stopped by PID at the end); topics carry a prefix, as the ACLs
must follow it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from pipeline_kit import PIPELINE_TOKEN, ready, wait_for

from ingest.kafka_probe import KafkaStartupError, check_kafka
from ingest.kafka_settings import DAY_MS, KafkaSettings
from ingest.registry import publish_registry
from scantrace import synth
from scantrace.loader import load_http
from scantrace.pipeline import Pipeline
from scantrace.services import kafka_apache, kafka_security, manager
from scantrace.services.process import free_port
from scantrace.settings import ServicesSettings
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect

PREFIX = "sec."
KAFKA_ENV = (
    "SCANTRACE_KAFKA__BOOTSTRAP",
    "SCANTRACE_KAFKA__SECURITY_PROTOCOL",
    "SCANTRACE_KAFKA__SASL_MECHANISM",
    "SCANTRACE_KAFKA__SASL_USERNAME",
    "SCANTRACE_KAFKA__SASL_PASSWORD",
    "SCANTRACE_KAFKA__SASL_PASSWORD_FILE",
    "SCANTRACE_KAFKA__SSL_CAFILE",
    "SCANTRACE_CLICKHOUSE__URL",
)


@dataclass(frozen=True)
class Secure:
    settings: ServicesSettings
    bootstrap: str
    security: dict[str, Any]

    def env(self) -> dict[str, str]:
        """The environment of a command that uses these services and nothing else."""
        env = {k: v for k, v in os.environ.items() if k not in KAFKA_ENV}
        return {
            **env,
            "SCANTRACE_SERVICES__STATE_DIR": str(self.settings.state_dir),
            "SCANTRACE_KAFKA__TOPIC_PREFIX": PREFIX,
        }

    def kafka(self, user: str) -> KafkaSettings:
        return kafka_security.user_settings(
            self.security, user, KafkaSettings(topic_prefix=PREFIX), self.bootstrap
        )

    def password(self, user: str) -> str:
        return str(self.security["users"][user]["password"])


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    if not kafka_apache.available() or shutil.which("openssl") is None:
        pytest.skip("the secured broker needs Java 17+, Maven and openssl")
    settings = ServicesSettings(state_dir=tmp_path_factory.mktemp("secure"), kafka="apache")
    with pytest.MonkeyPatch.context() as mp:
        for name in KAFKA_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("SCANTRACE_KAFKA__TOPIC_PREFIX", PREFIX)  # the ACLs follow the prefix
        try:
            manager.up(settings, "apache", "local", secure=True)
            state = manager.load_state(settings)
            record = manager.security_record(state)
            assert record is not None
            yield Secure(settings, state["kafka"]["bootstrap"], record)
        finally:
            manager.down(settings)


def _kcat(secure: Secure, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    login: list[str] = []  # no credentials at all: what any process on the machine can try
    if user is not None:
        # PLAIN inside TLS: Debian 12's librdkafka (2.0) cannot answer Kafka 4's SCRAM.
        login = [
            "-X", "security.protocol=SASL_SSL",
            "-X", f"ssl.ca.location={secure.security['cafile']}",
            "-X", "sasl.mechanisms=PLAIN",
            "-X", f"sasl.username={user}",
            "-X", f"sasl.password={secure.password(user)}",
        ]  # fmt: skip
    return subprocess.run(
        ["kcat", "-b", secure.bootstrap, *login, "-m", "15", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_services_status_env_and_file_modes(secure: Secure) -> None:
    status = subprocess.run(
        [sys.executable, "-m", "scantrace.cli", "services", "status", "--json"],
        env=secure.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(status.stdout)
    sec = doc["kafka_security"]
    assert (sec["protocol"], sec["mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert Path(sec["cafile"]).is_file()
    assert set(sec["users"]) == {"gateway", "worker", "sink", "tracer", "admin"}
    assert all(u["username"] == name and u["password"] for name, u in sec["users"].items())
    assert len({u["password"] for u in sec["users"].values()}) == 5
    assert "security" not in doc["kafka"]  # the broker's own password is not shown

    state_dir = secure.settings.state_dir
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "services.json").stat().st_mode) == 0o600
    secrets_dir = kafka_security.folder(state_dir / "kafka")
    for folder in (secrets_dir, secrets_dir / "tls", secrets_dir / "passwords"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    private = [
        *(secrets_dir / "passwords").iterdir(),
        *(secrets_dir / "tls").glob("*.key"),
        secrets_dir / "tls" / "keystore.pem",
        secrets_dir / "security.json",
        state_dir / "kafka" / "server.properties",  # the broker's own password
    ]
    assert len(private) == 6 + 2 + 3
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    # `eval "$(scantrace services env worker)"` logs a shell in as the worker.
    script = (
        f'eval "$({sys.executable} -m scantrace.cli services env worker)" && '
        f"{sys.executable} -c 'import os, json; print(json.dumps(dict(os.environ)))'"
    )
    out = subprocess.run(
        ["bash", "-c", script], env=secure.env(), capture_output=True, text=True, check=True
    )
    env = json.loads(out.stdout)
    assert env["SCANTRACE_KAFKA__SASL_USERNAME"] == "worker"
    assert env["SCANTRACE_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["SCANTRACE_KAFKA__BOOTSTRAP"] == secure.bootstrap
    assert "SCANTRACE_CLICKHOUSE__URL" not in env  # the worker does not use ClickHouse
    tracer = subprocess.run(
        [sys.executable, "-m", "scantrace.cli", "services", "env", "tracer"],
        env=secure.env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "SCANTRACE_CLICKHOUSE__URL=" in tracer and "KAFKA" not in tracer


def test_topics_have_retention_and_min_insync_replicas(secure: Secure) -> None:
    admin = KafkaAdminClient(**secure.kafka("admin").kafka_python_config())
    try:
        names = [f"{PREFIX}scans.raw", f"{PREFIX}scans.enriched", f"{PREFIX}premises"]
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names],
            config_filter="all",
        )
    finally:
        admin.close()
    configs = {
        name: {key: entry["value"] for key, entry in entries.items()}
        for name, entries in described["topic"].items()
    }
    for name in names[:2]:
        assert configs[name]["retention.ms"] == str(7 * DAY_MS)
        assert configs[name]["min.insync.replicas"] == "1"
    assert configs[f"{PREFIX}premises"]["cleanup.policy"] == "compact"


@pytest.mark.parametrize(("guarantee", "seed"), [("at_least_once", 11), ("exactly_once", 12)])
def test_pipeline_runs_end_to_end_with_a_user_per_component(
    secure: Secure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guarantee: str, seed: int
) -> None:
    """`scantrace run` unchanged: no Kafka settings in the environment, only the state
    folder; each child logs in as its own user. Under exactly_once the worker also uses
    its transactional ids."""
    premises = synth.generate_premises(seed, 60)
    date = datetime.now(tz=synth.TZ).date() - timedelta(days=1)
    day = synth.generate_scans(seed, premises, date, persons=200, scans=800)
    truth = day.truth
    # The registry import is the admin's.
    publish_registry(secure.kafka("admin"), premises)

    env = {
        **secure.env(),
        "SCANTRACE_GATEWAY__TOKENS": json.dumps({PIPELINE_TOKEN: "gw-secure"}),
        "SCANTRACE_SINK__BATCH_SECONDS": "0.3",
        "SCANTRACE_WORKER__DATA_DIR": str(tmp_path / "worker"),
        "SCANTRACE_WORKER__PROCESSING_GUARANTEE": guarantee,
    }
    p = Pipeline(
        gateway_port=free_port(),
        worker_metrics_port=free_port(),
        sink_metrics_port=free_port(),
        log_dir=tmp_path / "logs",
    )
    for name in KAFKA_ENV:  # the children inherit this process's environment
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ends = manager.endpoints(secure.settings)
    assert ends is not None
    ch = ClickHouseSettings(url=ends.clickhouse_url)
    p.start()
    try:
        wait_for(lambda: ready(p.gateway_port), 120, "the gateway", p)
        report = asyncio.run(
            load_http(
                day.scans,
                f"http://127.0.0.1:{p.gateway_port}/v1/scans",
                PIPELINE_TOKEN,
                batch=400,
                concurrency=1,
            )
        )
        assert report.http_errors == {}
        assert report.accepted == truth.valid
        expected = truth.stored - truth.repeats
        ids = tuple({str(s["event_id"]) for s in day.scans if "event_id" in s})

        def stored() -> int:
            client = connect(ch)
            try:
                return int(
                    client.execute(
                        "SELECT uniqExact(event_id) FROM scans WHERE event_id IN %(ids)s",
                        {"ids": ids},
                    )[0][0]
                )
            finally:
                client.disconnect()

        wait_for(lambda: stored() >= expected, 180, "stored scans", p)
        assert stored() == expected
    finally:
        p.stop()
    for component in ("gateway", "worker", "sink"):
        log = (tmp_path / "logs" / f"{component}.log").read_text()
        assert f"SASL_SSL as '{component}' (SCRAM-SHA-512)" in log, log[-2000:]
        others = {"gateway", "worker", "sink", "admin"} - {component}
        assert not any(f"as '{o}'" in log or f"Authenticated as {o} " in log for o in others)

    # A trace answers, through the CLI as deployed (ClickHouse only, no Kafka user), for a
    # person who was somewhere within an hour of somebody else.
    client = connect(ch)
    try:
        case = client.execute(
            "SELECT a.person_id FROM scans AS a INNER JOIN scans AS b "
            "ON a.premises_id = b.premises_id WHERE a.person_id != b.person_id AND "
            "abs(toUnixTimestamp64Milli(a.scanned_at) - toUnixTimestamp64Milli(b.scanned_at))"
            " <= 3600000 ORDER BY a.person_id LIMIT 1"
        )[0][0]
    finally:
        client.disconnect()
    lo, hi = synth.day_bounds_ms(date)
    frm = datetime.fromtimestamp(lo / 1000, tz=synth.TZ).isoformat()
    to = datetime.fromtimestamp(hi / 1000, tz=synth.TZ).isoformat()
    traced = subprocess.run(
        [sys.executable, "-m", "scantrace.cli", "trace", str(case), "--from", frm, "--to", to,
         "--format", "json"],
        env=secure.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert traced.returncode == 0, traced.stderr
    doc = json.loads(traced.stdout)
    assert doc.get("contacts"), doc


def test_clients_without_credentials_cannot_connect(secure: Secure) -> None:
    plaintext = KafkaSettings(bootstrap=secure.bootstrap)
    with pytest.raises(KafkaStartupError, match="closed the connection") as info:
        check_kafka(plaintext, timeout_s=20)
    assert info.value.terminal
    tls_only = KafkaSettings(
        bootstrap=secure.bootstrap,
        security_protocol="SSL",
        ssl_cafile=Path(secure.security["cafile"]),
    )
    with pytest.raises(KafkaStartupError, match="closed the connection"):
        check_kafka(tls_only, timeout_s=20)

    anonymous = _kcat(secure, "-C", "-t", f"{PREFIX}scans.enriched", "-o", "beginning", "-e")
    assert anonymous.returncode != 0
    assert anonymous.stdout == ""


def test_gateway_user_cannot_read_enriched_scans(secure: Secure) -> None:
    topic = f"{PREFIX}scans.enriched"
    refused = _kcat(secure, "-C", "-t", topic, "-o", "beginning", "-e", user="gateway")
    assert refused.returncode != 0
    assert "Topic authorization failed" in refused.stderr, refused.stderr
    assert refused.stdout == ""
    # The same login reaches the broker: the refusal is the ACL, not the password...
    listed = _kcat(secure, "-L", "-t", f"{PREFIX}scans.raw", user="gateway")
    assert listed.returncode == 0, listed.stderr
    # ...and the sink, whose job it is, reads the topic.
    allowed = _kcat(
        secure, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%t %o\\n", user="sink"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert all(line.startswith(f"{topic} ") for line in allowed.stdout.splitlines())

    # The project's own clients get the same answer at start, in one line.
    with pytest.raises(KafkaStartupError, match=r"refuses user 'gateway' access to sec\."):
        check_kafka(secure.kafka("gateway"), [topic], timeout_s=30)
    with pytest.raises(KafkaStartupError, match="refuses user 'tracer'"):
        check_kafka(secure.kafka("tracer"), [f"{PREFIX}scans.raw"], timeout_s=30)
    check_kafka(secure.kafka("gateway"), [f"{PREFIX}scans.raw", f"{PREFIX}scans.dlq"])


def _start_fails(secure: Secure, command: list[str], env: dict[str, str]) -> str:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "scantrace.cli", *command],
        env={**secure.env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert time.monotonic() - t0 < 120
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_topics_create_logs_in_as_the_admin_and_refuses_a_component(secure: Secure) -> None:
    """`scantrace topics create` on the secured local broker logs in as its admin user (as
    `services up` does); a component's user is refused by the ACLs in one line."""
    prefix = f"{PREFIX}c{uuid.uuid4().hex[:8]}."
    names = [f"{prefix}{n}" for n in ("scans.raw", "scans.enriched", "scans.dlq", "premises")]
    env = {**secure.env(), "SCANTRACE_KAFKA__TOPIC_PREFIX": prefix}
    worker = {
        **kafka_security.env_lines(secure.security, "worker"),
        "SCANTRACE_KAFKA__BOOTSTRAP": secure.bootstrap,
        "SCANTRACE_KAFKA__TOPIC_PREFIX": prefix,
    }
    line = _start_fails(secure, ["topics", "create"], worker)
    assert line.startswith(f"error: Kafka refuses user 'worker' to describe {prefix}"), line
    assert "hint: topics are made by the admin user" in line

    for expected in ("created", "exists"):
        done = subprocess.run(
            [sys.executable, "-m", "scantrace.cli", "topics", "create", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert [(t["topic"], t["state"]) for t in doc["topics"]] == [
            (name, expected) for name in names
        ]
    admin = KafkaAdminClient(**secure.kafka("admin").kafka_python_config())
    try:
        assert {t["name"] for t in admin.describe_topics(names) if not t["error_code"]} == set(
            names
        )
    finally:
        admin.close()


def test_wrong_password_or_unknown_ca_fails_at_start_with_one_line(
    secure: Secure, tmp_path: Path
) -> None:
    login = {
        "SCANTRACE_KAFKA__BOOTSTRAP": secure.bootstrap,
        "SCANTRACE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "SCANTRACE_KAFKA__SASL_USERNAME": "gateway",
        "SCANTRACE_KAFKA__SASL_PASSWORD": "not-the-password",
        "SCANTRACE_KAFKA__SSL_CAFILE": secure.security["cafile"],
        "SCANTRACE_GATEWAY__TOKENS": json.dumps({"t": "gw"}),
    }
    line = _start_fails(secure, ["gateway", "--port", str(free_port())], login)
    assert line == (
        f"error: Kafka authentication failed for user 'gateway' (SCRAM-SHA-512) at "
        f"{secure.bootstrap}: check SCANTRACE_KAFKA__SASL_USERNAME/PASSWORD"
    )
    worker = {**login, "SCANTRACE_KAFKA__SASL_USERNAME": "worker"}
    line = _start_fails(secure, ["worker", "--data-dir", str(tmp_path / "w")], worker)
    assert line.startswith("error: Kafka authentication failed for user 'worker'")

    other_ca = tmp_path / "other"
    kafka_security.make_certificates(other_ca)
    untrusted = {
        **login,
        "SCANTRACE_KAFKA__SASL_PASSWORD": secure.password("gateway"),
        "SCANTRACE_KAFKA__SSL_CAFILE": str(other_ca / "ca.pem"),
    }
    line = _start_fails(secure, ["gateway", "--port", str(free_port())], untrusted)
    assert line.startswith("error: Kafka at ") and "TLS certificate not trusted" in line
    assert "SCANTRACE_KAFKA__SSL_CAFILE" in line
