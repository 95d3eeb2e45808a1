"""DAGs of ``bench/fleet.py``: one mapped task per contender, system and mode.

DAG ids: ``fleet_<contender>_<system>_<mode>``, where contender is ``resumable`` (ours) or
``provider`` (the provider's operator: Databricks with its own ``durable`` persistence, Airflow
3.3's ResumableJobMixin; EMR Serverless as it is), system ``databricks`` or ``emr_serverless``, and
mode ``poll`` or ``deferrable``. The task ``job`` is mapped over ``n`` job names made from the DAG
run's conf (``{"prefix": ..., "n": ...}``), so that the bench tells every task's jobs apart by name.

Every call a task makes to its ``task_state_store`` is appended to the file named by
``RESUMABLE_FLEET_CALLS`` (``<dag_id> <call> <time>``), for the bench's count of state requests,
and the moment each try's ``execute`` begins to ``RESUMABLE_FLEET_STARTS``
(``<dag_id> <map_index> <try_number> <time>``), for the bench's split of the time to poll again.
Connections, the EMR application and the role come from the environment, as in the crash DAGs.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator
from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
from airflow.sdk import DAG, task

from resumable.operators.databricks import ResumableDatabricksSubmitRunOperator
from resumable.operators.emr_serverless import ResumableEmrServerlessStartJobOperator

ROLE = os.environ.get("RESUMABLE_CRASH_ROLE_ARN", "arn:aws:iam::123456789012:role/emr-job")
APPLICATION_ID = os.environ.get("RESUMABLE_CRASH_APPLICATION_ID", "")
#: Seconds between two status calls of a task (and of its trigger).
POLL = float(os.environ.get("RESUMABLE_FLEET_POLL", "10"))
CALLS = os.environ.get("RESUMABLE_FLEET_CALLS", "")
STARTS = os.environ.get("RESUMABLE_FLEET_STARTS", "")


class _Counting:
    """``context["task_state_store"]``, appending each call to the calls file."""

    def __init__(self, store: Any, dag_id: str) -> None:
        self._store, self._dag_id = store, dag_id

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in ("get", "set", "delete") or not CALLS:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            with open(CALLS, "a") as calls:
                calls.write(f"{self._dag_id} {name} {time.time():.3f}\n")
            return attr(*args, **kwargs)

        return counted


def _count(context: Any) -> None:
    store = context.get("task_state_store")
    if store is not None and not isinstance(store, _Counting):
        context["task_state_store"] = _Counting(store, context["dag"].dag_id)


def _mark_start(context: Any) -> None:
    """Append ``<dag_id> <map_index> <try_number> <time>`` to the starts file: when Airflow handed
    this try to the operator (its ``execute`` began)."""
    if STARTS:
        ti = context["ti"]
        with open(STARTS, "a") as starts:
            starts.write(f"{ti.dag_id} {ti.map_index} {ti.try_number} {time.time():.3f}\n")


class _Counted:
    """Put first in the bases: every entry point of the task counts its state calls."""

    def execute(self, context: Any) -> Any:
        _mark_start(context)
        _count(context)
        return super().execute(context)  # type: ignore[misc]

    def execute_complete(self, context: Any, *args: Any, **kwargs: Any) -> Any:
        _count(context)
        return super().execute_complete(context, *args, **kwargs)  # type: ignore[misc]


class FleetResumableDatabricks(_Counted, ResumableDatabricksSubmitRunOperator):
    pass


class FleetProviderDatabricks(_Counted, DatabricksSubmitRunOperator):
    pass


class FleetResumableEmrServerless(_Counted, ResumableEmrServerlessStartJobOperator):
    pass


class FleetProviderEmrServerless(_Counted, EmrServerlessStartJobOperator):  # type: ignore[misc]
    pass


@task
def names(**context: Any) -> list[str]:
    conf = context["dag_run"].conf or {}
    return [f"{conf['prefix']}-{i}" for i in range(int(conf["n"]))]


def databricks(contender: str, deferrable: bool) -> None:
    cls = FleetResumableDatabricks if contender == "resumable" else FleetProviderDatabricks
    cls.partial(
        task_id="job",
        tasks=[
            {
                "task_key": "main",
                "spark_python_task": {"python_file": "dbfs:/jobs/aggregate.py"},
                "new_cluster": {"spark_version": "15.4.x-scala2.12", "num_workers": 2},
            }
        ],
        polling_period_seconds=POLL,
        deferrable=deferrable,
    ).expand(run_name=names())


def emr_serverless(contender: str, deferrable: bool) -> None:
    cls = FleetResumableEmrServerless if contender == "resumable" else FleetProviderEmrServerless
    cls.partial(
        task_id="job",
        application_id=APPLICATION_ID,
        execution_role_arn=ROLE,
        job_driver={"sparkSubmit": {"entryPoint": "s3://bucket/etl.py"}},
        configuration_overrides={},
        waiter_delay=int(POLL),
        waiter_max_attempts=100_000,
        deferrable=deferrable,
    ).expand(name=names())


BUILDERS = {"databricks": databricks, "emr_serverless": emr_serverless}

for _contender in ("resumable", "provider"):
    for _system, _build in BUILDERS.items():
        for _mode in ("poll", "deferrable"):
            with DAG(
                f"fleet_{_contender}_{_system}_{_mode}",
                schedule=None,
                start_date=datetime(2025, 1, 1),
                catchup=False,
                max_active_runs=4,
                max_active_tasks=10_000,
                tags=["resumable-fleet"],
                default_args={"retries": 3, "retry_delay": timedelta(seconds=2)},
            ) as _dag:
                _build(_contender, _mode == "deferrable")
            globals()[_dag.dag_id] = _dag
