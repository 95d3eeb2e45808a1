"""Crash DAGs of Databricks (``DatabricksSubmitRunOperator``): see :mod:`resumable.testing.crash_dags`
for their ids and settings. Contenders ``resumable``, ``provider`` and ``provider_nodurable`` (the
provider's operator with ``durable=False``); ``crash_databricks_deferrable`` too. The
``databricks_default`` connection comes from the environment (the lab's emulator).
"""

from __future__ import annotations

from typing import Any

from resumable.testing.crash_dags import define


def databricks(contender: str, **extra: Any) -> Any:
    from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator

    from resumable.operators.databricks import ResumableDatabricksSubmitRunOperator

    kwargs: dict[str, Any] = {
        "task_id": "job",
        "run_name": f"crash-{contender}",
        "tasks": [
            {
                "task_key": "main",
                "spark_python_task": {"python_file": "dbfs:/jobs/aggregate.py"},
                "new_cluster": {"spark_version": "15.4.x-scala2.12", "num_workers": 2},
            }
        ],
        "polling_period_seconds": 1,
        **extra,
    }
    if contender == "resumable":
        return ResumableDatabricksSubmitRunOperator(**kwargs)
    if contender == "provider_nodurable":
        kwargs["durable"] = False
    return DatabricksSubmitRunOperator(**kwargs)


globals().update(
    define("databricks", databricks, ("resumable", "provider", "provider_nodurable"), deferrable=True)
)
