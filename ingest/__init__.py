"""Stage 1, ingest: the scan-event contract, the HTTP gateway, the Kafka publisher and
the premises registry import. Depends on no other stage."""
