"""Switching a Databricks task from the provider's operator (``durable=True``, Airflow >= 3.3) to ours
while a run is in flight: the retry adopts the run the provider's operator stored instead of
submitting a second one.

Try 1 of each task runs the provider's real operator (in the task's ``pre_execute``), which
submits to the loopback emulator, stores the run id under its key in the task state store, and
then loses its worker. Try 2 is our operator, which finds none of its own records.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from airflow.providers.databricks.operators.databricks import (
    DatabricksRunNowOperator,
    DatabricksSubmitRunOperator,
)
from packaging.version import Version

from resumable.operators.databricks import (
    ResumableDatabricksRunNowOperator,
    ResumableDatabricksSubmitRunOperator,
)
from resumable.records import airflow_version
from resumable.testing.airflow import clear_and_rerun, run_dag, task_states
from resumable.testing.databricks import DatabricksEmulator, RunScript, TaskScript
from tests.helpers import FAST_HOOK, databricks_operator_kwargs, new_dag

found = airflow_version()
pytestmark = pytest.mark.skipif(
    found is None
    or found.release < Version("3.3").release
    or "durable" not in inspect.signature(DatabricksSubmitRunOperator).parameters,
    reason="the Databricks provider keeps its run id in the task state store only on Airflow >= 3.3",
)

NOTEBOOK = {"notebook_path": "/Shared/etl"}
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 2}
SUBMIT_KEY, RUN_NOW_KEY = "databricks_run_id", "databricks_run_now_id"


class WorkerLost(Exception):
    """The provider operator's worker died after the run id was stored."""


class _ProviderSubmit(DatabricksSubmitRunOperator):
    def poll_until_complete(self, external_id: Any, context: Any) -> None:
        raise WorkerLost(f"worker lost while run {external_id} ran")


class _ProviderRunNow(DatabricksRunNowOperator):
    def poll_until_complete(self, external_id: Any, context: Any) -> None:
        raise WorkerLost(f"worker lost while run {external_id} ran")


@pytest.fixture
def dbx(airflow_db: str) -> Iterator[DatabricksEmulator]:
    emulator = DatabricksEmulator(speed=40.0, default_script=RunScript(duration=4.0, pending=1.0))
    with emulator as emu, emu.use_as("databricks_default"):
        yield emu


def provider_first(provider: type, **kwargs: Any) -> Callable[[Any], None]:
    """A ``pre_execute`` that runs the provider's operator (durable) as try 1; it dies after storing."""

    def first_try_is_the_providers(context: Any) -> None:
        if context["ti"].try_number == 1:
            ti = context["ti"]
            op = provider(task_id=ti.task_id, durable=True, databricks_retry_args=FAST_HOOK, **kwargs)
            op.execute_resumable(context)  # submits, stores the run id, then the worker is lost

    return first_try_is_the_providers


def stored_by_hand(key: str, value: Any) -> Callable[[Any], None]:
    """A ``pre_execute`` that stores ``value`` under ``key`` on try 1, as the provider would, and dies."""

    def first_try_stores(context: Any) -> None:
        if context["ti"].try_number == 1:
            context["task_state_store"].set(key, value)
            raise WorkerLost("worker lost right after the provider's operator stored its key")

    return first_try_stores


ours = databricks_operator_kwargs


def submit_dag(pre_execute: Callable[[Any], None] | None = None, **kwargs: Any):
    pre_execute = pre_execute or provider_first(_ProviderSubmit, notebook_task=NOTEBOOK, new_cluster=CLUSTER)
    with new_dag("dbx_migrate_submit") as dag:
        ResumableDatabricksSubmitRunOperator(
            task_id="run",
            notebook_task=NOTEBOOK,
            new_cluster=CLUSTER,
            pre_execute=pre_execute,
            **ours(**kwargs),
        )
    return dag


def run_now_dag(job_id: int, **kwargs: Any):
    with new_dag("dbx_migrate_run_now") as dag:
        ResumableDatabricksRunNowOperator(
            task_id="run",
            job_id=job_id,
            pre_execute=provider_first(_ProviderRunNow, job_id=job_id),
            **ours(**kwargs),
        )
    return dag


@pytest.fixture(params=["submit", "run_now"])
def make(request, dbx):
    """Build a one-task DAG with either operator, and say which key the provider stores under."""

    def build(**kwargs: Any):
        if request.param == "submit":
            return submit_dag(**kwargs), SUBMIT_KEY
        return run_now_dag(dbx.create_job(f"job-{len(dbx.runs)}"), **kwargs), RUN_NOW_KEY

    return build


def xcom(dag_run, key: str) -> Any:
    (ti,) = dag_run.get_task_instances()
    return ti.xcom_pull(task_ids="run", key=key)


def logs(capsys) -> str:
    out = capsys.readouterr()
    return out.out + out.err


def our_submissions(dbx: DatabricksEmulator) -> int:
    """Submissions with an idempotency token: ours (the provider's operator sends none)."""
    return sum(n for token, n in dbx.submissions.items() if token)


def test_an_active_run_the_provider_stored_is_adopted_not_submitted_again(dbx, make, capsys) -> None:
    dbx.script_next(RunScript(duration=120.0, pending=1.0))  # 3 real seconds: still running on try 2
    dag, key = make()
    dr = run_dag(dag)
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1, "the retry must reattach to the provider's run, not submit a second"
    assert our_submissions(dbx) == 0
    (run_id,) = dbx.runs
    assert xcom(dr, "run_id") == run_id
    assert xcom(dr, "run_page_url") == dbx.run(run_id)["run_page_url"]
    text = logs(capsys)
    adopted = f"resumable: adopted Databricks run {run_id} that the provider's operator stored under {key}"
    assert adopted in text
    assert "decided reattach" in text


def test_a_run_the_provider_stored_that_already_succeeded_finishes_the_task(dbx, make, capsys) -> None:
    dbx.script_next(RunScript(duration=0.0, pending=0.0))
    dag, key = make()
    dr = run_dag(dag)
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1 and our_submissions(dbx) == 0
    (run_id,) = dbx.runs
    assert xcom(dr, "run_id") == run_id
    text = logs(capsys)
    assert f"adopted Databricks run {run_id} that the provider's operator stored under {key}" in text
    assert "decided finish" in text


def test_a_failed_provider_run_is_resubmitted_by_our_retry(dbx, make) -> None:
    dbx.script_next(RunScript(result="FAILED", duration=0.0, pending=0.0))
    dag, _ = make(on_prior_failure="resubmit")
    dr = run_dag(dag)
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 2 and our_submissions(dbx) == 1
    assert xcom(dr, "run_id") == dbx.runs[1]


def test_a_failed_provider_run_with_on_prior_failure_fail_is_not_resubmitted(dbx, make, capsys) -> None:
    dbx.script_next(RunScript(result="FAILED", duration=0.0, pending=0.0))
    dag, _ = make(on_prior_failure="fail")
    dr = run_dag(dag)
    assert task_states(dr) == {"run": "failed"}
    assert dbx.runs_created == 1 and our_submissions(dbx) == 0
    assert "on_prior_failure=fail: fail without submitting" in logs(capsys)


def test_a_failed_provider_run_now_is_repaired_in_place(dbx) -> None:
    tasks = {"a": TaskScript(duration=0.0, pending=0.0), "b": TaskScript(result="FAILED", duration=0.0)}
    job_id = dbx.create_job(
        "nightly",
        tasks=[{"task_key": "a"}, {"task_key": "b", "depends_on": [{"task_key": "a"}]}],
        script=RunScript(tasks=tasks),
    )
    dr = run_dag(run_now_dag(job_id, on_prior_failure="repair"))
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1 and dbx.repairs == [dbx.runs[0]]


def test_a_value_that_is_not_a_run_id_is_ignored_with_a_warning(dbx, capsys) -> None:
    dr = run_dag(submit_dag(pre_execute=stored_by_hand(SUBMIT_KEY, "not-a-run-id")))
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1 and our_submissions(dbx) == 1
    text = logs(capsys)
    assert "not a Databricks run id" in text and "'not-a-run-id'" in text
    assert "adopted" not in text


def test_a_stored_run_databricks_does_not_have_is_ignored_with_a_warning(dbx, capsys) -> None:
    dr = run_dag(submit_dag(pre_execute=stored_by_hand(SUBMIT_KEY, 987654321)))
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1 and our_submissions(dbx) == 1
    text = logs(capsys)
    assert "987654321" in text and "does not have" in text
    assert "adopted" not in text


def test_our_own_record_wins_over_the_providers_key(dbx, fault) -> None:
    """Try 1 runs the provider's operator *and* ours (which submits its own run, then dies after
    recording it): the retry follows our record, not the provider's key."""
    dbx.script_next(RunScript(duration=0.0, pending=0.0), RunScript(duration=4.0, pending=1.0))
    fault("after_handle")
    dag = submit_dag(pre_execute=_provider_then_ours)
    dr = run_dag(dag)
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 2 and our_submissions(dbx) == 1
    assert xcom(dr, "run_id") == dbx.runs[1]


def _provider_then_ours(context: Any) -> None:
    """The provider's operator stores its run id and returns (no crash); our operator then runs."""
    if context["ti"].try_number == 1:
        op = DatabricksSubmitRunOperator(
            task_id="run", notebook_task=NOTEBOOK, durable=True, databricks_retry_args=FAST_HOOK
        )
        op.execute_resumable(context)


def test_a_clear_after_the_providers_run_finished_runs_the_job_again(dbx, capsys) -> None:
    """A person's clear means: run it again. A finished run the provider stored is not reused."""
    dbx.script_next(RunScript(duration=0.0, pending=0.0))
    dag = submit_dag(retries=0)
    dr = run_dag(dag)
    assert task_states(dr) == {"run": "failed"} and dbx.runs_created == 1
    dr = clear_and_rerun(dag, dr)
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 2 and our_submissions(dbx) == 1
    assert "a clear means rerun" in logs(capsys)


def test_a_deferrable_task_adopts_the_providers_active_run(dbx) -> None:
    dbx.script_next(RunScript(duration=120.0, pending=1.0))
    # The provider's trigger refuses tenacity objects as retry arguments: the hook's defaults here.
    dr = run_dag(submit_dag(deferrable=True, polling_period_seconds=0, databricks_retry_args=None))
    assert task_states(dr) == {"run": "success"}
    assert dbx.runs_created == 1 and our_submissions(dbx) == 0
    assert xcom(dr, "run_id") == dbx.runs[0]


CALLS: list[tuple[str, str]] = []


class _Counting:
    """``context["task_state_store"]``, counting its calls and the keys they name."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in ("get", "set", "delete"):
            return attr

        def counted(key: str, *args: Any, **kwargs: Any) -> Any:
            CALLS.append((name, key))
            return attr(key, *args, **kwargs)

        return counted


class _CountingSubmit(ResumableDatabricksSubmitRunOperator):
    def execute(self, context: Any) -> Any:
        context["task_state_store"] = _Counting(context["task_state_store"])
        return super().execute(context)


def test_a_first_try_reads_nothing_and_a_retry_reads_the_providers_key_once(dbx, fault) -> None:
    """Looking for the provider's run costs a first try nothing (Airflow's store starts empty for
    every DAG run) and a retry one read; with our record there, ours decides."""
    fault("after_handle")
    CALLS.clear()
    with new_dag("dbx_migrate_costs") as dag:
        _CountingSubmit(task_id="run", notebook_task=NOTEBOOK, new_cluster=CLUSTER, **ours())
    dr = run_dag(dag)
    assert task_states(dr) == {"run": "success"} and dbx.runs_created == 1
    record = "resumable.job"
    expected = [("set", record), ("set", record), ("get", SUBMIT_KEY), ("get", record)]
    assert expected == CALLS


def test_only_a_positive_integer_is_a_run_id() -> None:
    from resumable.operators.databricks import provider_run_id

    assert provider_run_id(1001) == 1001 and provider_run_id("1001") == 1001
    for value in (0, -5, True, "not-a-run-id", "", 1.5, [1001], {"run_id": 1001}):
        assert provider_run_id(value) is None, value
