"""The example DAGs load, and each runs to success against the emulators with one job per task."""

from __future__ import annotations

from pathlib import Path

import pytest

from resumable.testing.airflow import run_dag, task_states
from resumable.testing.aws import AwsEmulator
from resumable.testing.databricks import DatabricksEmulator

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
DAG_IDS = {
    "example_databricks_submit_run",
    "example_databricks_run_now",
    "example_emr_add_steps",
    "example_emr_serverless",
    "example_emr_on_eks",
    "example_emr_create_cluster",
    "example_custom_operator",
    "example_deferrable",
    "example_mapped",
}


@pytest.fixture(scope="module")
def bag():
    from resumable._compat import DagBag

    return DagBag(dag_folder=str(EXAMPLES))


def test_the_example_folder_loads_without_import_errors(bag) -> None:
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == DAG_IDS


def _fast(dag) -> None:
    """The examples poll every 30 s, as in production; the emulators run at 60x, so poll often."""
    for task in dag.tasks:
        if hasattr(task, "partial_kwargs"):
            task.partial_kwargs["poll_interval"] = 0.05
            task.partial_kwargs["polling_period_seconds"] = 1
        else:
            task.poll_interval = 0.05
            if hasattr(task, "polling_period_seconds"):
                task.polling_period_seconds = 1


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_example_dag_runs_to_success_with_one_job_per_task(
    dag_id: str,
    bag,
    airflow_db: str,
    databricks_emulator: DatabricksEmulator,
    aws_emulator: AwsEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_EMR_CLUSTER_ID", aws_emulator.create_cluster())
    monkeypatch.setenv(
        "AIRFLOW_VAR_EMR_SERVERLESS_APPLICATION_ID", aws_emulator.create_serverless_application()
    )
    monkeypatch.setenv("AIRFLOW_VAR_EMR_VIRTUAL_CLUSTER_ID", aws_emulator.create_virtual_cluster())
    databricks_emulator.create_job("feature-refresh")
    dag = bag.dags[dag_id]
    _fast(dag)
    if dag_id == "example_custom_operator":
        dag.tasks[0].workdir = str(tmp_path)

    dag_run = run_dag(dag)

    states = task_states(dag_run)
    assert set(states.values()) == {"success"}, states
    jobs = (
        databricks_emulator.runs_created
        + sum(aws_emulator.steps_created.values())
        + sum(aws_emulator.job_runs_created.values())
        + sum(aws_emulator.clusters_created.values())  # not the one the test made: the kit leaves it out
        + len(list(tmp_path.glob("*.pid")))
    )
    assert jobs == len(states)
