"""The local ClickHouse server process (chdb-core, the `local` extra)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from scantrace.services.process import ServiceError, free_port, spawn


def start(state_dir: Path, ports: tuple[int, int] | None = None) -> dict[str, object]:
    """Start the server; `ports` (native, http) keeps an address across a restart."""
    if importlib.util.find_spec("chdb") is None:
        raise ServiceError("chdb-core is not installed: pip install 'scantrace[local]'")
    home = state_dir / "clickhouse"
    tcp, http = ports if ports else (free_port(), free_port())
    log = state_dir / "logs" / "clickhouse.log"
    pid = spawn(
        [sys.executable, "-m", "scantrace.services.chserver", str(home), str(tcp), str(http)], log
    )
    return {
        "kind": "local",
        "pid": pid,
        "native_port": tcp,
        "http_port": http,
        "log": str(log),
        "marker": "scantrace.services.chserver",
    }
