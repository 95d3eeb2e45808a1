"""Dynamic task mapping: one Databricks run per map index, each resumed on its own."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from resumable.operators.databricks import ResumableDatabricksSubmitRunOperator

REGIONS = ["eu", "us", "apac"]

with DAG(
    "example_mapped",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["resumable", "example"],
):
    ResumableDatabricksSubmitRunOperator.partial(
        task_id="aggregate_region",
        run_name="aggregate-region",
        polling_period_seconds=30,
    ).expand(
        tasks=[
            [
                {
                    "task_key": "aggregate",
                    "spark_python_task": {"python_file": "dbfs:/jobs/aggregate.py", "parameters": [region]},
                    "existing_cluster_id": "0101-000000-abcdefgh",
                }
            ]
            for region in REGIONS
        ]
    )
