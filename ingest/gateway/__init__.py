"""The HTTP ingest gateway: `app` (aiohttp, above the `Publisher` seam in `base`),
`kafka_publish` (the aiokafka publisher), `server` (run it), `settings`, `metrics`."""
