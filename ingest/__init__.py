"""Stage 1, ingest: the scan-event contract, the HTTP gateway, the Kafka publisher and
the premises registry import. Depends on no other stage.

Every module is offered to the later stages and the shell: the contract and its codecs
(`contract`, `codec`, `wire`, `deadletter`, `premises`), Kafka (`kafka_settings`,
`admin`, `partitioning`, `batch_send`, `lean_records`, `kafka_probe`, `publisher`,
`registry`), the gateway (`gateway`) and what every component's edges share (`auth`,
`http`, `telemetry`).
"""

__all__ = [
    "admin",
    "auth",
    "batch_send",
    "codec",
    "contract",
    "deadletter",
    "gateway",
    "http",
    "kafka_probe",
    "kafka_settings",
    "lean_records",
    "partitioning",
    "premises",
    "publisher",
    "registry",
    "telemetry",
    "wire",
]
