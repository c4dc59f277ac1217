"""Versioned schema migrations, applied in order and recorded in `schema_migrations`.

Each migration is a list of SQL templates rendered by `sinks.schema` for a single node or
for a cluster (`ON CLUSTER`, Replicated engines, Distributed tables) from one source.
Applying twice is a no-op: a version recorded in `schema_migrations` is skipped, and every
statement is `IF NOT EXISTS` (or harmless twice, or a `Once` that checks whether it ran) so
a half-applied migration can be re-run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from clickhouse_driver import Client

from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.schema import MIGRATIONS, Migration, render_steps, without_keeper


@dataclass(frozen=True, slots=True)
class Applied:
    version: int
    name: str


def _bookkeeping(client: Client, db: str, on_cluster: str) -> None:
    client.execute(f"CREATE DATABASE IF NOT EXISTS `{db}` {on_cluster}")
    client.execute(
        f"CREATE TABLE IF NOT EXISTS `{db}`.schema_migrations {on_cluster} "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )


def applied_versions(client: Client, db: str) -> set[int]:
    # Identifiers come from the operator's settings, never from a request.
    rows = client.execute(f"SELECT DISTINCT version FROM `{db}`.schema_migrations")  # noqa: S608
    return {int(r[0]) for r in rows}


MIGRATION_TIMEOUT_S: Final = 6 * 3600


def migrate(
    settings: ClickHouseSettings,
    migrations: list[Migration] | None = None,
    step: Callable[[Migration, int, int], None] | None = None,
) -> list[Applied]:
    """Apply every pending migration in order; returns the ones applied now. `step(m, i,
    n)` hears that statement i of n of migration m starts (progress)."""
    db = settings.database
    on_cluster = f"ON CLUSTER `{settings.cluster}`" if settings.cluster else ""
    # A migration may rebuild data (MATERIALIZE PROJECTION waits with mutations_sync): a
    # client timeout would leave it running unrecorded and a re-run would queue it twice.
    client = connect(settings, database="default", send_receive_timeout=MIGRATION_TIMEOUT_S)
    try:
        _bookkeeping(client, db, on_cluster)
        done = applied_versions(client, db)
        applied: list[Applied] = []
        for m in sorted(
            migrations if migrations is not None else MIGRATIONS, key=lambda m: m.version
        ):
            if m.version in done:
                continue
            steps = list(render_steps(m, settings))
            for i, (sql, done_if) in enumerate(steps, start=1):
                if step is not None:
                    step(m, i, len(steps))
                if done_if and client.execute(done_if) == [(1,)]:
                    continue
                client.execute(sql)
            client.execute(
                f"INSERT INTO `{db}`.schema_migrations (version, name) VALUES",
                [(m.version, m.name)],
            )
            applied.append(Applied(m.version, m.name))
        return applied
    finally:
        client.disconnect()


def migrate_nodes(
    settings: ClickHouseSettings,
    nodes: list[ClickHouseSettings],
    migrations: list[Migration] | None = None,
) -> list[Applied]:
    """Apply the schema of `settings.cluster` to a cluster without Keeper, node by node
    (`nodes`: one connection per shard): each step on every node before the next step,
    as `ON CLUSTER` would, with the plain engines in place of the Replicated ones
    (`sinks.schema.without_keeper`). An `INSERT` (a backfill through a Distributed
    table) runs on the first node only: it reaches every shard from there. Returns the
    migrations applied now (on the first node; every node records its own)."""
    if not settings.cluster:
        raise ValueError("migrate_nodes needs settings.cluster")
    db = settings.database
    clients = [
        connect(n, database="default", send_receive_timeout=MIGRATION_TIMEOUT_S) for n in nodes
    ]
    try:
        for client in clients:
            _bookkeeping(client, db, "")
        done = [applied_versions(client, db) for client in clients]
        applied: list[Applied] = []
        for m in sorted(
            migrations if migrations is not None else MIGRATIONS, key=lambda m: m.version
        ):
            pending = [
                c for c, versions in zip(clients, done, strict=True) if m.version not in versions
            ]
            if not pending:
                continue
            for sql, done_if in render_steps(m, settings):
                statement = without_keeper(sql, settings.cluster)
                targets = (
                    pending[:1] if statement.lstrip().upper().startswith("INSERT") else pending
                )
                for client in targets:
                    if done_if and client.execute(done_if) == [(1,)]:
                        continue
                    client.execute(statement)
            for client in pending:
                client.execute(
                    f"INSERT INTO `{db}`.schema_migrations (version, name) VALUES",
                    [(m.version, m.name)],
                )
            if clients[0] in pending:
                applied.append(Applied(m.version, m.name))
        return applied
    finally:
        for client in clients:
            client.disconnect()
