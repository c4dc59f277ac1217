"""Stage 2, processors: dedup, repeat suppression, enrichment and parking (pure core),
and the Faust app that runs it. Imports from `ingest` only."""
