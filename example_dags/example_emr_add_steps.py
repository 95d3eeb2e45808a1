"""Steps on a running EMR cluster. EMR steps take no idempotency token: the token goes into the step
name, and a retry finds the steps the lost worker added instead of adding them again."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from resumable.operators.emr_steps import ResumableEmrAddStepsOperator

with DAG(
    "example_emr_add_steps",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["resumable", "example"],
):
    ResumableEmrAddStepsOperator(
        task_id="etl",
        job_flow_id="{{ var.value.emr_cluster_id }}",
        steps=[
            {
                "Name": "etl",
                "ActionOnFailure": "CONTINUE",
                "HadoopJarStep": {
                    "Jar": "command-runner.jar",
                    "Args": ["spark-submit", "s3://bucket/etl.py"],
                },
            }
        ],
        wait_for_completion=True,
        waiter_delay=30,
    )
