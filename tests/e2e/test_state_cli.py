"""`resumable state` against a real Airflow: records read and deleted through the REST API."""

from __future__ import annotations

import json

import pytest

from resumable.cli import main
from resumable.testing.crash import CrashLab

pytestmark = pytest.mark.e2e


def test_state_list_shows_the_running_job_and_clear_cancels_it_only_when_told(
    lab: CrashLab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in lab.stack.env.items():  # the DAG's connections, for --cancel-job
        monkeypatch.setenv(name, value)
    lab.script("databricks", 120)
    run = lab.start_run("databricks")
    lab.wait_until_submitted(run)
    lab.wait_for_state(run, ("running",))
    scope = ["--dag-id", run.dag_id, "--run-id", run.run_id, "--task-id", "job"]
    api = ["--backend", "airflow", "--api-url", lab.stack.url]
    lab.wait(lambda: main(["state", "show", *scope, *api]) == 0, "the record to name its job", 30)
    capsys.readouterr()

    assert main(["state", "list", "--dag-id", run.dag_id, "--run-id", run.run_id, *api, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["task_id"], row["phase"], row["owner_try"]) == ("job", "submitted", 1)
    assert row["job_id"] == lab.job_ids(run)[0]
    assert row["url"].startswith(lab.databricks.url)

    assert main(["state", "clear", *scope, *api, "--yes"]) == 4
    assert "may still be running" in capsys.readouterr().err
    assert lab.cancelled(run) == 0

    dags = str(lab.stack.home / "dags")
    cancel = ["state", "clear", *scope, *api, "--yes", "--cancel-job", "--dags-folder", dags]
    # While the task runs, its attempt owns the record: the clear leaves the job to it.
    assert main(cancel) == 4
    assert "is running" in capsys.readouterr().err
    assert lab.cancelled(run) == 0

    # A person's stop in Airflow: the attempt cancels its job and records why; then the clear deletes.
    lab.stack.mark(run.dag_id, run.run_id, "job", "failed")
    lab.wait_until_cancelled(run)
    assert lab.finish(run) == "failed"
    lab.wait(lambda: not lab.active_jobs(run), "the job to stop", 60)
    capsys.readouterr()
    assert main(cancel) == 0
    out = capsys.readouterr().out
    assert "nothing to cancel" in out and "Deleted" in out
    assert main(["state", "show", *scope, *api]) == 3
    assert lab.cancelled(run) == 1
    assert lab.submitted(run) == 1
