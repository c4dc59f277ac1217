"""What the project's HTTP services (the ingest gateway, the tracer API) share: the error
that refuses a request, JSON answers, and an aiohttp listener's start and graceful stop.

A stop signal (SIGTERM, SIGINT) sets an `asyncio.Event`; the service then leaves its
`listening` block, which closes the listener first (no new requests) and lets requests in
progress finish (`shutdown_timeout`) before the service closes what they used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from aiohttp import web

__all__ = ["HttpError", "bound_port", "json_response", "listening", "stop_on_signals"]


class HttpError(Exception):
    """A request refused as a whole: the HTTP `status`, a stable `code` for programs, a
    `detail` for people, and headers of the answer (`Retry-After`, for one)."""

    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers

    def response(self) -> web.Response:
        """The answer: `{"error": code, "detail": detail}` with the status and headers."""
        return json_response(self.status, {"error": self.code, "detail": self.detail}, self.headers)


def json_response(
    status: int, body: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> web.Response:
    """Compact UTF-8 JSON (non-ASCII text as it is: Vietnamese names stay readable)."""
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Inside, SIGTERM and SIGINT set `stop` (where the running loop can take signal
    handlers: the main thread on Unix); the handlers are removed on leaving."""
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def bound_port(runner: web.AppRunner, default: int) -> int:
    """The port the runner's first site listens on (the real one when asked for port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default


@contextlib.asynccontextmanager
async def listening(
    app: web.Application,
    host: str,
    port: int,
    *,
    backlog: int = 128,
    **runner_options: Any,
) -> AsyncIterator[int]:
    """Serve `app` on host:port inside the block, which gets the bound port. On leaving,
    the listener closes and requests in progress finish (the runner's `shutdown_timeout`,
    among `runner_options`)."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=backlog).start()
        yield bound_port(runner, port)
    finally:
        await runner.cleanup()
