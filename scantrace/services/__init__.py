"""Real local services (Kafka broker, ClickHouse server): one code path for the CLI and tests."""
