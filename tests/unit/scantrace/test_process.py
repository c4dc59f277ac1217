from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from scantrace.services.process import ServiceError, alive, spawn, stop, wait_until


def test_a_service_that_dies_reports_its_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    pid = spawn(
        [sys.executable, "-c", "print('port already in use: boom'); raise SystemExit(3)"], log
    )
    with pytest.raises(ServiceError, match="port already in use: boom"):
        wait_until(lambda: False, pid=pid, log=log, what="svc", timeout=20)


def test_stop_kills_the_process_group_and_spares_a_foreign_pid(tmp_path: Path) -> None:
    # Started by another process (as after a restart of the CLI): only the marker vouches.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "marker-xyz"], start_new_session=True
    )
    pid = proc.pid
    time.sleep(0.5)
    stop(pid, marker="not-this-one")
    assert alive(pid), "a PID whose command line lacks the marker is left alone"
    stop(pid, marker="marker-xyz")
    assert proc.wait(timeout=10) is not None
