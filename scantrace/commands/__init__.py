"""One module per CLI command group; `scantrace.cli` imports them lazily."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import click
from pydantic import SecretStr

from ingest.errors import ServiceUnavailable

# Where commands put the files they make when not told where: one folder, ignored by git
# (`.gitignore`), so that running them from a checkout leaves its root clean.
OUT_DIR = Path("out")
T = TypeVar("T")


class MissingFile(click.BadParameter):
    """A file argument that does not exist: exit code 4 (not found), not 2."""

    exit_code = 4


class InputFile(click.Path):
    """A file to read, which must exist (a missing one exits 4, `scantrace.exits`)."""

    def __init__(self, *, path_type: type | None = Path, allow_dash: bool = False) -> None:
        super().__init__(dir_okay=False, path_type=path_type, allow_dash=allow_dash)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = os.fsdecode(value)
        if not (self.allow_dash and text == "-") and not os.path.lexists(text):
            raise MissingFile(f"no such file: {text}", ctx=ctx, param=param)
        return super().convert(value, param, ctx)


LOG_LEVELS: Final = ("debug", "info", "warning", "error")
# The long-running components' `--log-level` (the worker's reads its variable too).
LOG_LEVEL: Final = click.option(
    "--log-level", type=click.Choice(LOG_LEVELS), default="info", help="Logging level"
)


def to_stdout(out: Path | str | None) -> bool:
    """Whether `--out` names standard output (`-`)."""
    return out is not None and str(out) == "-"


def write_or_print(out: Path, write: Callable[[Path], T], suffix: str = "") -> T:
    """`write(path)` into `out`, or, when `out` is `-`, into a temporary file (named with
    `suffix`, which some writers read the format from) whose bytes then go to standard
    output."""
    if not to_stdout(out):
        return write(made_parent(out))
    with tempfile.TemporaryDirectory(prefix="scantrace-") as tmp:
        path = Path(tmp) / f"out{suffix}"
        result = write(path)
        stdout = click.get_binary_stream("stdout")
        stdout.write(path.read_bytes())
        stdout.flush()
    return result


def made_parent(path: Path) -> Path:
    """`path`, after making the folder it goes in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def server_overrides(
    host: str | None, port: int | None, tokens_file: Path | None
) -> dict[str, object]:
    """The flags a server command was given, to lay over its settings from the environment."""
    changes: dict[str, object] = {}
    if host is not None:
        changes["host"] = host
    if port is not None:
        changes["port"] = port
    if tokens_file is not None:
        changes["tokens"] = SecretStr(tokens_file.read_text(encoding="utf-8"))
    return changes


def check_reachable() -> None:
    """Raise `ServiceUnavailable` unless a Kafka bootstrap server and ClickHouse accept a
    TCP connection: what a command that starts other processes checks first, so that a
    service down is one line and exit 3 instead of a child's crash. Only the port is
    tried (no login): the children log in as their own users."""
    from ingest.kafka_settings import UNREACHABLE_HINT as KAFKA_HINT
    from sinks.clickhouse_settings import UNREACHABLE_HINT as CLICKHOUSE_HINT
    from sinks.settings import SinkSettings

    settings = SinkSettings()
    clickhouse = settings.clickhouse
    if not clickhouse.url:  # the children pick their roles' URLs of the local services
        from scantrace.services import manager
        from scantrace.settings import ServicesSettings

        services = ServicesSettings()
        ends = manager.endpoints(services, manager.load_state(services))
        if ends is not None:
            clickhouse = clickhouse.model_copy(update={"url": ends.clickhouse_url})
    host, port = clickhouse.parts()[:2]
    kafka = [_address(server) for server in settings.kafka.servers()]
    failed = [f"{h}:{p}: {e}" for h, p in kafka if (e := _refused(h, p)) is not None]
    if len(failed) == len(kafka):
        raise ServiceUnavailable(f"Kafka not reachable ({'; '.join(failed)})", hint=KAFKA_HINT)
    error = _refused(host, port)
    if error is not None:
        raise ServiceUnavailable(
            f"ClickHouse at {host}:{port} not reachable: {error}", hint=CLICKHOUSE_HINT
        )


def _address(server: str) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    return host or server, int(port or 9092)


def _refused(host: str, port: int) -> str | None:
    """Why a TCP connection to host:port fails, or None when it opens."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)
