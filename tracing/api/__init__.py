"""The tracer HTTP API (aiohttp): the two exposure queries and the audit log."""
