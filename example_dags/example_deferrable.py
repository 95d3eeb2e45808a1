"""Deferrable: the worker slot is freed while the run goes on; the trigger and the retry are resumable too."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from resumable.operators.databricks import ResumableDatabricksSubmitRunOperator

with DAG(
    "example_deferrable",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["resumable", "example"],
):
    ResumableDatabricksSubmitRunOperator(
        task_id="train",
        run_name="train-model",
        tasks=[
            {
                "task_key": "train",
                "notebook_task": {"notebook_path": "/Repos/ml/train"},
                "existing_cluster_id": "0101-000000-abcdefgh",
            }
        ],
        deferrable=True,
        polling_period_seconds=30,
    )
