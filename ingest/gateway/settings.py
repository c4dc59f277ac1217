"""Settings of the HTTP ingest gateway, from SCANTRACE_* environment variables.

`SCANTRACE_GATEWAY__TOKENS='{"TOKEN": "GATEWAY_ID", ...}'` (or `--tokens-file`),
`SCANTRACE_GATEWAY__PORT`, `SCANTRACE_GATEWAY__MAX_BODY_BYTES`, ...; the broker from
`SCANTRACE_KAFKA__BOOTSTRAP` like every component.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.auth import TokensError, parse_token_table
from ingest.contract import DEFAULT_MAX_SKEW_MS, MAX_ID_LEN
from ingest.kafka_settings import KafkaSettings

Compression = Literal["gzip", "lz4", "zstd", "snappy", "none"]


class GatewayOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # JSON object {"TOKEN": "GATEWAY_ID"}; a secret: masked whenever the settings are printed.
    tokens: SecretStr = SecretStr("")
    # Limit on the request body after gzip decoding, so a small gzip bomb is a 413 too.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_batch: int = Field(default=10_000, ge=1)
    # Concatenated gzip members are legal but rare; each one costs a zlib decoder.
    max_gzip_members: int = Field(default=16, ge=1)
    # Requests (POST /v1/scans) and request bytes (bodies as received plus what gzip
    # decoding produced) being processed at once; beyond either, 503 with Retry-After.
    max_in_flight_requests: int = Field(default=64, ge=1)
    max_in_flight_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    # A connection that has not sent a whole request head this long after it opened (or
    # after its previous answer) is closed; so is an idle keep-alive connection.
    header_timeout_s: float = Field(default=15.0, gt=0)
    # The whole body must arrive within this; a slower client gets 408 and is cut off.
    body_timeout_s: float = Field(default=30.0, gt=0)
    # Bodies larger than this, and every gzip body, are decoded in a worker thread so that
    # the event loop (health checks, other requests) keeps answering.
    offload_bytes: int = Field(default=256 * 1024, ge=0)
    # /metrics on its own listener (an internal interface); 0 = on the main port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # /readyz asks the broker at most this often; answers in between are the last one.
    ready_cache_s: float = Field(default=1.0, ge=0)
    max_skew_ms: int = Field(default=DEFAULT_MAX_SKEW_MS, ge=0)
    # Kafka producer compression. zstd (cramjam here, zstandard in kafka-python consumers,
    # both dependencies): gzip, which aiokafka runs at level 9, cost ~14 us a scan, zstd ~1.2.
    compression: Compression = "zstd"
    kafka_batch_bytes: int = Field(default=512 * 1024, ge=16 * 1024)
    kafka_request_timeout_ms: int = Field(default=10_000, ge=100)
    # Scans handed to Kafka and not yet acknowledged; beyond this a request gets 503.
    max_pending_scans: int = Field(default=500_000, ge=1)
    # A request waits this long for Kafka's acknowledgement before answering 503.
    publish_timeout_ms: int = Field(default=15_000, ge=100)
    retry_after_s: int = Field(default=2, ge=1)
    # On SIGTERM: how long requests in progress may take to finish.
    shutdown_timeout_s: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _room_for_one_body(self) -> GatewayOptions:
        # A gzip body of max_body_bytes that decodes to as much holds twice that.
        if self.max_in_flight_bytes < 2 * self.max_body_bytes:
            raise ValueError(
                "max_in_flight_bytes must be at least twice max_body_bytes "
                "(or a full gzip body does not fit)"
            )
        return self

    def token_map(self) -> dict[str, str]:
        """`{token: gateway_id}`, checked. Raises `TokensError` (never quoting a token)."""
        shape = '{"TOKEN": "GATEWAY_ID"}'
        return parse_token_table(self.tokens.get_secret_value(), "gateway", shape, _gateway_id)


def _gateway_id(n: int, gateway_id: object) -> str:
    if (
        not isinstance(gateway_id, str)
        or not gateway_id
        or len(gateway_id) > MAX_ID_LEN
        or not gateway_id.isprintable()
    ):
        raise TokensError(
            f"gateway token #{n}: its gateway_id must be a printable string of "
            f"1-{MAX_ID_LEN} characters"
        )
    return gateway_id


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCANTRACE_", env_nested_delimiter="__", frozen=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    gateway: GatewayOptions = Field(default_factory=GatewayOptions)

    def with_options(self, **changes: object) -> GatewaySettings:
        """A copy with some gateway options replaced (flags over environment), validated."""
        options = GatewayOptions.model_validate({**self.gateway.model_dump(), **changes})
        return self.model_copy(update={"gateway": options})
