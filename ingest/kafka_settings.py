"""Kafka connection, security and topic layout, shared by every stage that talks to Kafka.

Env: SCANTRACE_KAFKA__BOOTSTRAP, SCANTRACE_KAFKA__TOPIC_PREFIX, SCANTRACE_KAFKA__PARTITIONS,
SCANTRACE_KAFKA__SECURITY_PROTOCOL, SCANTRACE_KAFKA__SASL_USERNAME, ... (nested under each
component's settings with `env_nested_delimiter="__"`).

Every Kafka client of the project takes its connection keywords from
`kafka_python_config()` or `aiokafka_config()` (Faust through `processors.app`), so the
security settings are mapped to client options in this one place.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ingest.errors import ServiceUnavailable

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]

DAY_MS: Final = 86_400_000
ENV: Final = "SCANTRACE_KAFKA__"
# What to check when no broker answers.
UNREACHABLE_HINT: Final = (
    f"is Kafka running? `scantrace services up` starts the local one; else check {ENV}BOOTSTRAP"
)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def build_ssl_context(
    cafile: Path | None, certfile: Path | None = None, keyfile: Path | None = None
) -> ssl.SSLContext:
    """A TLS client context that verifies the broker's certificate and host name against
    `cafile` (the system's CAs when None), with a client certificate when given."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    return context


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
    # How long Kafka keeps records. The sink must survive a ClickHouse outage without
    # losing what waits in scans.enriched (and the worker one of its own in scans.raw):
    # a week covers a long weekend's outage with room to spare, and keeps personal data
    # in Kafka no longer than that. Dead letters are copied to ClickHouse by the sink
    # too. The premises registry is compacted: the latest record per premises is kept
    # for ever (-1), which is what makes it a registry.
    raw_retention_ms: int = Field(default=7 * DAY_MS, gt=0)
    enriched_retention_ms: int = Field(default=7 * DAY_MS, gt=0)
    dlq_retention_ms: int = Field(default=7 * DAY_MS, gt=0)
    premises_retention_ms: int = Field(default=-1, ge=-1)

    # Security. PLAINTEXT by default (the local development broker); a real cluster wants
    # SASL_SSL. The password comes from `sasl_password` or from a file (a mounted secret).
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = Field(
        default=None, description="CA bundle (PEM) the broker's certificate is checked against"
    )
    ssl_certfile: Path | None = None  # client certificate (PEM), when the broker asks for one
    ssl_keyfile: Path | None = None
    # How long a component waits at start for the broker to answer before it gives up
    # (a refused password or an untrusted certificate fails at once).
    startup_timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        has_password = bool(self.sasl_password.get_secret_value())
        if has_password and self.sasl_password_file is not None:
            raise ValueError(f"set one of {ENV}SASL_PASSWORD and {ENV}SASL_PASSWORD_FILE, not both")
        if sasl:
            if not self.sasl_username:
                raise ValueError(
                    f"{ENV}SECURITY_PROTOCOL={self.security_protocol} needs {ENV}SASL_USERNAME"
                )
            if self.sasl_password_file is None and not has_password:
                raise ValueError(
                    f"{ENV}SECURITY_PROTOCOL={self.security_protocol} needs "
                    f"{ENV}SASL_PASSWORD or {ENV}SASL_PASSWORD_FILE"
                )
            if not self.sasl_secret():
                raise ValueError(f"{ENV}SASL_PASSWORD_FILE {self.sasl_password_file} is empty")
        elif self.sasl_username or has_password or self.sasl_password_file is not None:
            # Credentials without SASL would be silently unused: a plaintext connection
            # where the operator meant an authenticated one.
            raise ValueError(
                f"SASL credentials are set but {ENV}SECURITY_PROTOCOL is "
                f"{self.security_protocol}: use SASL_SSL (or SASL_PLAINTEXT)"
            )
        tls_files = {
            "SSL_CAFILE": self.ssl_cafile,
            "SSL_CERTFILE": self.ssl_certfile,
            "SSL_KEYFILE": self.ssl_keyfile,
        }
        given = {name: path for name, path in tls_files.items() if path is not None}
        if given and not tls:
            raise ValueError(
                f"{ENV}{next(iter(given))} is set but {ENV}SECURITY_PROTOCOL is "
                f"{self.security_protocol}: use SSL or SASL_SSL"
            )
        for name, path in given.items():
            if not path.is_file():
                raise ValueError(f"{ENV}{name}: no such file {path}")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError(f"{ENV}SSL_KEYFILE needs {ENV}SSL_CERTFILE")
        if tls:
            try:
                self.ssl_context()
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"Kafka TLS files unusable: {exc}") from None
        return self

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

    @property
    def min_insync_replicas(self) -> int:
        """Replication factor minus one, at least 1: with acks=all a write survives the
        loss of a broker, and one broker down does not stop the writes."""
        return max(1, self.replication_factor - 1)

    def topic_specs(self) -> list[TopicSpec]:
        """Every source topic with its partition count, retention and min.insync.replicas;
        the premises registry is compacted."""
        n = self.partitions

        def config(retention_ms: int, **extra: str) -> dict[str, str]:
            return {
                "min.insync.replicas": str(self.min_insync_replicas),
                "retention.ms": str(retention_ms),
                **extra,
            }

        return [
            TopicSpec(self.raw, n, config(self.raw_retention_ms)),
            TopicSpec(self.enriched, n, config(self.enriched_retention_ms)),
            TopicSpec(self.dlq, n, config(self.dlq_retention_ms)),
            TopicSpec(
                self.premises,
                n,
                config(self.premises_retention_ms, **{"cleanup.policy": "compact"}),
            ),
        ]

    def servers(self) -> list[str]:
        if not self.bootstrap:
            raise ServiceUnavailable(
                "no Kafka to connect to: the local services are not running and "
                "SCANTRACE_KAFKA__BOOTSTRAP is not set",
                hint="start them with `scantrace services up`, or set SCANTRACE_KAFKA__BOOTSTRAP",
            )
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]

    # -- security -------------------------------------------------------------------------

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def login(self) -> str:
        """How this client logs in, for logs: `SASL_SSL as 'worker' (SCRAM-SHA-512)`."""
        if self.uses_sasl:
            return f"{self.security_protocol} as {self.sasl_username!r} ({self.sasl_mechanism})"
        return self.security_protocol

    def sasl_secret(self) -> str:
        """The SASL password; a password file is read each time (a rotated secret is
        picked up by the next client built), without its trailing newline."""
        if self.sasl_password_file is not None:
            try:
                return self.sasl_password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"{ENV}SASL_PASSWORD_FILE unreadable: {exc}") from None
        return self.sasl_password.get_secret_value()

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of SSL and SASL_SSL, None otherwise."""
        if not self.uses_tls:
            return None
        return build_ssl_context(self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)

    def security_config(self) -> dict[str, Any]:
        """The security keywords alone (kafka-python and aiokafka name them alike)."""
        config: dict[str, Any] = {"security_protocol": self.security_protocol}
        context = self.ssl_context()
        if context is not None:
            config["ssl_context"] = context
        if self.uses_sasl:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_secret()
        return config

    def kafka_python_config(self) -> dict[str, Any]:
        """Connection keywords for kafka-python's KafkaProducer, KafkaConsumer and
        KafkaAdminClient: bootstrap servers and security."""
        return {"bootstrap_servers": self.servers(), **self.security_config()}

    def aiokafka_config(self) -> dict[str, Any]:
        """Connection keywords for aiokafka's AIOKafkaProducer and AIOKafkaConsumer."""
        return {"bootstrap_servers": self.servers(), **self.security_config()}
