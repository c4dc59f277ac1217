"""Stage 4, tracing: exposure queries, tracer API, audit log and reports."""
