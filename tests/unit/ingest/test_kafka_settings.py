"""Kafka security settings: environment, password file, validation at construction, the
one mapping to client keywords (kafka-python, aiokafka, Faust), topics fit for
production, and the start-up probe's one line per failure."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from pydantic import SecretStr, ValidationError

from ingest.kafka_probe import KafkaStartupError, check_kafka, classify
from ingest.kafka_settings import DAY_MS, KafkaSettings
from processors.app import broker_credentials
from processors.worker_settings import WorkerSettings
from scantrace.services.kafka_security import make_certificates
from scantrace.services.process import free_port
from sinks.settings import SinkSettings

PASSWORD = "pw-Zq8-secret"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    folder = tmp_path_factory.mktemp("tls")
    make_certificates(folder)
    return folder


def sasl_ssl(tls: Path, **changes: Any) -> KafkaSettings:
    fields: dict[str, Any] = {
        "bootstrap": "k1:9093,k2:9093",
        "security_protocol": "SASL_SSL",
        "sasl_username": "worker",
        "sasl_password": SecretStr(PASSWORD),
        "ssl_cafile": tls / "ca.pem",
        **changes,
    }
    return KafkaSettings(**fields)


def test_plaintext_is_the_default_and_maps_to_bootstrap_only() -> None:
    kafka = KafkaSettings(bootstrap="k1:9092, k2:9092")
    assert kafka.security_protocol == "PLAINTEXT"
    expected = {"bootstrap_servers": ["k1:9092", "k2:9092"], "security_protocol": "PLAINTEXT"}
    assert kafka.kafka_python_config() == expected
    assert kafka.aiokafka_config() == expected
    assert kafka.ssl_context() is None
    assert broker_credentials(kafka) is None
    assert kafka.login() == "PLAINTEXT"


def test_environment_names(monkeypatch: pytest.MonkeyPatch, tls: Path, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    env = {
        "SCANTRACE_KAFKA__BOOTSTRAP": "k1:9093",
        "SCANTRACE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "SCANTRACE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
        "SCANTRACE_KAFKA__SASL_USERNAME": "sink",
        "SCANTRACE_KAFKA__SASL_PASSWORD_FILE": str(secret),
        "SCANTRACE_KAFKA__SSL_CAFILE": str(tls / "ca.pem"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for settings in (SinkSettings(), WorkerSettings()):
        kafka = settings.kafka
        assert (kafka.security_protocol, kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
        assert (kafka.sasl_username, kafka.sasl_password_file) == ("sink", secret)
        assert kafka.sasl_secret() == PASSWORD  # the file's newline is not part of it
        assert kafka.ssl_cafile == tls / "ca.pem"
    monkeypatch.delenv("SCANTRACE_KAFKA__SASL_PASSWORD_FILE")
    monkeypatch.setenv("SCANTRACE_KAFKA__SASL_PASSWORD", PASSWORD)
    settings = SinkSettings()
    assert settings.kafka.sasl_secret() == PASSWORD
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())


def test_password_file_is_read_again_for_each_client(tls: Path, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("first\n")
    kafka = sasl_ssl(tls, sasl_password=SecretStr(""), sasl_password_file=secret)
    assert kafka.aiokafka_config()["sasl_plain_password"] == "first"
    secret.write_text("rotated")
    assert kafka.kafka_python_config()["sasl_plain_password"] == "rotated"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sasl_username": ""}, "SASL_SSL needs SCANTRACE_KAFKA__SASL_USERNAME"),
        ({"sasl_password": SecretStr("")}, "needs SCANTRACE_KAFKA__SASL_PASSWORD or"),
        (
            {"sasl_password_file": Path("/nonexistent/pw")},
            "set one of SCANTRACE_KAFKA__SASL_PASSWORD and SCANTRACE_KAFKA__SASL_PASSWORD_FILE",
        ),
        ({"ssl_cafile": Path("/nonexistent/ca.pem")}, "SSL_CAFILE: no such file"),
        ({"ssl_keyfile": "KEY"}, "SSL_KEYFILE needs SCANTRACE_KAFKA__SSL_CERTFILE"),
        ({"ssl_cafile": "NOT_PEM"}, "Kafka TLS files unusable"),
        (
            {"security_protocol": "PLAINTEXT", "ssl_cafile": None},
            "SASL credentials are set but SCANTRACE_KAFKA__SECURITY_PROTOCOL is PLAINTEXT",
        ),
        (
            {"security_protocol": "SSL", "ssl_cafile": None},
            "SASL credentials are set but SCANTRACE_KAFKA__SECURITY_PROTOCOL is SSL",
        ),
        ({"sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
        ({"security_protocol": "TLS"}, "security_protocol"),
    ],
)
def test_bad_combinations_fail_at_construction(
    tls: Path, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    files = {"KEY": tls / "server.key", "NOT_PEM": tmp_path / "not.pem"}
    (tmp_path / "not.pem").write_text("not a certificate\n")
    changes = {k: files.get(v, v) if isinstance(v, str) else v for k, v in changes.items()}
    with pytest.raises(ValidationError, match=message):
        sasl_ssl(tls, **changes)


def test_password_file_must_exist_and_hold_a_password(tls: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    base = {"sasl_password": SecretStr("")}
    with pytest.raises(ValidationError, match="SASL_PASSWORD_FILE unreadable"):
        sasl_ssl(tls, **base, sasl_password_file=tmp_path / "missing")
    with pytest.raises(ValidationError, match=r"SASL_PASSWORD_FILE .* is empty"):
        sasl_ssl(tls, **base, sasl_password_file=empty)


def test_tls_files_need_a_tls_protocol(tls: Path) -> None:
    with pytest.raises(ValidationError, match=r"SSL_CAFILE is set but .* PLAINTEXT"):
        KafkaSettings(bootstrap="k:1", ssl_cafile=tls / "ca.pem")
    with pytest.raises(ValidationError, match=r"SSL_CAFILE is set but .* SASL_PLAINTEXT"):
        KafkaSettings(
            bootstrap="k:1",
            security_protocol="SASL_PLAINTEXT",
            sasl_username="u",
            sasl_password=SecretStr("p"),
            ssl_cafile=tls / "ca.pem",
        )


def test_sasl_ssl_builds_one_verifying_context_and_the_sasl_keywords(tls: Path) -> None:
    kafka = sasl_ssl(tls)
    config = kafka.kafka_python_config()
    context = config.pop("ssl_context")
    assert config == {
        "bootstrap_servers": ["k1:9093", "k2:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "worker",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    aio = kafka.aiokafka_config()
    assert isinstance(aio.pop("ssl_context"), ssl.SSLContext)
    assert aio == config
    assert kafka.login() == "SASL_SSL as 'worker' (SCRAM-SHA-512)"


def test_client_certificate_goes_into_the_context(tls: Path) -> None:
    kafka = KafkaSettings(
        bootstrap="k:9093",
        security_protocol="SSL",
        ssl_cafile=tls / "ca.pem",
        ssl_certfile=tls / "server.pem",
        ssl_keyfile=tls / "server.key",
    )
    config = kafka.aiokafka_config()
    assert set(config) == {"bootstrap_servers", "security_protocol", "ssl_context"}
    assert config["security_protocol"] == "SSL"


def test_every_client_library_accepts_the_keywords(tls: Path) -> None:
    """kafka-python refuses unknown keywords; aiokafka checks protocol, context and SASL
    options when a client is made (neither connects here)."""
    for kafka in (
        KafkaSettings(bootstrap="k:9092"),
        sasl_ssl(tls),
        sasl_ssl(tls, security_protocol="SASL_PLAINTEXT", ssl_cafile=None),
        KafkaSettings(bootstrap="k:9093", security_protocol="SSL", ssl_cafile=tls / "ca.pem"),
    ):
        for client in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
            assert set(kafka.kafka_python_config()) <= set(client.DEFAULT_CONFIG), client

        async def make(kafka: KafkaSettings = kafka) -> None:
            producer = AIOKafkaProducer(**kafka.aiokafka_config())
            consumer = AIOKafkaConsumer(**kafka.aiokafka_config())
            await producer.stop()
            await consumer.stop()

        asyncio.run(make())


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_faust_credentials_come_from_the_same_mapping(tls: Path, protocol: str) -> None:
    changes: dict[str, Any] = {"security_protocol": protocol, "sasl_mechanism": "PLAIN"}
    if not protocol.startswith("SASL_"):
        changes.update(sasl_username="", sasl_password=SecretStr(""))
    if not protocol.endswith("SSL"):
        changes["ssl_cafile"] = None
    kafka = sasl_ssl(tls, **changes)
    faust_auth = credentials_to_aiokafka_auth(broker_credentials(kafka))
    theirs = {k: v for k, v in faust_auth.items() if v is not None}
    ours = kafka.security_config()
    # a context is built per call: compare what it checks
    contexts = [c.pop("ssl_context", None) for c in (theirs, ours)]
    assert theirs == ours
    if protocol.endswith("SSL"):
        assert all(isinstance(c, ssl.SSLContext) and c.check_hostname for c in contexts)
    else:
        assert contexts == [None, None]


def test_topics_get_retention_and_min_insync_replicas() -> None:
    specs = {s.name: s for s in KafkaSettings(topic_prefix="t.", partitions=6).topic_specs()}
    week = str(7 * DAY_MS)
    for name in ("t.scans.raw", "t.scans.enriched", "t.scans.dlq"):
        assert specs[name].config == {"min.insync.replicas": "1", "retention.ms": week}
        assert specs[name].partitions == 6
    assert specs["t.premises"].config == {
        "min.insync.replicas": "1",
        "retention.ms": "-1",
        "cleanup.policy": "compact",
    }
    three = KafkaSettings(replication_factor=3, raw_retention_ms=3 * DAY_MS)
    raw = next(s for s in three.topic_specs() if s.name == "scans.raw")
    assert raw.config == {"min.insync.replicas": "2", "retention.ms": str(3 * DAY_MS)}
    assert KafkaSettings(replication_factor=2).min_insync_replicas == 1


def test_probe_names_each_failure_in_one_line(tls: Path) -> None:
    kafka = sasl_ssl(tls)
    server = "k1:9093"
    cases: list[tuple[BaseException, str, bool]] = [
        (
            SaslAuthenticationFailed("invalid credentials"),
            "Kafka authentication failed for user 'worker' (SCRAM-SHA-512) at k1:9093: "
            "check SCANTRACE_KAFKA__SASL_USERNAME/PASSWORD",
            True,
        ),
        (UnsupportedSaslMechanismError(), "does not accept SASL mechanism SCRAM-SHA-512", True),
        (
            ssl.SSLCertVerificationError(1, "certificate verify failed"),
            "TLS certificate not trusted",
            True,
        ),
        (ssl.SSLError(1, "wrong version number"), "TLS handshake failed", True),
        (
            KafkaConnectionError("Connection at k1:9093 closed"),
            "its listener does not speak SASL_SSL",
            True,
        ),
        (ConnectionRefusedError(111, "refused"), "not reachable", False),
        (OSError("Name or service not known"), "check SCANTRACE_KAFKA__BOOTSTRAP", False),
    ]
    for exc, text, terminal in cases:
        error = classify(kafka, server, exc)
        assert text in str(error), (exc, str(error))
        assert "\n" not in str(error)
        assert error.terminal is terminal, exc
        assert PASSWORD not in str(error)


def test_probe_gives_up_on_a_closed_port_after_its_timeout() -> None:
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}")
    with pytest.raises(KafkaStartupError, match="not reachable") as info:
        check_kafka(kafka, timeout_s=1.0)
    assert not info.value.terminal
