"""One module per CLI command group; `scantrace.cli` imports them lazily."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import SecretStr, ValidationError

# Where commands put the files they make when not told where: one folder, ignored by git
# (`.gitignore`), so that running them from a checkout leaves its root clean.
OUT_DIR = Path("out")


def made_parent(path: Path) -> Path:
    """`path`, after making the folder it goes in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def one_line(exc: BaseException) -> str:
    """An error as the one line after `error: `; pydantic's report is several lines."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            if e["loc"]
            else e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
    return " ".join(str(exc).split())


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
