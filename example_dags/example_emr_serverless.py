"""A job run on an EMR Serverless application; our token is the run's clientToken."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from resumable.operators.emr_serverless import ResumableEmrServerlessStartJobOperator

with DAG(
    "example_emr_serverless",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["resumable", "example"],
):
    ResumableEmrServerlessStartJobOperator(
        task_id="etl",
        application_id="{{ var.value.emr_serverless_application_id }}",
        execution_role_arn="arn:aws:iam::123456789012:role/emr-serverless-job",
        job_driver={"sparkSubmit": {"entryPoint": "s3://bucket/etl.py"}},
        configuration_overrides={},
        waiter_delay=30,
    )
