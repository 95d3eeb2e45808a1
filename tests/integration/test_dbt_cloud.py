"""The resumable dbt Cloud operator on a real Airflow (``dag.test()``), through the dbt-cloud provider's
real ``DbtCloudHook`` against the loopback dbt Cloud emulator (``resumable.testing.dbt_cloud``).

What a user checks: how many runs dbt Cloud saw, which run the task reported, the task's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

pytest.importorskip("airflow.providers.dbt.cloud", reason="the dbt-cloud provider is not installed")

#: Every row on Airflow 3.3; on the oldest version those marked core_row (see the Makefile).
pytestmark = pytest.mark.oldest_airflow

from resumable.job import JobHandle, JobState  # noqa: E402
from resumable.operators.dbt_cloud import (  # noqa: E402
    CAUSE_LIMIT,
    ResumableDbtCloudRunJobOperator,
    cause_with_token,
)
from resumable.testing.airflow import clear_and_rerun, run_dag, task_states  # noqa: E402
from resumable.testing.dbt_cloud import (  # noqa: E402
    CANCELLED,
    ERROR,
    SUCCESS,
    DbtCloudEmulator,
    RunScript,
)
from tests.helpers import (  # noqa: E402
    EVERY_TRIGGER_STOP,
    PERSONS_STOP,
    new_dag,
    on_the_retrys_first_look,
    raised_by,
    stop_deferred_task,
)

#: The hook's own retries, fast: four tries, no waiting (the emulator answers at once).
FAST_HOOK = {"retry_limit": 4, "retry_delay": 0.0}


@pytest.fixture
def dbt(airflow_db: str) -> Iterator[DbtCloudEmulator]:
    """The emulator as ``dbt_cloud_default``, 40 emulated seconds a second; runs take 4 of them."""
    emulator = DbtCloudEmulator(speed=40.0, default_script=RunScript(duration=4.0, queued=1.0))
    with emulator as emu, emu.use_as(), emu.patch_hook():
        yield emu


def make(dbt: DbtCloudEmulator, **kwargs: Any) -> tuple[Any, ResumableDbtCloudRunJobOperator]:
    kwargs.setdefault("job_id", dbt.create_job())
    kwargs.setdefault("retries", 2)
    kwargs.setdefault("retry_delay", timedelta(0))
    kwargs.setdefault("check_interval", 0.02)
    kwargs.setdefault("hook_params", FAST_HOOK)
    with new_dag("dbt") as dag:
        op = ResumableDbtCloudRunJobOperator(task_id="job", **kwargs)
    return dag, op


def xcom(dag_run: Any, key: str) -> Any:
    (ti,) = dag_run.get_task_instances()
    return ti.xcom_pull(task_ids="job", key=key)


@pytest.mark.core_row
def test_fresh_run_triggers_once_and_keeps_the_providers_xcoms(dbt) -> None:
    dag, op = make(dbt, trigger_reason="nightly build")
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    (run_id,) = dbt.runs
    assert xcom(dr, "return_value") == run_id
    assert xcom(dr, "job_run_id") == run_id
    assert xcom(dr, "job_run_url") == dbt.run(run_id)["href"]
    assert xcom(dr, "resumable_job_url") == dbt.run(run_id)["href"], "our Job page link"
    cause = dbt.run(run_id)["trigger"]["cause"]
    assert cause.startswith("nightly build [rsm-") and cause.endswith("]")


@pytest.mark.core_row
def test_crash_between_trigger_and_record_finds_the_run(dbt, fault) -> None:
    fault("after_submit")
    dag, _ = make(dbt)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(dbt.runs) == 1, "the retry must find the run by its cause, not trigger another"


@pytest.mark.core_row
def test_crash_while_polling_reattaches(dbt, fault) -> None:
    fault("while_polling")
    dag, _ = make(dbt)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(dbt.runs) == 1


def test_prior_success_triggers_nothing(dbt, fault) -> None:
    dbt.script_next(RunScript(duration=0.0, queued=0.0))
    fault("while_polling")  # the first poll sees the run done, then the worker dies
    dag, _ = make(dbt)
    assert task_states(run_dag(dag)) == {"job": "success"}
    assert len(dbt.runs) == 1


def test_clear_after_success_triggers_again(dbt) -> None:
    dag, _ = make(dbt)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    dr = clear_and_rerun(dag, dr)
    assert task_states(dr) == {"job": "success"}
    assert len(dbt.runs) == 2
    causes = {dbt.run(run_id)["trigger"]["cause"] for run_id in dbt.runs}
    assert len(causes) == 2, "a clear's run carries a token of its own"


@pytest.mark.parametrize(
    ("on_prior_failure", "final", "runs"), [("resubmit", "success", 2), ("fail", "failed", 1)]
)
def test_prior_failure_follows_on_prior_failure(dbt, on_prior_failure, final, runs) -> None:
    dbt.script_next(RunScript(outcome="error", duration=1.0))
    dag, _ = make(dbt, on_prior_failure=on_prior_failure)
    assert task_states(run_dag(dag)) == {"job": final}
    assert len(dbt.runs) == runs
    assert dbt.status_of(dbt.runs[0]) == ERROR


def test_throttled_and_failing_status_reads_are_retried(dbt, fault) -> None:
    """The retry's first looks at the run are answered 429 three times, then 503 twice (past the hook's
    own four tries): the mixin retries them; nothing is triggered again or cancelled."""
    fault("while_polling")
    dbt.script_next(RunScript(duration=40.0))
    dag, _ = make(dbt, hook_params={"retry_limit": 1, "retry_delay": 0.0}, status_retry_attempts=8)

    def refuse() -> None:
        dbt.fail_next(3, status=429, path="runs/{id}/")
        dbt.fail_next(2, status=503, path="runs/{id}/")

    with on_the_retrys_first_look(ResumableDbtCloudRunJobOperator, refuse):
        dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(dbt.runs) == 1 and dbt.cancels == []
    assert dbt.calls["GET runs/{id}/"] >= 6


def test_an_unknown_run_is_not_found_and_a_cancel_stops_a_run(dbt) -> None:
    dbt.script_next(RunScript(duration=float("inf")))
    _, op = make(dbt)
    handle = op.submit_job({}, "rsm-test-token")
    assert op.get_job_status(JobHandle(op.job_system, "999999")).state is JobState.NOT_FOUND
    assert op.get_job_status(handle).state.is_active
    op.cancel_job(handle)
    assert dbt.cancels == [int(handle.job_id)]
    dbt.advance(5)
    assert op.get_job_status(handle).state is JobState.CANCELLED


def test_a_cancel_whose_answer_never_comes_fails_after_its_timeout_and_cancels_the_run(
    dbt, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stalled control plane holds the cancel's answer: with no ``timeout_seconds`` in
    ``hook_params`` the request gives up after ``CANCEL_TIMEOUT`` (the hook's default would wait
    without end, holding a trigger or a ``clear --cancel-job``) with a transient error, and the cancel
    dbt Cloud took still stops the run."""
    import requests

    from resumable.operators import dbt_cloud as dbt_operators

    monkeypatch.setattr(dbt_operators, "CANCEL_TIMEOUT", 2)  # 30 s otherwise; the hook's retries: 4
    dbt.script_next(RunScript(duration=float("inf")))
    _, op = make(dbt)
    handle = op.submit_job({}, "rsm-test-token")
    dbt.cancel_delay = 3600.0
    error = raised_by(lambda: op.cancel_job(handle), 120)
    assert isinstance(error, requests.exceptions.Timeout) and dbt_operators.is_transient(error)
    assert dbt.cancels[0] == int(handle.job_id)
    dbt.cancel_delay = 0.0
    dbt.advance(5)
    assert op.get_job_status(handle).state is JobState.CANCELLED


def test_discovery_reads_page_after_page_back_to_the_dag_runs_start(dbt) -> None:
    """The run with the token is older than the newest 100 runs of the job: discovery reads the next
    page to find it. With a DAG run that started after every run (the horizon), it reads one page."""
    job = dbt.create_job()
    _, op = make(dbt, job_id=job)
    mine = op.submit_job({}, "rsm-mine")
    dbt.script_next(*[RunScript(duration=0.0, queued=0.0)] * 150)
    for n in range(150):
        op.hook.trigger_job_run(job_id=job, cause=f"other {n}")
    dag_run = type("DagRun", (), {"run_after": datetime.now(timezone.utc) - timedelta(days=1)})()
    found = op.find_job({"dag_run": dag_run}, "rsm-mine")
    assert found is not None and found.job_id == mine.job_id
    assert dbt.calls["GET runs/"] == 2
    later = type("DagRun", (), {"run_after": datetime.now(timezone.utc) + timedelta(days=1)})()
    assert op.find_job({"dag_run": later}, "rsm-mine") is None  # older than the horizon: not read
    assert dbt.calls["GET runs/"] == 3


def test_two_runs_with_one_token_keep_the_oldest_and_cancel_the_other(dbt) -> None:
    dbt.script_next(*[RunScript(duration=float("inf"))] * 2)
    _, op = make(dbt)
    first = op.submit_job({}, "rsm-twice")
    second = op.submit_job({}, "rsm-twice")
    found = op.find_job({}, "rsm-twice")
    assert found is not None and found.job_id == first.job_id
    assert dbt.cancels == [int(second.job_id)]


def test_a_long_trigger_reason_is_shortened_and_the_token_kept_whole() -> None:
    token = "rsm-" + "a" * 40 + "-3-1"
    cause = cause_with_token("x" * 400, token)
    assert len(cause) == CAUSE_LIMIT and cause.endswith(f" [{token}]")


def test_reuse_existing_run_takes_a_run_in_progress(dbt) -> None:
    """As the provider does: a run of the job already in progress (triggered elsewhere) is taken, and the
    task waits for it; nothing is triggered. The run lasts an hour: it ends once the task has looked at
    it, whatever the machine's load."""
    import threading

    from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudHook

    dbt.script_next(RunScript(duration=3600.0))
    dag, op = make(dbt, reuse_existing_run=True)
    DbtCloudHook().trigger_job_run(job_id=op.job_id, cause="triggered in dbt Cloud's UI")
    ends = threading.Timer(0.0, lambda: None)

    def end_once_watched() -> None:
        nonlocal ends
        if dbt.polls:  # the task reads the run's status
            dbt.advance(3600.0)
        else:
            ends = threading.Timer(0.05, end_once_watched)
            ends.start()

    end_once_watched()
    try:
        dr = run_dag(dag)
    finally:
        ends.cancel()
    assert task_states(dr) == {"job": "success"}
    assert len(dbt.runs) == 1
    assert xcom(dr, "return_value") == dbt.runs[0]


def test_retry_from_failure_is_refused_with_what_to_do_instead(dbt) -> None:
    with pytest.raises(ValueError, match="retry_from_failure=True is not supported.*on_prior_failure"):
        make(dbt, retry_from_failure=True)


def test_the_timeout_fails_the_task_and_leaves_the_run_running(dbt) -> None:
    """The provider's ``timeout`` bounds the wait, not the run: the task fails, the run goes on."""
    dbt.script_next(RunScript(duration=float("inf")))
    dag, _ = make(dbt, timeout=1, retries=0)
    assert task_states(run_dag(dag)) == {"job": "failed"}
    assert dbt.cancels == []
    assert dbt.active_runs() == dbt.runs


@pytest.mark.core_row
def test_deferrable_waits_in_the_providers_trigger(dbt) -> None:
    dbt.script_next(RunScript(duration=100.0, queued=0.0))
    dag, _ = make(dbt, deferrable=True, check_interval=1)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(dbt.runs) == 1 and dbt.status_of(dbt.runs[0]) == SUCCESS
    assert len(dbt.polls[dbt.runs[0]]) >= 2, "the trigger polled the run"


@pytest.mark.core_row
def test_deferrable_records_the_run_before_deferring(dbt, fault) -> None:
    dbt.script_next(RunScript(duration=400.0, queued=0.0))
    fault("after_submit")
    dag, _ = make(dbt, deferrable=True, check_interval=1)
    assert task_states(run_dag(dag)) == {"job": "success"}
    assert len(dbt.runs) == 1


@EVERY_TRIGGER_STOP
@PERSONS_STOP
def test_a_deferred_runs_trigger_cancels_it_only_on_a_persons_stop(
    dbt, monkeypatch, before_3_3, state, cancelled
) -> None:
    dbt.script_next(RunScript(duration=float("inf"), queued=0.0))
    _, op = make(dbt)
    handle = op.submit_job({}, "rsm-deferred")
    path, kwargs = op.job_trigger({}, handle).serialize()
    assert path == "resumable.operators.dbt_cloud.ResumableDbtCloudRunJobTrigger"
    stop_deferred_task(path, kwargs, monkeypatch, state=state, before_3_3=before_3_3)
    assert dbt.cancels == ([int(handle.job_id)] if cancelled else [])
    if cancelled:
        dbt.advance(5)
        assert dbt.status_of(int(handle.job_id)) == CANCELLED
