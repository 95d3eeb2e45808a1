"""The rarer interleavings of crashes, stops and clears, each on a real Airflow with ``dag.test()``.

Each test is a scenario a user can hit, and asserts what they would check: how many jobs the
service created, which were cancelled, and how the task ended.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from airflow.sdk import DAG

from resumable.attempt import operator_identity
from resumable.job import JobState
from resumable.state import SqlBackend, TaskScope
from resumable.state.sql import state_table
from resumable.testing.airflow import clear_and_rerun, run_dag, task_states
from resumable.testing.fake import FakeJobOperator, FakeJobService
from resumable.tokens import make_token


class StubProbe:
    """What Airflow answers about the task instance's state (the rest is the real Airflow)."""

    def __init__(self, state: str | None) -> None:
        self.state = state

    def state_of(self, context) -> str | None:
        return self.state


def sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("idempotent", [True, False], ids=["token", "discovery"])
def test_clear_after_a_window_crash_with_no_retries_reattaches_to_the_one_job(
    make_dag, fault, idempotent
) -> None:
    """The attempt dies after the service created the job and before its id was written; with
    retries=0 the task fails. A person clears it: the job still runs, so the clear reattaches to it
    (its own token first) instead of starting a second copy beside it."""
    fault("after_submit")
    dag, svc = make_dag(FakeJobService(idempotent=idempotent, polls=4), retries=0)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"}
    assert svc.total_submissions == 1
    os.environ.pop("RESUMABLE_FAULT_POINT")

    dr = clear_and_rerun(dag, dr)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 1, "a clear must not start a second copy of a running job"
    assert svc.cancelled == []


def test_clear_after_a_window_crash_reruns_a_job_that_already_finished(make_dag, fault) -> None:
    fault("after_submit")
    dag, svc = make_dag(FakeJobService(polls=1), retries=0)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"}
    os.environ.pop("RESUMABLE_FAULT_POINT")
    svc.status(svc.created[0])
    svc.status(svc.created[0])  # the first job finished while nobody watched
    assert svc.jobs[svc.created[0]].state is JobState.SUCCEEDED

    dr = clear_and_rerun(dag, dr)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 2, "a clear of a finished job runs it again"


@pytest.mark.parametrize(("ti_state", "cancelled"), [("failed", True), ("running", False)])
def test_a_stop_while_the_submit_call_is_in_flight_is_applied_once_the_job_id_arrives(
    make_dag, ti_state, cancelled
) -> None:
    """A person marks the task failed while the submit answer is on its way (the job exists, its id
    is not known yet): the job is cancelled as soon as the id arrives. An eviction keeps it."""
    dag, svc = make_dag(FakeJobService(polls=1000), retries=0)
    dag.task_dict["job"].task_state_probe = StubProbe(ti_state)
    svc.when_submit_called(1, sigterm)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"}
    assert svc.total_submissions == 1
    assert svc.cancelled == ([svc.created[0]] if cancelled else [])
    assert svc.calls["status"] == 0, "a stopped attempt does not go on to poll"


def test_a_stop_that_comes_before_execute_begins_submits_nothing(make_dag) -> None:
    """Airflow installs its SIGTERM handler before it renders templates and calls ``execute``: a
    person's stop in that window reaches ``on_kill`` first. The attempt starts stopped and submits
    nothing (Airflow SIGKILLs it a few seconds later: a job submitted now would run on unwatched)."""
    dag, svc = make_dag(FakeJobService(polls=1000), retries=0)
    dag.task_dict["job"].task_state_probe = StubProbe("failed")
    dag.task_dict["job"].pre_execute = lambda context: context["task"].on_kill()
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"}
    assert svc.total_submissions == 0, "a stop before execute() began must not be forgotten"


def test_execution_timeout_during_the_submit_call_cancels_the_job(make_dag) -> None:
    """execution_timeout fires while the submit answer is slow (the job already exists): the owner's
    budget is spent, so the job is found by its token and cancelled, not left running unwatched."""
    dag, svc = make_dag(FakeJobService(polls=1000), retries=0, execution_timeout=timedelta(seconds=1))
    svc.when_submit_called(1, lambda: time.sleep(5))
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"}
    assert svc.total_submissions == 1
    assert svc.cancelled == [svc.created[0]]


def test_a_cancel_that_takes_many_polls_is_waited_for_before_the_retry_submits(make_dag) -> None:
    """execution_timeout cancels the job; the cancel takes several polls (TERMINATING, CANCELLING).
    The retry waits for the job to stop before it submits the next one: never two at once."""
    svc = FakeJobService(polls=10**6, cancel_polls=5)
    dag, svc = make_dag(svc, retries=1, execution_timeout=timedelta(seconds=2))
    first_active_when_second_created: list[bool] = []
    original_submit = svc.submit

    def submit(token: str, name: str) -> str:
        if svc.created:
            first_active_when_second_created.append(svc.jobs[svc.created[0]].state.is_active)
            svc.polls = 2
        return original_submit(token, name)

    svc.submit = submit  # type: ignore[method-assign]
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.cancelled == [svc.created[0]]
    assert svc.total_submissions == 2
    assert first_active_when_second_created == [False]


def test_a_clear_of_a_running_task_whose_cancel_takes_many_polls_reruns(make_dag) -> None:
    dag, svc = make_dag(FakeJobService(polls=6, cancel_polls=4), retries=1, on_prior_failure="fail")
    dag.task_dict["job"].task_state_probe = StubProbe("restarting")
    svc.when_status_called(2, sigterm)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.cancelled == [svc.created[0]]
    assert svc.total_submissions == 2
    assert svc.jobs[svc.created[0]].state is JobState.CANCELLED


class LimitedFakeJobOperator(FakeJobOperator):
    """A fake operator with a wait limit, like the EMR operators' ``waiter_max_attempts`` budget."""

    def wait_limit(self) -> float | None:
        return 0.05


def test_a_job_that_finished_during_the_last_sleep_is_not_cancelled_at_the_wait_limit(airflow_db) -> None:
    svc = FakeJobService(name="wait-limit-race", polls=1)
    with DAG("wait_limit_race", schedule=None, start_date=datetime(2025, 1, 1)) as dag:
        LimitedFakeJobOperator(task_id="job", service=svc.name, poll_interval=0.2, retries=0)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.cancelled == []


def test_a_job_still_running_at_the_wait_limit_is_cancelled_and_waited_for_by_the_retry(airflow_db) -> None:
    svc = FakeJobService(name="wait-limit-cancel", polls=10**6, cancel_polls=3)
    with DAG("wait_limit_cancel", schedule=None, start_date=datetime(2025, 1, 1)) as dag:
        LimitedFakeJobOperator(
            task_id="job", service=svc.name, poll_interval=0.02, retries=1, retry_delay=timedelta(0)
        )
    dr = run_dag(dag)
    assert svc.cancelled[0] == svc.created[0]
    assert svc.jobs[svc.created[0]].state is JobState.CANCELLED
    assert svc.total_submissions == 2, "the retry resubmits once the cancelled job has stopped"
    assert task_states(dr) == {"job": "failed"}  # the second job meets the same limit


def test_lowering_retries_before_a_clear_still_reruns(make_dag) -> None:
    """retries=2 gives max_tries 2 at try 1; retries lowered to 1 and cleared: 1 + 1 = 2 again.
    The clear must still run the job again."""
    dag, svc = make_dag(FakeJobService(polls=1), retries=2)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    dag.task_dict["job"].retries = 1
    dr = clear_and_rerun(dag, dr, run_on_latest_version=True)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 2


def test_a_dag_run_deleted_and_created_again_with_the_same_run_id_runs_its_job(
    make_dag, monkeypatch, tmp_path
) -> None:
    """On the sql backend the old run's record outlives the deleted DAG run: it is not this run's."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "sql")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", url)
    dag, svc = make_dag(FakeJobService(polls=1))
    # dag.test starts a DAG run at its logical date: one after the first run's writes, as a run
    # re-triggered later starts after them
    first = datetime.now(timezone.utc) + timedelta(hours=1)
    dr = run_dag(dag, logical_date=first)
    assert task_states(dr) == {"job": "success"}
    run_id = dr.run_id
    # dag.test deletes the old DAG run and creates one with the same run_id (as a re-trigger or a
    # backfill of the same date does)
    dr = run_dag(dag, logical_date=first)
    assert dr.run_id == run_id
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 2, "the new DAG run must run its own job"
    found = SqlBackend(url).get(TaskScope(dag.dag_id, run_id, "job"), "resumable.job")
    assert found is not None and found.value["handle"]["job_id"] == svc.created[1]
    assert len(svc.submissions) == 2, "a new token: the service must not hand back the old run's job"


def test_an_operator_defined_in_a_dag_file_keeps_its_identity_across_mount_points() -> None:
    first = type("MyOperator", (), {"__module__": "unusual_prefix_0a1b2c_etl_dag"})
    moved = type("MyOperator", (), {"__module__": "unusual_prefix_ffee99_etl_dag"})
    assert operator_identity(first) == operator_identity(moved) == "etl_dag.MyOperator"


def test_two_deployments_get_different_tokens_for_the_same_run(monkeypatch) -> None:
    from resumable.tokens import deployment_salt

    args = ("etl", "scheduled__2026-01-01", "job", -1, 1, 1, "2026-01-01")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__DEPLOYMENT_ID", "staging")
    staging = make_token(*args, salt=deployment_salt())
    monkeypatch.setenv("AIRFLOW__RESUMABLE__DEPLOYMENT_ID", "production")
    production = make_token(*args, salt=deployment_salt())
    assert staging != production
    assert make_token(*args, salt="production") == production, "the same deployment: the same token"


def test_a_stop_after_the_job_ended_cancels_nothing_and_keeps_the_outcome(
    make_dag, monkeypatch, tmp_path
) -> None:
    """SIGTERM reaches the task after its job succeeded, while it reports (a person marked it, the
    lab shuts down): nothing is cancelled and the recorded outcome is not rewritten."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "sql")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", url)
    dag, svc = make_dag(FakeJobService(polls=1), retries=0)
    op = dag.task_dict["job"]
    op.task_state_probe = StubProbe("success")
    original = op.job_result

    def result_then_sigterm(context, handle, status):
        sigterm()
        return original(context, handle, status)

    op.job_result = result_then_sigterm
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.cancelled == []
    found = SqlBackend(url).get(TaskScope(dag.dag_id, dr.run_id, "job"), "resumable.job")
    assert found is not None
    assert (found.value["phase"], found.value["stop_reason"]) == ("done", None)


class StaleNextMethod(FakeJobOperator):
    """Resumes where Airflow's stale ``next_method`` points once told to (``stale``): Airflow keeps
    ``next_method`` and ``next_kwargs`` when a person clears a task that had resumed from a deferral,
    so the cleared task's next try starts in ``execute_complete``, not in ``execute``."""

    stale = False

    def execute(self, context):
        if StaleNextMethod.stale:
            return self.execute_complete(context, event={"status": "success", "job_id": "old"})
        return super().execute(context)


def test_a_cleared_task_handed_a_stale_deferral_starts_as_execute_does(make_dag) -> None:
    """The next try of a task cleared after it resumed from a deferral gets the old deferral's method and
    kwargs; the record it finds is of the earlier lineage. It must start as ``execute`` does (a clear of a
    finished task reruns the job), not stop as a replaced attempt and fail the person's clear."""
    svc = FakeJobService(polls=1)
    FakeJobService._registry[svc.name] = svc
    with DAG("stale_next_method", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
        StaleNextMethod(task_id="job", service=svc.name, retries=0, poll_interval=0.01)
    StaleNextMethod.stale = False
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 1
    StaleNextMethod.stale = True
    try:
        dr = clear_and_rerun(dag, dr)
    finally:
        StaleNextMethod.stale = False
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 2, "a clear of a finished task runs the job again"


def test_a_replaced_attempt_never_repairs_the_job_its_successor_owns(make_dag, monkeypatch, tmp_path) -> None:
    """Try 1's job fails while it waits, with ``repair_run``-like repairs; just as try 1 decides to
    repair, a newer try takes the job over (try 1 is a zombie that thawed). Repairing is the owner's,
    once: a replaced attempt that repaired first made the owner's own repair fail (Databricks answers
    400 to a second repair of a run being repaired), and the owner's try with it."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "sql")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", url)
    dag, svc = make_dag(FakeJobService(polls=2, outcomes=[JobState.FAILED]), retries=0)

    def a_newer_try_takes_the_job_over() -> None:
        backend = SqlBackend(url)
        with backend.engine.connect() as conn:
            (run_id,) = conn.execute(sa.select(state_table.c.run_id)).scalars().all()
        scope = TaskScope(dag.dag_id, run_id, "job")
        found = backend.get(scope, "resumable.job")
        assert found is not None
        backend.put(scope, "resumable.job", {**found.value, "owner": 2}, found.version)

    def repair_once_as_a_newer_try_takes_over(context, handle, status) -> bool:
        a_newer_try_takes_the_job_over()
        return svc.jobs[handle.job_id].repairs == 0

    dag.task_dict["job"].repair_in_attempt = repair_once_as_a_newer_try_takes_over
    dr = run_dag(dag)
    assert svc.total_submissions == 1
    assert svc.repaired == [], "a replaced attempt repaired the job its successor owns"
    assert svc.cancelled == [], "a replaced attempt cancels nothing"
    assert svc.jobs[svc.created[0]].state is JobState.FAILED
    assert task_states(dr) == {"job": "failed"}
