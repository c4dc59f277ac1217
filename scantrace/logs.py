"""Logs of the long-running components (gateway, worker, sink, api, run): plain text for
people, or JSON lines for a log pipeline (`--log-format json`, `SCANTRACE_LOG_FORMAT`).

A JSON line holds `timestamp` (UTC, ISO 8601), `level`, `component`, `logger`, `message`,
the exception when there is one, and any context the call gave in `extra=` (a batch's
topic and partition, a request id). Person ids never go into a log line at INFO or above
(a test reads every logging call of the packages).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any, Final, Literal

__all__ = [
    "FORMATS",
    "LOG_FORMAT_ENV",
    "JsonFormatter",
    "formatter_config",
    "log_format",
    "setup_logging",
]

LOG_FORMAT_ENV: Final = "SCANTRACE_LOG_FORMAT"
FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LogFormat = Literal["text", "json"]

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def __init__(self, component: str = "") -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_format() -> LogFormat:
    """The format chosen by `--log-format` or `SCANTRACE_LOG_FORMAT` (the option writes
    its value to the variable, so that the children of `run` log the same way)."""
    return "json" if os.environ.get(LOG_FORMAT_ENV, "text").lower() == "json" else "text"


def formatter_config(component: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` formatter entry for the chosen format."""
    if log_format() == "json":
        return {"()": JsonFormatter, "component": component}
    return {"format": TEXT_FORMAT}


# Client libraries that log a failure our code also reports (with a traceback, at WARNING):
# only their errors, unless the level is debug.
CHATTY_LIBRARIES: Final = ("clickhouse_driver", "kafka", "aiokafka")


def setup_logging(level: str, component: str) -> None:
    """The root logger to standard error at `level`, in the chosen format."""
    handler = logging.StreamHandler()
    if log_format() == "json":
        handler.setFormatter(JsonFormatter(component))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel("DEBUG" if level.lower() == "debug" else "ERROR")
