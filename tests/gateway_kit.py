"""The gateway's app under an aiohttp test client (unit, integration and fuzz tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ingest.gateway.app import OPTIONS_KEY, runner_kwargs


@asynccontextmanager
async def app_client(
    app: web.Application,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """An aiohttp test client for the gateway app, served as in production (we decode
    gzip ourselves: aiohttp's own decoding is off; the header timeout holds)."""
    server = TestServer(app)
    await server.start_server(**runner_kwargs(app[OPTIONS_KEY]))
    async with TestClient(server) as client:
        yield client
