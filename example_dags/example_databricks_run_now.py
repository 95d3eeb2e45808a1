"""Run an existing Databricks job by name; a retry of a failed run repairs it instead of rerunning it all."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from resumable.operators.databricks import ResumableDatabricksRunNowOperator

with DAG(
    "example_databricks_run_now",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["resumable", "example"],
):
    ResumableDatabricksRunNowOperator(
        task_id="refresh_features",
        job_name="feature-refresh",
        job_parameters={"date": "{{ ds }}"},
        on_prior_failure="repair",  # a retry re-runs only the failed tasks of the run
        polling_period_seconds=30,
    )
