"""A Spark job on EMR on EKS; our token is the job run's clientToken."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from resumable.operators.emr_eks import ResumableEmrContainerOperator

with DAG(
    "example_emr_on_eks",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["resumable", "example"],
):
    ResumableEmrContainerOperator(
        task_id="etl",
        name="etl",
        virtual_cluster_id="{{ var.value.emr_virtual_cluster_id }}",
        execution_role_arn="arn:aws:iam::123456789012:role/emr-eks-job",
        release_label="emr-7.0.0-latest",
        job_driver={"sparkSubmitJobDriver": {"entryPoint": "s3://bucket/etl.py"}},
        poll_interval=30,
    )
