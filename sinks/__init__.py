"""Stage 3, sinks: ClickHouse schema migrations and the batched, idempotent writer.
Imports from `processors` and `ingest` only."""
