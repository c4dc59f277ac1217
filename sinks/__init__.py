"""Stage 3, sinks: ClickHouse schema migrations and the batched, idempotent writer.
Imports from `processors` and `ingest` only.

Offered to the later stages and the shell: the connection (`clickhouse_settings`,
`client`), the schema (`schema`, `migrations`, `grants`), the daily rollup's definitions
(`rollup`), the sink (`consume_loop`, its `settings`) and its writer seam with fakes
(`writer`, `testing`). How the sink batches, flushes and schedules (`batch`, `flow`,
`flush`, `rollup_schedule`, `metrics`) is internal.
"""

__all__ = [
    "clickhouse_settings",
    "client",
    "consume_loop",
    "grants",
    "migrations",
    "rollup",
    "schema",
    "settings",
    "testing",
    "writer",
]
