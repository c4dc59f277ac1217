"""Stage 2, processors: dedup, repeat suppression, enrichment and parking (pure core),
and the Faust app that runs it. Imports from `ingest` only.

Offered to the later stages and the shell: the pure core (`core`, its `settings` and
`state`), the records it reads and writes (`records`: the enriched scan and its frames),
and the worker (`app`, `worker_settings`). The Faust machinery behind the worker
(`faust_transport`, `tables`, `runner`, `horizon`, `metrics`) is internal.
"""

__all__ = ["app", "core", "records", "settings", "state", "worker_settings"]
