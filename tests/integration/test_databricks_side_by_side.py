"""Side by side with the provider's own Databricks operator: same emulator, same crash points.

Our numbers are asserted; the provider operator's are recorded (``record_property``, shown in the
JUnit report and in ``-rA`` output) so the difference is visible without making their behaviour
a condition of our build.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator

from resumable.operators.databricks import ResumableDatabricksSubmitRunOperator
from resumable.testing.airflow import run_dag, task_states
from resumable.testing.databricks import DatabricksEmulator, RunScript
from tests.helpers import new_dag
from tests.integration.test_databricks import CLUSTER, FAST_HOOK, NOTEBOOK

PROVIDER_ARGS = {"notebook_task": NOTEBOOK, "new_cluster": CLUSTER, "databricks_retry_args": FAST_HOOK}


class CrashRightAfterSubmit(DatabricksSubmitRunOperator):
    """The provider's operator, dying on its first try between "run created" and "run id saved"."""

    def submit_job(self, context: Any) -> Any:
        run_id = super().submit_job(context)
        if context["ti"].try_number == 1:
            raise RuntimeError("worker lost right after submit")
        return run_id


class CrashWhilePolling(DatabricksSubmitRunOperator):
    """The provider's operator, dying on its first try once it starts waiting for the run."""

    def poll_until_complete(self, external_id: Any, context: Any) -> None:
        if context["ti"].try_number == 1:
            raise RuntimeError("worker lost while polling")
        super().poll_until_complete(external_id, context)


class EvictedWhilePolling(DatabricksSubmitRunOperator):
    """The provider's operator, sent SIGTERM on its first try as it starts waiting for the run: an
    eviction, from the task's own thread. Airflow runs ``on_kill`` inside its SIGTERM handler, and the
    provider's logs: a SIGTERM from another thread that lands while the task writes a log line makes
    that ``on_kill`` wait forever for the lock of the interrupted write (a worker's supervisor SIGKILLs
    the task 5 s later; ``dag.test()`` has none, and the test waited for pytest's timeout)."""

    def poll_until_complete(self, external_id: Any, context: Any) -> None:
        if context["ti"].try_number == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # handled here, between two lines of this thread
        super().poll_until_complete(external_id, context)


@pytest.fixture
def dbx(airflow_db: str) -> Iterator[DatabricksEmulator]:
    with DatabricksEmulator(speed=40.0, default_script=RunScript(duration=8.0)) as emu, emu.use_as():
        yield emu


def run_one(op_class: type, **kwargs: Any) -> str | None:
    with new_dag("side_by_side") as dag:
        op_class(task_id="run", retries=1, retry_delay=timedelta(0), **kwargs)
    dr = run_dag(dag)
    return task_states(dr)["run"]


def sigterm_once_running(emu: DatabricksEmulator) -> threading.Thread:
    """SIGTERM this process (the worker) once the task has polled its run twice: an eviction."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while emu.calls["GET runs/get"] < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_crash_between_submit_and_persist(dbx, fault, record_property) -> None:
    theirs = run_one(CrashRightAfterSubmit, polling_period_seconds=0, **PROVIDER_ARGS)
    record_property("provider_runs_submitted", dbx.runs_created)
    record_property("provider_final_state", theirs)
    provider_runs = dbx.runs_created

    dbx.reset()
    fault("after_submit")
    ours = run_one(ResumableDatabricksSubmitRunOperator, poll_interval=0.02, **PROVIDER_ARGS)
    assert ours == "success"
    assert dbx.runs_created == 1
    print(f"crash after submit: provider submitted {provider_runs} runs, resumable {dbx.runs_created}")


@pytest.mark.parametrize("durable", [True, False])
def test_crash_while_polling(dbx, fault, record_property, durable) -> None:
    theirs = run_one(CrashWhilePolling, polling_period_seconds=0, durable=durable, **PROVIDER_ARGS)
    record_property(f"provider_durable_{durable}_runs_submitted", dbx.runs_created)
    record_property(f"provider_durable_{durable}_final_state", theirs)
    provider_runs = dbx.runs_created

    dbx.reset()
    fault("while_polling")
    ours = run_one(ResumableDatabricksSubmitRunOperator, poll_interval=0.02, **PROVIDER_ARGS)
    assert ours == "success"
    assert dbx.runs_created == 1
    print(f"crash while polling (durable={durable}): provider {provider_runs} runs, resumable 1")


def test_sigterm_from_an_eviction(dbx, record_property) -> None:
    theirs = run_one(EvictedWhilePolling, polling_period_seconds=0, **PROVIDER_ARGS)
    record_property("provider_runs_submitted", dbx.runs_created)
    record_property("provider_runs_cancelled", len(dbx.cancels))
    record_property("provider_final_state", theirs)
    provider = (dbx.runs_created, len(dbx.cancels))

    dbx.reset()
    sigterm_once_running(dbx)
    ours = run_one(ResumableDatabricksSubmitRunOperator, poll_interval=0.02, **PROVIDER_ARGS)
    assert ours == "success"
    assert dbx.cancels == [], "an eviction must not cancel a healthy run"
    assert dbx.runs_created == 1
    print(f"SIGTERM: provider {provider[0]} runs / {provider[1]} cancelled; resumable 1 run / 0 cancelled")
