"""Depth-2 traces as jobs: started by a page, run in a worker thread, watched from a page
that shows their progress, cancellable, their answer kept while the session lives (and
paged from memory), so that no request waits on one.

Cancelling sets the job's flag (checked between queries, between blocks of rows and once
more at the end, so that a query cut short never looks like a complete answer) and asks
ClickHouse to stop the query running on the job's connection (`ClickHouseRunner.cancel`:
a Cancel packet on that connection; `KILL QUERY` would need the tracer's user to read
`system.processes`, everyone's queries included). A job runs under the workbench's job
limits, larger than a request's: nobody waits on it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final, Literal

from ingest.errors import TerminalError, loggable
from tracing.models import Contact, TraceResult
from tracing.rules import Rule
from tracing.runner import QueryRunner, Row, RunnerPool
from tracing.sql import TraceTables
from tracing.trace import error_text, stream_trace

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
Stage = Literal["queued", "f1", "f2", "reading", "done"]
FINISHED: Final = frozenset({"done", "failed", "cancelled"})
# Jobs a session may keep (finished ones are dropped first when a new one needs room).
MAX_JOBS_A_SESSION: Final = 5


class JobCancelled(TerminalError):
    """The job's flag was set: it stops at the next query or block."""


class JobTooLarge(TerminalError):
    """More contacts than a job may keep."""


@dataclass(eq=False)
class Job:
    job_id: str
    person_id: str
    from_ms: int
    to_ms: int
    rule: Rule
    state: JobState = "queued"
    stage: Stage = "queued"
    started: float = 0.0
    finished: float = 0.0
    f1: int = 0
    rows: int = 0
    error: str = ""
    result: TraceResult | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    runner: QueryRunner | None = None  # the connection while it runs

    @property
    def question(self) -> tuple[str, int, int, Rule]:
        return (self.person_id, self.from_ms, self.to_ms, self.rule)

    def elapsed_s(self) -> float:
        if not self.started:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    def progress(self) -> dict[str, object]:
        """What the progress page and its poll show (no person data)."""
        return {
            "state": self.state,
            "stage": self.stage,
            "f1": self.f1,
            "rows": self.rows,
            "elapsed_s": round(self.elapsed_s(), 1),
            "done": self.state in FINISHED,
        }


class _Watched:
    """The job's runner: every query first checks the cancel flag and moves the stage."""

    def __init__(self, runner: QueryRunner, job: Job) -> None:
        self.runner = runner
        self.job = job

    def _check(self) -> None:
        if self.job.cancel.is_set():
            raise JobCancelled

    def query(self, sql: str, params: Mapping[str, object]) -> list[Row]:
        self._check()
        self.job.stage = "f1"
        return self.runner.query(sql, params)

    def iter_query(self, sql: str, params: Mapping[str, object]) -> Iterator[Row]:
        self._check()
        self.job.stage = "f2"
        return self.runner.iter_query(sql, params)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        self._check()
        self.runner.insert(table, columns, rows)

    def close(self) -> None:
        self.runner.close()

    def sibling(self) -> QueryRunner | None:
        return self.runner.sibling()


class Jobs:
    """The running and finished jobs of every session (by job id)."""

    def __init__(
        self,
        pool: RunnerPool,
        *,
        max_jobs: int,
        max_rows: int,
        tables: TraceTables | None = None,
    ) -> None:
        self.pool = pool
        self.max_rows = max_rows
        self.tables = tables or TraceTables()
        self._executor = ThreadPoolExecutor(max_workers=max_jobs, thread_name_prefix="wbjob")

    def start(self, jobs: dict[str, Job], job: Job) -> Job:
        """`job` in the session's `jobs`, or the same question's job already there (unless
        it failed or was cancelled)."""
        for j in jobs.values():
            if j.question == job.question and j.state not in ("failed", "cancelled"):
                return j
        finished = [k for k, j in jobs.items() if j.state in FINISHED]
        while len(jobs) >= MAX_JOBS_A_SESSION and finished:
            jobs.pop(finished.pop(0))
        if len(jobs) >= MAX_JOBS_A_SESSION:
            raise JobTooLarge(f"at most {MAX_JOBS_A_SESSION} jobs running a session")
        jobs[job.job_id] = job
        self._executor.submit(self._run, job)
        return job

    def _run(self, job: Job) -> None:
        if job.cancel.is_set():
            job.state = "cancelled"
            return
        job.state, job.started = "running", time.monotonic()
        try:
            with self.pool.runner() as runner:
                job.runner = runner
                try:
                    job.result = self._trace(_Watched(runner, job), job)
                finally:
                    job.runner = None
            job.state = "done"
        except Exception as exc:
            if job.cancel.is_set():
                job.state = "cancelled"
            elif isinstance(exc, JobTooLarge):
                job.state, job.error = "failed", str(exc)
            else:
                job.state, job.error = "failed", error_text(exc)
                log.warning("depth-2 job failed: %s", job.error)
        finally:
            job.finished = time.monotonic()
            job.stage = "done"

    def _trace(self, runner: QueryRunner, job: Job) -> TraceResult:
        s = stream_trace(runner, job.person_id, job.from_ms, job.to_ms, job.rule, self.tables)
        if job.cancel.is_set():
            raise JobCancelled
        job.stage = "reading"
        contacts: list[Contact] = []
        for c in s.contacts:
            if len(contacts) % 1024 == 0 and job.cancel.is_set():
                raise JobCancelled
            if len(contacts) >= self.max_rows:
                raise JobTooLarge(
                    f"more than {self.max_rows} contacts: ask the API for CSV or use the CLI"
                )
            contacts.append(c)
            job.rows = len(contacts)
            if c.degree == 1:
                job.f1 += 1
        job.rows = len(contacts)
        if job.cancel.is_set():  # a cancelled query may end as if it had no more rows
            raise JobCancelled
        return TraceResult(s.case, s.period_from, s.period_to, s.rule, s.visits, contacts)

    def cancel(self, job: Job) -> None:
        """Set the flag and ask the server to stop the job's query."""
        job.cancel.set()
        runner = job.runner
        stop = getattr(runner, "cancel", None)
        if stop is None:
            return
        try:
            stop()
        except Exception as exc:  # the flag stops it at its next block all the same
            log.warning("cancelling a job's query failed: %s", loggable(exc))

    def drop(self, jobs: dict[str, Job]) -> None:
        """A session ended: its jobs stop and their answers go."""
        running = [j for j in jobs.values() if j.state not in FINISHED]
        jobs.clear()
        for j in running:
            self.cancel(j)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
