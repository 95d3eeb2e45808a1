"""The ``resumable state`` command on a real SQLite backend, and the in-task checkpoint helpers."""

from __future__ import annotations

import json

import pytest

from resumable import Checkpoint, DoneSet
from resumable.cli import main
from resumable.state import MemoryBackend, SqlBackend, TaskScope


class _Ti:
    dag_id, run_id, task_id, map_index = "d", "r", "t", -1


@pytest.fixture
def sql_state(monkeypatch, tmp_path) -> SqlBackend:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "sql")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", url)
    return SqlBackend(url)


ARGS = ["--dag-id", "d", "--run-id", "r", "--task-id", "t"]


def test_state_show_prints_the_record_and_clear_deletes_it(sql_state, capsys) -> None:
    scope = TaskScope("d", "r", "t")
    sql_state.put(scope, "resumable.job", {"phase": "submitted"}, None)
    assert main(["state", "show", *ARGS]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == {"phase": "submitted"}
    assert main(["state", "clear", *ARGS, "--yes"]) == 0
    assert sql_state.get(scope, "resumable.job") is None
    assert main(["state", "show", *ARGS]) == 3


def test_state_clear_keeps_the_record_unless_confirmed(sql_state, monkeypatch) -> None:
    scope = TaskScope("d", "r", "t")
    sql_state.put(scope, "resumable.job", {"phase": "submitted"}, None)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["state", "clear", *ARGS]) == 0
    assert sql_state.get(scope, "resumable.job") is not None


def test_state_command_refuses_the_airflow_backend(monkeypatch, capsys) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "airflow")
    assert main(["state", "show", *ARGS]) == 2
    assert "REST API" in capsys.readouterr().err


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
