"""What the command line says when a command fails, and its exit code.

Every failure becomes one line on standard error, `error: WHAT; hint: WHAT TO DO`, and one
of a few exit codes (the README's "Exit codes"):

| code | meaning |
|---|---|
| 0 | done (a question whose answer is "nobody" included) |
| 1 | failed: the work was tried and did not succeed (a query, a write, a bug) |
| 2 | usage: an argument, a file's content or a setting is wrong; nothing was tried |
| 3 | a service (Kafka, ClickHouse, the gateway) is not running or not reachable |
| 4 | not found: a file, a topic, a unit of a report |

The project's errors say their kind by their class (`ingest.errors`); the client
libraries' errors are recognized here, where they reach the shell, with a hint that
names the cause (an unreachable server is never told to run migrations).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Final

import click
from pydantic import ValidationError

from ingest.errors import InvalidInput, NotFound, ScantraceError, ServiceUnavailable
from ingest.kafka_settings import UNREACHABLE_HINT as KAFKA_HINT
from sinks.clickhouse_settings import UNREACHABLE_HINT as CLICKHOUSE_HINT

__all__ = ["EXIT_CODES", "FAILED", "NOT_FOUND", "OK", "UNAVAILABLE", "USAGE", "Failure", "describe"]

OK: Final = 0
FAILED: Final = 1
USAGE: Final = 2
UNAVAILABLE: Final = 3
NOT_FOUND: Final = 4
INTERRUPTED: Final = 130
EXIT_CODES: Final = {
    OK: "done",
    FAILED: "failed",
    USAGE: "usage: a bad argument, file or setting",
    UNAVAILABLE: "a service is not running or not reachable",
    NOT_FOUND: "not found",
}

DEBUG_HINT: Final = "run it again with `scantrace --debug ...` for the traceback"
# ClickHouse server error codes the shell explains (`SELECT errorCodeToName(n)`).
_CH_LOGIN: Final = frozenset({192, 193, 516})  # UNKNOWN_USER, WRONG_PASSWORD, AUTH_FAILED
_CH_DENIED: Final = frozenset({291, 497})  # DATABASE_ACCESS_DENIED, ACCESS_DENIED
_CH_NO_SCHEMA: Final = frozenset({60, 81})  # UNKNOWN_TABLE, UNKNOWN_DATABASE


@dataclass(frozen=True, slots=True)
class Failure:
    code: int
    message: str
    hint: str = ""

    def line(self) -> str:
        """The one line for standard error."""
        text = f"error: {self.message.rstrip('.')}"
        if self.hint and self.hint not in self.message:
            text += f"; hint: {self.hint}"
        return text


def one_line(text: object) -> str:
    """Text on one line, without a server's stack trace."""
    return " ".join(str(text).split("Stack trace:", 1)[0].split())


def describe(exc: BaseException, command: str = "scantrace") -> Failure:
    """The exit code, message and hint for `exc`, raised while running `command`."""
    for recognize in (_click, _ours, _clickhouse, _kafka, _http, _os):
        failure = recognize(exc, command)
        if failure is not None:
            return failure
    if isinstance(exc, KeyboardInterrupt):
        return Failure(INTERRUPTED, "interrupted")
    return Failure(FAILED, f"{type(exc).__name__}: {one_line(exc)}".rstrip(": "), DEBUG_HINT)


def _click(exc: BaseException, command: str) -> Failure | None:
    if isinstance(exc, click.UsageError):
        path = exc.ctx.command_path if exc.ctx is not None else command
        return Failure(exc.exit_code, one_line(exc.format_message()), f"see `{path} --help`")
    if isinstance(exc, click.FileError):
        return Failure(FAILED, one_line(exc.format_message()))
    if isinstance(exc, click.ClickException):
        return Failure(exc.exit_code, one_line(exc.format_message()))
    if isinstance(exc, click.Abort):
        return Failure(INTERRUPTED, "interrupted")
    return None


def _ours(exc: BaseException, command: str) -> Failure | None:
    if isinstance(exc, ValidationError):
        return Failure(USAGE, f"bad setting: {_settings_line(exc)}")
    if not isinstance(exc, ScantraceError):
        return None
    code = FAILED
    if isinstance(exc, InvalidInput):
        code = USAGE
    elif isinstance(exc, ServiceUnavailable):
        code = UNAVAILABLE
    elif isinstance(exc, NotFound):
        code = NOT_FOUND
    return Failure(code, one_line(exc), exc.hint)


def _settings_line(exc: ValidationError) -> str:
    """pydantic's report in one line, each field named by its environment variable when
    the model is a settings object read from the environment (SCANTRACE_..., nested with
    `__`; the local services' own prefix is SCANTRACE_SERVICES__)."""
    prefix = "SCANTRACE_SERVICES__" if exc.title == "ServicesSettings" else "SCANTRACE_"
    parts = []
    for e in exc.errors():
        message = e["msg"].removeprefix("Value error, ")
        loc = "__".join(str(p) for p in e["loc"]).upper()
        if loc and exc.title.endswith("Settings"):
            parts.append(f"{prefix}{loc}: {message}")
        else:
            parts.append(f"{loc.lower().replace('__', '.')}: {message}" if loc else message)
    return "; ".join(parts)


def _clickhouse(exc: BaseException, command: str) -> Failure | None:
    if not type(exc).__module__.startswith("clickhouse_driver"):
        return None
    from clickhouse_driver import errors

    from sinks.client import TLS_REFUSED

    text = one_line(exc)
    if isinstance(exc, errors.NetworkError) and TLS_REFUSED in text:
        return Failure(
            USAGE,
            f"ClickHouse's TLS certificate is not trusted: {text}",
            "check SCANTRACE_CLICKHOUSE__CA_FILE and the host name in SCANTRACE_CLICKHOUSE__URL",
        )
    if isinstance(exc, errors.NetworkError | errors.SocketTimeoutError | EOFError):
        text = text.removeprefix("Code: 210. ")
        return Failure(UNAVAILABLE, f"ClickHouse not reachable: {text}", CLICKHOUSE_HINT)
    code = getattr(exc, "code", None)
    if code in _CH_LOGIN:
        return Failure(
            USAGE,
            f"ClickHouse refused the login: {text}",
            "check the user and password in SCANTRACE_CLICKHOUSE__URL",
        )
    if code in _CH_DENIED:
        return Failure(
            FAILED,
            f"ClickHouse refused access: {text}",
            "this command's ClickHouse user lacks a grant (`scantrace db users` lists them)",
        )
    if code in _CH_NO_SCHEMA:
        return Failure(FAILED, f"ClickHouse: {text}", "create the schema: `scantrace db migrate`")
    return Failure(FAILED, f"ClickHouse: {text}")


def _kafka(exc: BaseException, command: str) -> Failure | None:
    module = type(exc).__module__
    if not (module.startswith("kafka") or module.startswith("aiokafka")):
        return None
    name = type(exc).__name__
    text = one_line(exc)
    if name == "KafkaConnectionError" or (
        name == "KafkaTimeoutError" and "bootstrap" in text.lower()
    ):
        return Failure(UNAVAILABLE, f"Kafka not reachable: {text}", KAFKA_HINT)
    if name == "KafkaTimeoutError":
        return Failure(UNAVAILABLE, f"Kafka did not answer in time: {text}", KAFKA_HINT)
    return Failure(FAILED, f"Kafka: {text}")


def _http(exc: BaseException, command: str) -> Failure | None:
    if not type(exc).__module__.startswith("aiohttp"):
        return None
    import aiohttp

    if isinstance(exc, aiohttp.InvalidURL):
        return Failure(USAGE, f"not a URL: {exc}", "give one like http://127.0.0.1:8080")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Failure(
            UNAVAILABLE,
            f"cannot connect to {exc.host}:{exc.port}: {one_line(exc.os_error)}",
            "is the gateway running (`scantrace run` starts one)? check --gateway",
        )
    return None


def _os(exc: BaseException, command: str) -> Failure | None:
    if not isinstance(exc, OSError):
        return None
    where = f": {exc.filename}" if exc.filename else ""
    if isinstance(exc, FileNotFoundError):
        return Failure(NOT_FOUND, f"no such file or folder{where}", "check the path")
    if isinstance(exc, PermissionError):
        return Failure(
            FAILED,
            f"permission denied{where}",
            "check the file's owner and mode, or choose another path",
        )
    if isinstance(exc, IsADirectoryError | NotADirectoryError):
        return Failure(USAGE, f"{exc.strerror}{where}", "give a file where a file is expected")
    if isinstance(exc, socket.gaierror):
        return Failure(USAGE, f"unknown host name: {one_line(exc)}", "check the URL's host")
    if isinstance(exc, ConnectionError | TimeoutError) or exc.errno in (
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
    ):
        return Failure(
            UNAVAILABLE,
            f"cannot connect: {one_line(exc)}",
            "is the service running? check its host and port",
        )
    if exc.errno == errno.ENOSPC:
        return Failure(FAILED, f"no space left on the device{where}", "free some space")
    return Failure(FAILED, f"{exc.strerror or one_line(exc)}{where}")
