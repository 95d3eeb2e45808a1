"""The ``resumable state`` command on a real SQLite backend, and the in-task checkpoint helpers."""

from __future__ import annotations

import json

import pytest

from resumable import Checkpoint, DoneSet
from resumable.cli import main
from resumable.state import MemoryBackend, SqlBackend, TaskScope
from tests.helpers import a_record


class _Ti:
    dag_id, run_id, task_id, map_index = "d", "r", "t", -1


@pytest.fixture
def sql_state(monkeypatch, tmp_path) -> SqlBackend:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "sql")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", url)
    return SqlBackend(url)


ARGS = ["--dag-id", "d", "--run-id", "r", "--task-id", "t"]


def test_state_show_prints_the_record_list_summarises_it_and_clear_deletes_it(sql_state, capsys) -> None:
    scope = TaskScope("d", "r", "t")
    sql_state.put(scope, "resumable.job", a_record("done", "SUCCEEDED"), None)
    assert main(["state", "show", *ARGS]) == 0
    assert json.loads(capsys.readouterr().out)["phase"] == "done"
    assert main(["state", "list", "--dag-id", "d", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["task_id"], row["phase"], row["owner_try"], row["job_id"], row["last_status"]) == (
        "t",
        "done",
        2,
        "42",
        "SUCCEEDED",
    )
    assert row["url"] == "fake://jobs/42"
    assert main(["state", "clear", *ARGS, "--yes"]) == 0
    assert sql_state.get(scope, "resumable.job") is None
    assert main(["state", "show", *ARGS]) == 3


@pytest.mark.parametrize(("phase", "state"), [("submitted", "RUNNING"), ("submitting", None)])
def test_state_clear_refuses_a_record_whose_job_may_run_unless_told(sql_state, capsys, phase, state) -> None:
    scope = TaskScope("d", "r", "t")
    sql_state.put(scope, "resumable.job", a_record(phase, state), None)
    assert main(["state", "clear", *ARGS, "--yes"]) == 4
    assert "--leave-job" in capsys.readouterr().err
    assert sql_state.get(scope, "resumable.job") is not None
    assert main(["state", "clear", *ARGS, "--yes", "--leave-job"]) == 0
    assert sql_state.get(scope, "resumable.job") is None


def test_state_clear_keeps_the_record_unless_confirmed(sql_state, monkeypatch) -> None:
    scope = TaskScope("d", "r", "t")
    sql_state.put(scope, "resumable.job", a_record("done", "FAILED"), None)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["state", "clear", *ARGS]) == 0
    assert sql_state.get(scope, "resumable.job") is not None


def test_state_command_refuses_the_memory_backend(monkeypatch, capsys) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "memory")
    assert main(["state", "show", *ARGS]) == 2
    assert "--backend sql" in capsys.readouterr().err


def test_state_command_says_when_the_api_is_unreachable(capsys) -> None:
    assert (
        main(["state", "list", "--dag-id", "d", "--backend", "airflow", "--api-url", "http://127.0.0.1:9"])
        == 2
    )
    assert "cannot be reached" in capsys.readouterr().err


DAG_FILE = """
from datetime import datetime, timedelta
from airflow.sdk import DAG
from resumable.testing.fake import FakeJobOperator
with DAG("doctor_dag", schedule=None, start_date=datetime(2025, 1, 1)):
    FakeJobOperator(task_id="no_retries", retries={retries}, retry_delay=timedelta(seconds=5))
"""


@pytest.mark.parametrize(("retries", "code"), [(0, 1), (2, 0)])
def test_doctor_names_a_resumable_task_without_retries(tmp_path, capsys, retries, code) -> None:
    (tmp_path / "dag.py").write_text(DAG_FILE.format(retries=retries))
    assert main(["doctor", "--dags-folder", str(tmp_path)]) == code
    out = capsys.readouterr().out
    assert "1 found" in out
    assert ("doctor_dag.no_retries: retries=0" in out) is (retries == 0)


def test_checkpoint_and_done_set_survive_a_new_attempt() -> None:
    MemoryBackend.reset()
    context = {"ti": _Ti()}
    backend = MemoryBackend()
    Checkpoint(context, "cursor", backend).set(100)
    done = DoneSet(context, "files", backend)
    done.add("a.csv")
    done.add("b.csv")
    done.add("a.csv")
    # A retry builds them again from the state layer.
    assert Checkpoint(context, "cursor", backend).get(default=0) == 100
    again = DoneSet(context, "files", backend)
    assert "a.csv" in again and "c.csv" not in again and len(again) == 2
    again.clear()
    assert len(DoneSet(context, "files", backend)) == 0


class _Try(_Ti):
    """A try of a task with ``retries=1``: ``max_tries`` is the lineage, as Airflow sets it."""

    def __init__(self, try_number: int, max_tries: int) -> None:
        self.try_number, self.max_tries = try_number, max_tries
        self.task = type("Task", (), {"retries": 1})()


def test_a_checkpoint_belongs_to_its_lineage_and_a_plain_stored_value_to_every_one() -> None:
    MemoryBackend.reset()
    backend = MemoryBackend()
    Checkpoint({"ti": _Try(1, 1)}, "cursor", backend).set(100)
    assert Checkpoint({"ti": _Try(2, 1)}, "cursor", backend).get(default=0) == 100  # a retry
    assert Checkpoint({"ti": _Try(2, 2)}, "cursor", backend).get(default=0) == 0  # a clear: max_tries rose
    stored = backend.get(TaskScope("d", "r", "t"), "checkpoint:cursor")
    assert stored is not None and stored.value["checkpoint"]["lineage"] == 1
    backend.put(TaskScope("d", "r", "t"), "checkpoint:cursor", 7, stored.version)  # written by hand
    assert Checkpoint({"ti": _Try(2, 2)}, "cursor", backend).get(default=0) == 7
