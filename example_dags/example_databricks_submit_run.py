"""A one-off Databricks run that survives the loss of its worker.

Same parameters as the provider's DatabricksSubmitRunOperator; a retry after a crash, eviction or
restart reattaches to the run the lost worker submitted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from resumable.operators.databricks import ResumableDatabricksSubmitRunOperator

with DAG(
    "example_databricks_submit_run",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=1)},
    tags=["resumable", "example"],
):
    ResumableDatabricksSubmitRunOperator(
        task_id="aggregate",
        run_name="nightly-aggregation",
        tasks=[
            {
                "task_key": "aggregate",
                "spark_python_task": {"python_file": "dbfs:/jobs/aggregate.py", "parameters": ["{{ ds }}"]},
                "new_cluster": {
                    "spark_version": "15.4.x-scala2.12",
                    "node_type_id": "i3.xlarge",
                    "num_workers": 4,
                },
            }
        ],
        polling_period_seconds=30,
    )
