"""Depth-2 jobs on the fake ClickHouse: a job finishes with its answer, a cancelled one
never looks finished (even when its query ends early without an error), a session's end
stops its jobs."""

from __future__ import annotations

import time

from tracing.rules import Rule
from tracing.runner import RunnerPool
from tracing.testing import T0, FakeClickHouse
from tracing.workbench.jobs import Job, Jobs


def wait(job: Job) -> None:
    for _ in range(500):
        if job.progress()["done"]:
            return
        time.sleep(0.01)
    raise AssertionError(job.progress())


def new_job(n: int = 1) -> Job:
    return Job(f"{n}", "CASE", T0 - 3_600_000, T0 + 3_600_000, Rule(depth=2))


def test_a_job_runs_to_its_answer_and_the_same_question_is_not_asked_twice() -> None:
    db = FakeClickHouse(contacts=3)
    jobs = Jobs(RunnerPool(db.runner, size=1), max_jobs=1, max_rows=100)
    session: dict[str, Job] = {}
    job = jobs.start(session, new_job())
    assert jobs.start(session, new_job(2)) is job
    wait(job)
    assert job.state == "done" and job.result is not None
    assert [c.degree for c in job.result.contacts] == [1, 1, 1, 2, 2, 2]
    assert job.progress()["f1"] == 3 and job.progress()["rows"] == 6
    jobs.close()


def test_too_many_rows_fail_the_job_with_the_reason() -> None:
    db = FakeClickHouse(contacts=30)
    jobs = Jobs(RunnerPool(db.runner, size=1), max_jobs=1, max_rows=10)
    job = jobs.start({}, new_job())
    wait(job)
    assert job.state == "failed" and "more than 10" in job.error and job.result is None
    jobs.close()


def test_a_cancelled_job_is_never_done() -> None:
    db = FakeClickHouse(contacts=3, delay_s=0.2)  # each query takes a while
    jobs = Jobs(RunnerPool(db.runner, size=1), max_jobs=1, max_rows=100)
    job = jobs.start({}, new_job())
    for _ in range(500):  # the last query (F2) has started
        if job.stage == "f2":
            break
        time.sleep(0.01)
    assert job.stage == "f2"
    jobs.cancel(job)  # the fake's query then ends normally: only the flag can tell
    wait(job)
    assert job.state == "cancelled" and job.result is None
    jobs.close()


def test_a_sessions_end_stops_its_jobs() -> None:
    db = FakeClickHouse(contacts=3, delay_s=0.2)
    jobs = Jobs(RunnerPool(db.runner, size=1), max_jobs=1, max_rows=100)
    session: dict[str, Job] = {}
    job = jobs.start(session, new_job())
    queued = jobs.start(session, Job("2", "OTHER", T0, T0 + 1, Rule(depth=2)))
    jobs.drop(session)
    assert session == {}
    wait(job)
    wait(queued)
    assert job.state == queued.state == "cancelled"
    jobs.close()
