"""clickhouse-driver client from `ClickHouseSettings` (the only place that builds one),
and which of its failures mean "ClickHouse cannot be reached"."""

from __future__ import annotations

import socket
from typing import Final

from clickhouse_driver import Client, errors

from ingest.errors import ServiceUnavailable
from sinks.clickhouse_settings import UNREACHABLE_HINT, ClickHouseSettings

# What clickhouse-driver (or the stdlib under it) raises when the server cannot be reached
# or stops answering: nothing about the query or the data.
NETWORK_ERRORS: Final = (
    errors.NetworkError,
    errors.SocketTimeoutError,
    errors.UnexpectedPacketFromServerError,
    EOFError,
    OSError,  # ConnectionError, socket.timeout, ...
    socket.timeout,
)
# In clickhouse-driver's NetworkError text when the TLS handshake refused the server's
# certificate: a configuration error (CA file, host name), not a passing outage.
TLS_REFUSED: Final = "CERTIFICATE_VERIFY_FAILED"


class ClickHouseUnavailable(ServiceUnavailable):
    """ClickHouse cannot be reached or stopped answering (the driver's error is the
    cause)."""


def unavailable(exc: BaseException, settings: ClickHouseSettings) -> ClickHouseUnavailable | None:
    """`exc` as `ClickHouseUnavailable` when it means the server cannot be reached, else
    None (a refused certificate is a setting to fix, not an outage)."""
    if not isinstance(exc, NETWORK_ERRORS) or TLS_REFUSED in str(exc):
        return None
    try:
        host, port = settings.parts()[:2]
        where = f" at {host}:{port}"
    except Exception:  # the URL itself is what is wrong: said elsewhere
        where = ""
    text = " ".join(str(exc).split()).removeprefix("Code: 210. ")
    return ClickHouseUnavailable(f"ClickHouse{where} not reachable: {text}", hint=UNREACHABLE_HINT)


def connect(
    settings: ClickHouseSettings,
    *,
    database: str | None = None,
    send_receive_timeout: float = 300,
    server_side_params: bool = False,
    connect_timeout: float = 5,
    **kwargs: object,
) -> Client:
    """`server_side_params`: bind `{name:Type}` parameters on the server, sent apart from
    the query text (for a secret such as the person hash key), instead of `%(name)s`
    substituted into the text by the client."""
    host, port, db, user, password = settings.parts()
    if settings.secure:
        # verify=True: the certificate must chain to the CA and name the host.
        tls: dict[str, object] = {"secure": True, "verify": True}
        if settings.ca_file:
            tls["ca_certs"] = settings.ca_file
        kwargs = {**tls, **kwargs}
    return Client(
        host=host,
        port=port,
        database=database if database is not None else db,
        user=user,
        password=password,
        connect_timeout=connect_timeout,
        send_receive_timeout=send_receive_timeout,
        settings={"use_numpy": False, "server_side_params": server_side_params},
        **kwargs,
    )
