"""Run the tracer API until SIGTERM/SIGINT: listener closed first, queries in progress
finish, then the ClickHouse connections close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from ingest.http import listening, stop_on_signals
from tracing.api.app import build_app
from tracing.api.metrics import ApiMetrics
from tracing.runner import ClickHouseRunner, RunnerPool
from tracing.settings import TracerSettings
from tracing.trace import check_schema
from tracing.workbench import WORKBENCH_SCHEMA

log = logging.getLogger(__name__)


async def serve(
    settings: TracerSettings,
    *,
    registry: CollectorRegistry | None = None,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    options = settings.api
    tokens = options.token_map()  # fails fast on a bad table
    if not tokens:
        log.warning("no API tokens configured: every query will get 401")
    limits = options.limits()
    pool = RunnerPool(
        lambda: ClickHouseRunner(settings.clickhouse, limits=limits), size=options.pool_size
    )
    auditor = settings.auditor_clickhouse()
    audit_pool = (
        RunnerPool(lambda: ClickHouseRunner(auditor, limits=limits), size=1)
        if auditor != settings.clickhouse
        else None
    )
    # depth-2 jobs of the workbench: connections of their own, under the jobs' limits
    job_limits = settings.workbench.job_limits()
    job_pool = RunnerPool(
        lambda: ClickHouseRunner(settings.clickhouse, limits=job_limits),
        size=settings.workbench.max_jobs,
    )
    # refuse to serve from a schema without the by-person table or the workbench's tables
    with pool.runner() as runner:
        await asyncio.to_thread(check_schema, runner, WORKBENCH_SCHEMA)
    app = build_app(
        pool,
        options,
        ApiMetrics(registry or CollectorRegistry()),
        retention_days=settings.clickhouse.retention_days,
        tokens=tokens,
        audit_pool=audit_pool,
        workbench=settings.workbench,
        job_pool=job_pool,
    )
    stop = stop or asyncio.Event()
    with stop_on_signals(stop):
        try:
            async with listening(
                app,
                options.host,
                options.port,
                shutdown_timeout=options.shutdown_timeout_s,
                access_log=None,
            ) as port:
                log.info("tracer API on http://%s:%d (%d tokens)", options.host, port, len(tokens))
                if on_listening is not None:
                    on_listening(port)
                await stop.wait()
        finally:
            pool.close()
            job_pool.close()
            if audit_pool is not None:
                audit_pool.close()
