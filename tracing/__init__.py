"""Stage 4, tracing: exposure queries, tracer API, audit log and reports.

Every module is offered to the shell: the queries (`trace`, `sql`, `rules`, `models`,
`formatting`, `runner`, `settings`), the HTTP API (`api`), the tracers' web pages beside
it (`workbench`), the audit log (`audit`) and the compliance report (`report`).
"""

__all__ = [
    "api",
    "audit",
    "formatting",
    "models",
    "report",
    "rules",
    "runner",
    "settings",
    "sql",
    "trace",
    "workbench",
]
