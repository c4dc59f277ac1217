"""noida-db: a pip-installable Kafka-protocol broker (the `local` extra), the fallback
when Java or Maven is missing. Started as the binary itself: its console script runs
the binary as a child and stopping the script would leave the server behind."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from scantrace.services.process import ServiceError, free_port, spawn


def binary() -> Path:
    try:
        path = Path(str(resources.files("noida_db") / "noida-db"))
    except ModuleNotFoundError:
        raise ServiceError("noida-db is not installed: pip install 'scantrace[local]'") from None
    if not path.exists():
        raise ServiceError(f"noida-db binary missing at {path}")
    return path


def start(state_dir: Path) -> dict[str, object]:
    home = state_dir / "noida"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = state_dir / "logs" / "noida.log"
    pid = spawn(
        [
            str(binary()),
            "start",
            "--only",
            "kafka",
            "--host",
            "127.0.0.1",
            "--kafka-port",
            str(port),
            "--data-dir",
            str(home),
        ],
        log,
    )
    return {
        "kind": "noida",
        "pid": pid,
        "bootstrap": f"127.0.0.1:{port}",
        "log": str(log),
        "marker": str(home),
    }
