"""Create an EMR cluster and wait until it runs. The token is a cluster tag: a retry finds the cluster
the lost worker created instead of paying for a second one."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from resumable.operators.emr_cluster import ResumableEmrCreateJobFlowOperator

CLUSTER = {
    "Name": "nightly",
    "ReleaseLabel": "emr-7.0.0",
    "Instances": {
        "InstanceGroups": [
            {"Name": "primary", "InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1}
        ],
        "KeepJobFlowAliveWhenNoSteps": True,
    },
    "JobFlowRole": "EMR_EC2_DefaultRole",
    "ServiceRole": "EMR_DefaultRole",
}

with DAG(
    "example_emr_create_cluster",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["resumable", "example"],
):
    ResumableEmrCreateJobFlowOperator(
        task_id="create_cluster",
        job_flow_overrides=CLUSTER,
        emr_conn_id=None,
        wait_for_completion=True,
        waiter_delay=30,
    )
