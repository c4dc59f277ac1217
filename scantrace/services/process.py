"""Start, watch and stop the background server processes, by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ingest.errors import TerminalError

# Children started by this process, kept so they are reaped (no zombies) and not flagged
# by Popen's destructor as "still running" when the server is meant to outlive us.
_children: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(TerminalError):
    """A service failed to start or answer; the message carries its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_run(n: int) -> int:
    """The first of `n` consecutive free loopback ports (`scantrace run` counts the ports
    of its gateways and metrics endpoints up from the first)."""
    for _ in range(200):
        first = free_port()
        held: list[socket.socket] = []
        try:
            for port in range(first, first + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise ServiceError(f"no {n} consecutive free ports on 127.0.0.1")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def spawn(
    argv: Sequence[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> int:
    """Start `argv` in its own session (so `stop` can signal the whole group), output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None  # reaps our own exited child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = _proc_state(pid)
    return state not in ("Z", "X")


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def stop(pid: int, marker: str, timeout: float = 20.0) -> None:
    """SIGTERM the process group of `pid`, then SIGKILL after `timeout`.

    Unless this process started it, `marker` must appear in its command line: a PID
    recorded long ago may belong to somebody else's process by now, and that one is
    left alone.
    """
    if not alive(pid):
        return
    if pid not in _children and marker not in cmdline(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def log_tail(log: Path, lines: int = 30) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool], *, pid: int, log: Path, what: str, timeout: float
) -> None:
    """Poll `check` until true; fail fast with the log tail if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise ServiceError(f"{what} exited during start-up. Log tail ({log}):\n{log_tail(log)}")
        try:
            if check():
                return
        except Exception:  # noqa: S110 - "not ready yet" may be any error at all
            pass
        time.sleep(0.2)
    raise ServiceError(f"{what} not ready after {timeout:.0f}s. Log tail ({log}):\n{log_tail(log)}")
