"""Create the source topics up front with their partition counts (Faust does not)."""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import AuthorizationError, TopicAlreadyExistsError

from ingest.kafka_settings import KafkaSettings

log = logging.getLogger(__name__)


def ensure_topics(settings: KafkaSettings, timeout_ms: int = 30_000) -> list[str]:
    """Create missing topics; returns the names created now. Existing topics are kept as
    they are (a partition count is never changed behind the operator's back).

    A component whose user may not create topics (only the admin may, on a secured
    cluster) skips them: it does not even see the topics it has no rights on, and
    creating those is the admin's job (`scantrace services up`)."""
    admin = KafkaAdminClient(
        **settings.kafka_python_config(),
        client_id="scantrace-admin",
        request_timeout_ms=timeout_ms,
    )
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name=spec.name,
                num_partitions=spec.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=spec.config,
            )
            for spec in settings.topic_specs()
            if spec.name not in existing
        ]
        created: list[str] = []
        for topic in wanted:
            try:
                admin.create_topics([topic], timeout_ms=timeout_ms)
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # a concurrent `up` or worker made it first
            except AuthorizationError:
                log.debug("not allowed to create %s: left to the admin", topic.name)
        return created
    finally:
        admin.close()


def partition_counts(settings: KafkaSettings) -> dict[str, int]:
    admin = KafkaAdminClient(**settings.kafka_python_config(), client_id="scantrace-admin")
    try:
        names = [s.name for s in settings.topic_specs()]
        described = admin.describe_topics(names)
        return {t["name"]: len(t["partitions"]) for t in described if not t.get("error_code")}
    finally:
        admin.close()
