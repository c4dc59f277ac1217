"""clickhouse-driver client from `ClickHouseSettings` (the only place that builds one)."""

from __future__ import annotations

from clickhouse_driver import Client

from sinks.clickhouse_settings import ClickHouseSettings


def connect(
    settings: ClickHouseSettings,
    *,
    database: str | None = None,
    send_receive_timeout: float = 300,
    server_side_params: bool = False,
    **kwargs: object,
) -> Client:
    """`server_side_params`: bind `{name:Type}` parameters on the server, sent apart from
    the query text (for a secret such as the person hash key), instead of `%(name)s`
    substituted into the text by the client."""
    host, port, db, user, password = settings.parts()
    return Client(
        host=host,
        port=port,
        database=database if database is not None else db,
        user=user,
        password=password,
        connect_timeout=5,
        send_receive_timeout=send_receive_timeout,
        settings={"use_numpy": False, "server_side_params": server_side_params},
        **kwargs,
    )
