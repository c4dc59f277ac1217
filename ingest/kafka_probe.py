"""The start-up check of every component: can it reach Kafka, speak its listener's
protocol, log in, and see its topics?

Kafka clients retry a refused login or an untrusted certificate as if the broker were
down, and log each attempt; a component misconfigured that way would spin for ever. So
each component first opens one connection itself, with the same settings, and turns
the outcome into one line: a refused password, an unknown CA, a protocol that does not
match the listener or a topic the ACLs deny fail at once; a broker that does not answer
is waited for up to `startup_timeout_seconds`, then fails too.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from typing import Any, Final

from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from ingest.errors import InvalidInput, ScantraceError, ServiceUnavailable
from ingest.kafka_settings import ENV, KafkaSettings

__all__ = ["KafkaRefused", "KafkaStartupError", "KafkaUnreachable", "check_kafka"]

TOPIC_AUTHORIZATION_FAILED: Final = 29
RETRY_S: Final = 0.5


class KafkaStartupError(ScantraceError):
    """Kafka cannot be used with these settings; the message is one line for the operator.
    Always one of its two kinds: `KafkaUnreachable` or `KafkaRefused`."""

    terminal: bool = False


class KafkaUnreachable(KafkaStartupError, ServiceUnavailable):
    """No broker answered (down, a wrong address, a firewall): may work later. Its
    message names the setting to check; the hint, what starts a local one."""

    hint = "is Kafka running? `scantrace services up` starts the local one"


class KafkaRefused(KafkaStartupError, InvalidInput):
    """A broker answered and refused: credentials, certificates, protocol or ACLs;
    retrying cannot help."""

    terminal = True


def check_kafka(
    kafka: KafkaSettings, topics: Sequence[str] = (), timeout_s: float | None = None
) -> None:
    """Connect to a bootstrap server with `kafka`'s settings and ask for `topics`'
    metadata; raise `KafkaStartupError` when that fails. Missing topics are not an error
    (whoever creates them may not have run yet); topics the user may not see are."""
    with asyncio.Runner() as runner:
        loop = runner.get_loop()
        opened: list[asyncio.BaseTransport] = []
        create = loop.create_connection

        async def create_connection(*args: Any, **kwargs: Any) -> Any:
            transport, protocol = await create(*args, **kwargs)
            opened.append(transport)
            return transport, protocol

        # aiokafka closes a TLS connection without waiting for the TLS goodbye, which
        # would finish after this loop is gone (an unclosed socket): cut them at the end.
        loop.create_connection = create_connection  # type: ignore[method-assign]
        try:
            runner.run(check_kafka_async(kafka, topics, timeout_s))
        finally:
            for transport in opened:
                transport.abort()  # type: ignore[attr-defined]
            runner.run(asyncio.sleep(0))  # the sockets close in the aborts' callbacks


async def check_kafka_async(
    kafka: KafkaSettings, topics: Sequence[str] = (), timeout_s: float | None = None
) -> None:
    timeout = kafka.startup_timeout_seconds if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout
    while True:
        error: KafkaStartupError | None = None
        for server in kafka.servers():
            left = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.wait_for(_probe_one(kafka, server, topics, left), left)
                return
            except KafkaStartupError as exc:
                error = exc
            except TimeoutError:
                error = KafkaUnreachable(
                    f"Kafka at {server} did not answer within {timeout:g} s: check "
                    f"{ENV}BOOTSTRAP and {ENV}SECURITY_PROTOCOL ({kafka.security_protocol})"
                )
            except Exception as exc:  # every other failure is classified, none escapes raw
                error = classify(kafka, server, exc)
            if error.terminal:
                raise error
        assert error is not None  # servers() is never empty
        if time.monotonic() + RETRY_S >= deadline:
            raise error
        await asyncio.sleep(RETRY_S)


async def _probe_one(kafka: KafkaSettings, server: str, topics: Sequence[str], left: float) -> None:
    host, _, port = server.rpartition(":")
    conn = await create_conn(
        host or server,
        int(port or 9092),
        client_id="scantrace-probe",
        request_timeout_ms=int(left * 1000),
        **kafka.security_config(),
    )
    try:
        # The request also proves the session: a TLS handshake succeeds even where the
        # listener then expects a SASL login.
        response: Any = await conn.send(MetadataRequest(list(topics), False))
    finally:
        conn.close()
    denied = sorted(
        t[1] for t in response.topics if t[0] == TOPIC_AUTHORIZATION_FAILED and t[1] in topics
    )
    if denied:
        who = f"user {kafka.sasl_username!r}" if kafka.uses_sasl else "this client"
        raise KafkaRefused(
            f"Kafka refuses {who} access to {', '.join(denied)}: the broker's ACLs do not "
            f"allow it (check {ENV}SASL_USERNAME and the ACLs)"
        )


def classify(kafka: KafkaSettings, server: str, exc: BaseException) -> KafkaStartupError:
    """One line for what went wrong connecting to `server`, and whether to retry."""
    protocol = kafka.security_protocol
    if isinstance(exc, SaslAuthenticationFailed):
        return KafkaRefused(
            f"Kafka authentication failed for user {kafka.sasl_username!r} "
            f"({kafka.sasl_mechanism}) at {server}: check {ENV}SASL_USERNAME/PASSWORD"
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return KafkaRefused(
            f"Kafka at {server} does not accept SASL mechanism {kafka.sasl_mechanism}: "
            f"check {ENV}SASL_MECHANISM"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return KafkaRefused(
            f"Kafka at {server}: TLS certificate not trusted "
            f"({getattr(exc, 'verify_message', None) or exc.strerror}): "
            f"check {ENV}SSL_CAFILE"
            + (f" ({kafka.ssl_cafile})" if kafka.ssl_cafile else " (unset: system CAs)")
        )
    if isinstance(exc, ssl.SSLError):
        return KafkaRefused(
            f"Kafka at {server}: TLS handshake failed "
            f"({getattr(exc, 'reason', None) or exc.strerror}): check "
            f"{ENV}SECURITY_PROTOCOL ({protocol}) and the TLS files"
        )
    if isinstance(exc, KafkaConnectionError) and "closed" in str(exc):
        # The broker hung up on what we sent: TLS bytes on a plaintext listener, plain
        # bytes on a TLS one, or no SASL login where one is required.
        return KafkaRefused(
            f"Kafka at {server} closed the connection: its listener does not speak "
            f"{protocol}; check {ENV}SECURITY_PROTOCOL"
        )
    if isinstance(exc, OSError | KafkaConnectionError):
        return KafkaUnreachable(f"Kafka at {server} not reachable ({exc}): check {ENV}BOOTSTRAP")
    return KafkaUnreachable(f"Kafka at {server}: {type(exc).__name__}: {exc}".rstrip(": "))
