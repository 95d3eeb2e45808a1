"""The DAGs of ``resumable demo``: the provider's operator and ours side by side on the same job.

``resumable_demo_databricks``: five tasks, the same one-minute Databricks run each. The demo sends
SIGTERM to the workers of the ``*_sigterm`` tasks (a pod eviction, a worker restart) and SIGKILL to
those of the ``*_sigkill`` tasks (a node lost). The provider's operator runs at its best, with its
``durable`` persistence on (the default on Airflow 3.3); ``provider_nodurable_sigkill`` shows it
with ``durable=False``, as it runs before Airflow 3.3.

``resumable_demo_emr``: the same on EMR Serverless (the provider's operator persists nothing).

``resumable_demo_people``: one provider task and one of ours, for the ``clear`` and ``mark-failed``
scenarios, where a person acts through the REST API.

Every task's run or job is named after the task, so the demo can tell them apart.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

ROLE = os.environ.get("RESUMABLE_CRASH_ROLE_ARN", "arn:aws:iam::123456789012:role/emr-job")
APPLICATION_ID = os.environ.get("RESUMABLE_CRASH_APPLICATION_ID", "")
DEFAULTS = {"retries": 2, "retry_delay": timedelta(seconds=1)}


def databricks_task(task_id: str, resumable: bool, **extra: Any) -> Any:
    from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator

    from resumable.operators.databricks import ResumableDatabricksSubmitRunOperator

    cls = ResumableDatabricksSubmitRunOperator if resumable else DatabricksSubmitRunOperator
    return cls(
        task_id=task_id,
        run_name=f"demo-{task_id}",
        tasks=[
            {
                "task_key": "main",
                "spark_python_task": {"python_file": "dbfs:/jobs/aggregate.py"},
                "new_cluster": {"spark_version": "15.4.x-scala2.12", "num_workers": 2},
            }
        ],
        polling_period_seconds=1,
        **extra,
    )


def serverless_task(task_id: str, resumable: bool) -> Any:
    from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator

    from resumable.operators.emr_serverless import ResumableEmrServerlessStartJobOperator

    cls = ResumableEmrServerlessStartJobOperator if resumable else EmrServerlessStartJobOperator
    return cls(
        task_id=task_id,
        name=f"demo-{task_id}",
        application_id=APPLICATION_ID,
        execution_role_arn=ROLE,
        job_driver={"sparkSubmit": {"entryPoint": "s3://bucket/aggregate.py"}},
        configuration_overrides={},
        waiter_delay=1,
        waiter_max_attempts=100_000,
    )


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=datetime(2025, 1, 1), catchup=False, default_args=DEFAULTS)


with _dag("resumable_demo_databricks") as resumable_demo_databricks:
    databricks_task("provider_sigterm", resumable=False)
    databricks_task("resumable_sigterm", resumable=True)
    databricks_task("provider_sigkill", resumable=False)
    databricks_task("provider_nodurable_sigkill", resumable=False, durable=False)
    databricks_task("resumable_sigkill", resumable=True)

with _dag("resumable_demo_emr") as resumable_demo_emr:
    for _name in ("provider_sigterm", "resumable_sigterm", "provider_sigkill", "resumable_sigkill"):
        serverless_task(_name, resumable=_name.startswith("resumable"))

with _dag("resumable_demo_people") as resumable_demo_people:
    databricks_task("provider", resumable=False)
    databricks_task("resumable", resumable=True)
