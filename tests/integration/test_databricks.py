"""The resumable Databricks operators on a real Airflow (``dag.test()``), through the provider's real
``DatabricksHook``, against the loopback Jobs API emulator.

Each test asserts what a user checks: how many runs Databricks saw, which run the retry polled,
what was cancelled or repaired, and how the task ended.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from resumable.job import JobHandle, JobState
from resumable.operators.databricks import (
    ResumableDatabricksRunNowOperator,
    ResumableDatabricksSubmitRunOperator,
)
from resumable.pacing import wait_retry_after
from resumable.testing.airflow import clear_and_rerun, run_dag, run_retries, task_states
from resumable.testing.databricks import DatabricksEmulator, RunScript, TaskScript
from tests.helpers import (
    EVERY_TRIGGER_STOP,
    FAST_HOOK,
    databricks_operator_kwargs,
    new_dag,
    on_the_retrys_first_look,
    stop_deferred_task,
)

NOTEBOOK = {"notebook_path": "/Shared/etl"}
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 2}


@pytest.fixture
def dbx(airflow_db: str) -> Iterator[DatabricksEmulator]:
    emulator = DatabricksEmulator(speed=40.0, default_script=RunScript(duration=4.0, pending=1.0))
    with emulator as emu, emu.use_as("databricks_default"):
        yield emu


common = databricks_operator_kwargs


def submit_dag(**kwargs: Any):
    with new_dag("dbx_submit") as dag:
        ResumableDatabricksSubmitRunOperator(
            task_id="run", notebook_task=NOTEBOOK, new_cluster=CLUSTER, **common(**kwargs)
        )
    return dag


def run_now_dag(job_id: int, **kwargs: Any):
    with new_dag("dbx_run_now") as dag:
        ResumableDatabricksRunNowOperator(
            task_id="run", job_id=job_id, job_parameters={"day": "2025-06-01"}, **common(**kwargs)
        )
    return dag


def xcom(dag_run, key: str) -> Any:
    (ti,) = dag_run.get_task_instances()
    return ti.xcom_pull(task_ids="run", key=key)


@pytest.fixture(params=["submit", "run_now"])
def make(request, dbx):
    """Build a one-task DAG with either operator; the row tests run for both."""

    def build(**kwargs: Any):
        if request.param == "submit":
            return submit_dag(**kwargs)
        return run_now_dag(dbx.create_job(f"job-{len(dbx.runs)}"), **kwargs)

    return build


def test_fresh_submit_creates_one_run_with_our_token_and_pushes_its_xcoms(dbx, make) -> None:
    dr = run_dag(make())
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1
    (token,) = [t for t in dbx.submissions if t]
    assert token.startswith("rsm-") and len(token) <= 64
    run_id = dbx.runs[0]
    assert xcom(dr, "run_id") == run_id
    assert xcom(dr, "run_page_url") == dbx.run(run_id)["run_page_url"]


def test_crash_between_submit_and_persist_gets_the_same_run_back(dbx, make, fault) -> None:
    fault("after_submit")
    dr = run_dag(make())
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1, "Databricks must see exactly one run"
    (token,) = [t for t in dbx.submissions if t]
    assert dbx.submissions[token] == 2  # the retry repeated the token and got the same run back


def test_crash_before_submit_submits_once(dbx, make, fault) -> None:
    fault("after_intent")
    dr = run_dag(make())
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1


def test_crash_while_polling_reattaches_to_the_same_run(dbx, make, fault) -> None:
    fault("while_polling")
    dr = run_dag(make())
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1
    assert sum(n for t, n in dbx.submissions.items() if t) == 1, "the retry must not submit at all"
    assert xcom(dr, "run_id") == dbx.runs[0]


def test_crash_after_the_run_succeeded_finishes_without_submitting(dbx, make, fault) -> None:
    dbx.default_script = RunScript(duration=0.0, pending=0.0)
    fault("while_polling")  # the first poll already sees TERMINATED/SUCCESS, then the worker dies
    dr = run_dag(make())
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1 and sum(n for t, n in dbx.submissions.items() if t) == 1
    assert xcom(dr, "run_page_url") == dbx.run(dbx.runs[0])["run_page_url"]


def test_clear_after_success_runs_the_job_again(dbx, make) -> None:
    dag = make()
    dr = run_dag(dag)
    assert task_states(dr) == {"run": "success"} and dbx.runs_created == 1
    dr = clear_and_rerun(dag, dr)
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 2, "a clear means: run it again"
    assert len([t for t in dbx.submissions if t]) == 2, "the rerun needs a new token"


def test_a_clears_try_that_dies_after_submitting_with_the_old_token_leaves_its_run_to_its_retry(
    dbx, fault, monkeypatch
) -> None:
    """Both tries die after writing their intent: nothing was submitted, the task failed. A person
    clears it; the clear's first try submits with the record's token (its job may exist), Databricks
    creates the run, and the try dies before it records it. The run ends at once. Its retry submits
    with the token again, gets that run back and finishes with it: one run, not a rerun of the
    clear's own."""
    dbx.default_script = RunScript(duration=0.0, pending=0.0)
    dag = submit_dag(retries=1)
    fault("after_intent")
    monkeypatch.setenv("RESUMABLE_FAULT_TRY", "any")
    dr = run_dag(dag)
    assert task_states(dr) == {"run": "failed"} and dbx.runs_created == 0

    fault("after_submit")
    monkeypatch.setenv("RESUMABLE_FAULT_TRY", "3")
    dr = clear_and_rerun(dag, dr)
    assert task_states(dr) == {"run": "up_for_retry"} and dbx.runs_created == 1
    dr = run_retries(dag, dr)
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1, "the retry must finish with the run its lineage created"
    assert xcom(dr, "run_id") == dbx.runs[0]


def test_failed_run_is_resubmitted_by_the_retry_with_a_new_token(dbx, make) -> None:
    dbx.script_next(RunScript(result="FAILED", duration=1.0))
    dr = run_dag(make(on_prior_failure="resubmit"))
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 2 and len([t for t in dbx.submissions if t]) == 2


def test_failed_run_with_on_prior_failure_fail_is_not_resubmitted(dbx, make) -> None:
    dbx.script_next(RunScript(result="FAILED", duration=1.0))
    dr = run_dag(make(on_prior_failure="fail"))
    assert task_states(dr) == {"run": "failed"}
    assert dbx.runs_created == 1


def test_success_with_failures_is_a_failure_unless_the_option_says_otherwise(dbx) -> None:
    tasks = {"a": TaskScript(duration=1.0), "b": TaskScript(result="FAILED", duration=1.0)}
    dbx.script_next(RunScript(result="SUCCESS_WITH_FAILURES", tasks=tasks))
    dr = run_dag(submit_dag(retries=0))
    assert task_states(dr) == {"run": "failed"}
    dbx.script_next(RunScript(result="SUCCESS_WITH_FAILURES", tasks=tasks))
    dr = run_dag(submit_dag(retries=0, success_with_failures="succeed"))
    assert task_states(dr) == {"run": "success"}


def two_task_job(dbx: DatabricksEmulator, failing: str = "b") -> int:
    tasks = {"a": TaskScript(duration=1.0), failing: TaskScript(result="FAILED", duration=1.0)}
    return dbx.create_job(
        "nightly",
        tasks=[{"task_key": "a"}, {"task_key": failing, "depends_on": [{"task_key": "a"}]}],
        script=RunScript(tasks=tasks),
    )


def test_run_now_failure_is_repaired_in_place_by_the_retry(dbx) -> None:
    job_id = two_task_job(dbx)
    dr = run_dag(run_now_dag(job_id, on_prior_failure="repair"))
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1, "a repair reruns inside the same run"
    assert dbx.repairs == [dbx.runs[0]]
    history = dbx.run(dbx.runs[0])["repair_history"]
    assert [h["type"] for h in history] == ["ORIGINAL", "REPAIR"]


def test_run_now_repair_run_repairs_within_the_attempt(dbx) -> None:
    job_id = two_task_job(dbx)
    dr = run_dag(run_now_dag(job_id, retries=0, repair_run=True))
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1 and dbx.repairs == [dbx.runs[0]]


def test_run_now_by_job_name_crash_after_submit_gets_the_same_run(dbx, fault) -> None:
    dbx.create_job("by-name")
    fault("after_submit")
    with new_dag("dbx_run_now_name") as dag:
        ResumableDatabricksRunNowOperator(task_id="run", job_name="by-name", **common())
    dr = run_dag(dag)
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1


def test_a_given_idempotency_token_is_sent_as_given(dbx) -> None:
    dr = run_dag(submit_dag(idempotency_token="team-token-1"))
    assert task_states(dr) == {"run": "success"}
    assert dbx.submissions["team-token-1"] == 1 and dbx.runs_created == 1


def test_deferrable_run_survives_a_crash_after_submit(dbx, fault) -> None:
    fault("after_submit")
    with new_dag("dbx_deferred") as dag:
        ResumableDatabricksSubmitRunOperator(
            task_id="run",
            notebook_task=NOTEBOOK,
            new_cluster=CLUSTER,
            deferrable=True,
            polling_period_seconds=0,
            retries=2,
            retry_delay=timedelta(0),
            poll_interval=0.02,
        )
    dr = run_dag(dag)
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1
    assert xcom(dr, "run_id") == dbx.runs[0]


def test_throttling_storm_during_reattach_is_retried(dbx, fault) -> None:
    fault("while_polling")
    with new_dag("dbx_storm") as dag:
        op = ResumableDatabricksSubmitRunOperator(
            task_id="run", notebook_task=NOTEBOOK, new_cluster=CLUSTER, **common(status_retry_attempts=6)
        )
    with on_the_retrys_first_look(type(op), lambda: dbx.fail_next(10, status=429, path="runs/get")):
        dr = run_dag(dag)  # 429 after 429
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1
    assert dbx.calls["GET runs/get"] > 10


def test_a_throttled_status_call_waits_what_the_service_asked(dbx, fault, capsys) -> None:
    """The service's 429s carry ``Retry-After: 1``: once the hook's own tries are spent, the retry
    waits that second (and up to one more, at random) and says so, then reattaches."""
    fault("while_polling")
    with new_dag("dbx_retry_after") as dag:
        op = ResumableDatabricksSubmitRunOperator(
            task_id="run", notebook_task=NOTEBOOK, new_cluster=CLUSTER, **common()
        )
    with on_the_retrys_first_look(type(op), lambda: dbx.fail_next(6, status=429, path="runs/get")):
        dr = run_dag(dag)  # more 429s than the hook tries
    out = capsys.readouterr()
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1
    waits = [
        float(line.split("retrying in ")[1].split(" s")[0])
        for line in (out.out + out.err).splitlines()
        if "could not read the job status" in line and "(the service asked for 1 s)" in line
    ]
    assert waits, "the throttled call's retry must say it waits what the service asked"
    assert all(1.0 <= wait <= 2.0 for wait in waits)


def test_the_hooks_own_retries_wait_what_the_service_asked_unless_retry_args_are_given(dbx) -> None:
    own = ResumableDatabricksSubmitRunOperator(task_id="probe", notebook_task=NOTEBOOK)
    assert isinstance(own._hook.retry_args["wait"], wait_retry_after)
    assert own._hook.retry_args["stop"].max_attempt_number == own.databricks_retry_limit
    given = ResumableDatabricksSubmitRunOperator(
        task_id="probe", notebook_task=NOTEBOOK, databricks_retry_args=FAST_HOOK
    )
    assert given._hook.retry_args["wait"] is FAST_HOOK["wait"]
    # The hook's own tries then wait out the 429s (Retry-After: 1) and the answer comes back.
    dbx.fail_next(2, status=429, path="runs/get")
    run_id = own._hook.submit_run({"run_name": "x", "tasks": [{"task_key": "main"}]})
    before = dbx.calls["GET runs/get"]
    state = own.get_job_status(JobHandle("databricks", str(run_id))).state
    assert state in (JobState.PENDING, JobState.RUNNING, JobState.SUCCEEDED)
    assert dbx.calls["GET runs/get"] - before == 3


@pytest.mark.parametrize("status", [400, 404])
def test_a_run_that_does_not_exist_is_not_found(dbx, status) -> None:
    dbx.not_found_status = status
    op = ResumableDatabricksSubmitRunOperator(
        task_id="probe", notebook_task=NOTEBOOK, databricks_retry_args=FAST_HOOK
    )
    assert op.get_job_status(JobHandle("databricks", "987654321")).state is JobState.NOT_FOUND


def test_server_errors_are_transient_and_bad_requests_are_not(dbx) -> None:
    op = ResumableDatabricksSubmitRunOperator(
        task_id="probe", notebook_task=NOTEBOOK, databricks_retry_args=FAST_HOOK
    )
    dbx.fail_next(10, status=503, path="runs/get")
    with pytest.raises(Exception) as server_error:
        op.get_job_status(JobHandle("databricks", "1"))
    assert op.is_transient_error(server_error.value)
    assert op.is_transient_error(requests.exceptions.ConnectionError("connection reset by peer"))
    dbx.fail_next(0)
    with pytest.raises(Exception) as bad_request:
        op._hook.submit_run({"run_name": "x", "idempotency_token": "x" * 65})
    assert not op.is_transient_error(bad_request.value)


def test_the_pytest_plugin_fixture_serves_a_dag_authors_test(airflow_db, databricks_emulator, fault) -> None:
    fault("after_submit")
    dr = run_dag(submit_dag(poll_interval=0.05))
    assert task_states(dr) == {"run": "success"}
    assert databricks_emulator.runs_created == 1


@EVERY_TRIGGER_STOP
@pytest.mark.parametrize(
    ("state", "cancel_on_kill", "cancelled"),
    [
        ("failed", True, True),  # a person marked the deferred task failed
        ("none", True, True),  # a person cleared it
        ("deferred", True, False),  # the triggerer restarted or handed the trigger on
        ("failed", False, False),  # cancel_on_kill='never'
    ],
)
def test_a_deferred_runs_trigger_cancels_it_only_on_a_persons_stop(
    dbx, monkeypatch, before_3_3, state, cancel_on_kill, cancelled
) -> None:
    """Before Airflow 3.3 the triggerer only cancels a trigger (a person's stop and a triggerer
    restart alike); from 3.3 it calls on_kill for a person's action. Either way the task instance's
    state decides, through the trigger as the triggerer rebuilds it from its serialised form."""
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

    from resumable.operators.databricks import ResumableDatabricksExecutionTrigger

    dbx.script_next(RunScript(duration=10_000.0, pending=0.0))
    run_id = DatabricksHook("databricks_default").submit_run(
        {"run_name": "x", "tasks": [{"task_key": "t", "notebook_task": NOTEBOOK}]}
    )
    path, kwargs = ResumableDatabricksExecutionTrigger(
        run_id=run_id,
        databricks_conn_id="databricks_default",
        polling_period_seconds=1,
        cancel_on_kill=cancel_on_kill,
    ).serialize()
    assert (
        path.endswith(".ResumableDatabricksExecutionTrigger") and kwargs["cancel_on_kill"] is cancel_on_kill
    )
    stop_deferred_task(path, kwargs, monkeypatch, state=state, before_3_3=before_3_3)
    assert dbx.cancels == ([run_id] if cancelled else [])
