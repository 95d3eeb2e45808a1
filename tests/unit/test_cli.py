"""The ``resumable`` command on the records it must repair, and ``doctor`` on every kind of task.

Each test here reproduces a defect found by using the command as a user would: a non-JSON record
crashed ``state list``; the printed clear command was refused by the CLI; records under a custom
``state_key`` and checkpoints were invisible; mapped tasks were skipped by ``doctor`` and broke
``clear --cancel-job``; ``list`` had two exit codes for "nothing found"; and ``auto`` meant the
REST API in the CLI even on an Airflow whose tasks write to the ``sql`` backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import sqlalchemy as sa
from packaging.version import Version

from resumable import Checkpoint, DoneSet
from resumable.cli import main
from resumable.errors import RecordError, VersionConflict
from resumable.job import JobState
from resumable.record import Record
from resumable.records import ApiSource
from resumable.state import SqlBackend, TaskScope
from resumable.state.airflow import AirflowStoreBackend
from resumable.state.base import cli_clear_hint
from resumable.state.sql import state_table
from resumable.testing.fake import FakeJobService
from tests.helpers import a_record

RUN = "manual__2025-01-01T00:00:00+00:00"
ARGS = ["--dag-id", "d", "--run-id", RUN, "--task-id", "t"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch) -> None:
    """Tables and messages on one line each, as in a wide terminal (rich reads COLUMNS)."""
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture
def sql_url(monkeypatch, tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "sql")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", url)
    return url


@pytest.fixture
def sql(sql_url) -> SqlBackend:
    return SqlBackend(sql_url, auto_purge=False)


def put_raw(url: str, scope: TaskScope, key: str, text: str) -> None:
    """Store ``text`` as it is, the way a cut-short write or another program leaves a row."""
    SqlBackend(url, auto_purge=False).check()  # creates the table
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            state_table.insert().values(
                dag_id=scope.dag_id,
                run_id=scope.run_id,
                task_id=scope.task_id,
                map_index=scope.map_index,
                key=key,
                value=text,
                version=1,
                updated_at=datetime.now(timezone.utc),
            )
        )
    engine.dispose()


def run_printed(command: str) -> subprocess.CompletedProcess[str]:
    """Run a command exactly as printed, in a shell, answering "y" when it asks."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        ["bash", "-c", command], input="y\n", env=env, capture_output=True, text=True, timeout=180
    )


def hint_in(error: RecordError) -> str:
    """The command at the end of a RecordError's message."""
    return str(error).split("clear the record with: ", 1)[1]


class _Ti:
    def __init__(self, scope: TaskScope) -> None:
        self.dag_id, self.run_id, self.task_id = scope.dag_id, scope.run_id, scope.task_id
        self.map_index = scope.map_index


# ---- a record that is not JSON -------------------------------------------------------------


def test_a_non_json_record_is_listed_shown_and_cleared_as_unusable(sql_url, sql, capsys) -> None:
    bad, good = TaskScope("d", RUN, "t"), TaskScope("d", RUN, "other")
    put_raw(sql_url, bad, "resumable.job", '{"v": 1, "phase": "submi')
    sql.put(good, "resumable.job", a_record("done", "SUCCEEDED"), None)
    fix = cli_clear_hint(bad, "resumable.job", backend="sql")

    assert main(["state", "list", "--dag-id", "d"]) == 0
    out = capsys.readouterr()
    assert "unusable" in out.out and "done" in out.out
    assert "is not valid JSON" in out.err and fix in out.err

    assert main(["state", "list", "--dag-id", "d", "--json"]) == 0
    rows = {row["task_id"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["t"]["usable"] is False and rows["t"]["phase"] == "unusable"
    assert rows["t"]["problem"].startswith("is not valid JSON") and rows["t"]["fix"] == fix
    assert rows["other"]["usable"] is True and rows["other"]["fix"] is None

    assert main(["state", "show", *ARGS]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == '{"v": 1, "phase": "submi'
    assert "Unusable" in out.err and fix in out.err

    assert main(["state", "clear", *ARGS, "--yes"]) == 4  # it may name a running job: asks first
    assert "--leave-job" in capsys.readouterr().err
    assert main(["state", "clear", *ARGS, "--yes", "--leave-job"]) == 0
    assert sql.get(bad, "resumable.job") is None
    assert sql.get(good, "resumable.job") is not None


# ---- every printed fix command works -------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "key", "stored"),
    [
        (TaskScope("d", "scheduled__it's +00:00", "t"), "resumable.job", "not json at all"),
        (TaskScope("d", RUN, "t", 2), "team etl/job", json.dumps({"v": 99, "phase": "submitted"})),
    ],
    ids=["not-json-default-key", "unknown-version-custom-key-mapped"],
)
def test_every_printed_fix_command_does_what_it_says(sql_url, sql, capsys, scope, key, stored) -> None:
    put_raw(sql_url, scope, key, stored)
    neighbours = [
        (scope, "checkpoint:cursor"),
        (TaskScope(scope.dag_id, scope.run_id, scope.task_id, scope.map_index + 1), key),
    ]
    for where, other_key in neighbours:
        sql.put(where, other_key, {"keep": True}, None)
    # The command a failing task prints (RecordError) and the one `state list` prints agree.
    found = sql.get(scope, key)
    assert found is not None
    with pytest.raises(RecordError) as raised:
        Record.from_json(found.value, where="here", clear_hint=sql.clear_hint(scope, key))
    printed = hint_in(raised.value)
    assert main(["state", "list", "--dag-id", scope.dag_id, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["fix"] for r in rows if r["key"] == key and r["map_index"] == scope.map_index] == [printed]

    done = run_printed(printed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Deleted" in done.stdout
    assert sql.get(scope, key) is None
    for where, other_key in neighbours:
        assert sql.get(where, other_key) is not None


@pytest.fixture
def api(monkeypatch) -> Iterator[FakeApi]:
    server = FakeApi()
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", server.url)
    yield server
    server.close()


def test_the_airflow_backend_hint_deletes_with_the_token_the_cli_reads(api, monkeypatch, capsys) -> None:
    scope, key = TaskScope("d", RUN, "t", 1), "resumable.job"
    api.put(scope, key, a_record("done", "FAILED"))
    api.put(scope, "checkpoint:cursor", 7)
    monkeypatch.setenv("AIRFLOW_API_TOKEN", "tok-123")

    # The CLI reads AIRFLOW_API_TOKEN ...
    assert main(["state", "show", *ARGS, "--map-index", "1", "--backend", "airflow"]) == 0
    assert json.loads(capsys.readouterr().out)["phase"] == "done"
    assert api.tokens and set(api.tokens) == {"Bearer tok-123"}

    # ... and so does the command a failing task on the airflow backend prints.
    hint = AirflowStoreBackend(object(), scope).clear_hint(scope, key)
    assert "$AIRFLOW_API_TOKEN" in hint
    done = run_printed(hint)
    assert done.returncode == 0, done.stdout + done.stderr
    method, path, query, token = api.requests[-1]
    assert (method, token) == ("DELETE", "Bearer tok-123")
    assert path == ApiSource._path(scope, key) and query == {"map_index": ["1"]}
    assert api.keys(scope) == {"checkpoint:cursor"}


# ---- every key of a task --------------------------------------------------------------------


@pytest.mark.parametrize("where", ["sql", "airflow"])
def test_records_under_any_state_key_and_checkpoints_are_listed_shown_and_cleared(
    sql, api, capsys, where
) -> None:
    scope = TaskScope("d", RUN, "t")
    backend: Any = sql if where == "sql" else api
    backend.put(scope, "resumable.job", a_record("done", "SUCCEEDED"), None)
    backend.put(scope, "etl.main", a_record("submitted", "RUNNING", job_id="77"), None)
    context = {"ti": _Ti(scope)}
    Checkpoint(context, "cursor", backend=backend).set(100)
    DoneSet(context, "files", backend=backend).add("a.csv")
    extra = [] if where == "sql" else ["--backend", "airflow"]

    assert main(["state", "list", "--dag-id", "d", "--json", *extra]) == 0
    rows = {r["key"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(rows) == {"resumable.job", "etl.main", "checkpoint:cursor", "checkpoint:files"}
    assert rows["etl.main"]["job_id"] == "77" and rows["etl.main"]["kind"] == "record"
    assert rows["checkpoint:cursor"]["kind"] == "checkpoint" and rows["checkpoint:cursor"]["usable"]

    assert main(["state", "list", "--dag-id", "d", *extra]) == 0
    assert "etl.main" in capsys.readouterr().out

    assert main(["state", "show", *ARGS, "--key", "checkpoint:cursor", *extra]) == 0
    assert json.loads(capsys.readouterr().out) == 100
    # A checkpoint names no job: it is cleared without --leave-job.
    assert main(["state", "clear", *ARGS, "--key", "checkpoint:cursor", "--yes", *extra]) == 0
    capsys.readouterr()
    assert main(["state", "clear", *ARGS, "--key", "etl.main", "--yes", *extra]) == 4
    assert main(["state", "clear", *ARGS, "--yes", *extra]) == 0  # resumable.job, done
    capsys.readouterr()
    assert main(["state", "show", *ARGS, *extra]) == 3
    assert "'etl.main'" in capsys.readouterr().err  # says which keys the task has


# ---- exit codes -----------------------------------------------------------------------------


def test_list_exits_3_when_nothing_matches_in_both_forms(sql, capsys) -> None:
    sql.put(TaskScope("other_dag", RUN, "t"), "resumable.job", a_record("done", "SUCCEEDED"), None)
    assert main(["state", "list", "--dag-id", "d"]) == 3
    assert main(["state", "list", "--dag-id", "d", "--json"]) == 3
    out = capsys.readouterr()
    assert out.out == "" and "No records" in out.err
    assert main(["state", "list", "--dag-id", "other_dag", "--json"]) == 0


# ---- mapped tasks ---------------------------------------------------------------------------

MAPPED_DAG = """
from datetime import datetime
from airflow.sdk import DAG
from resumable.testing.fake import FakeJobOperator
with DAG("mapped_dag", schedule=None, start_date=datetime(2025, 1, 1)):
    FakeJobOperator.partial(task_id="literal", retries={retries}).expand(service=["cli_a", "cli_b"])
    upstream = FakeJobOperator(task_id="upstream", retries=1, service="cli_c")
    FakeJobOperator.partial(task_id="from_xcom", retries=1, service="cli_c").expand(job_name=upstream.output)
"""


@pytest.mark.parametrize(("retries", "code"), [(0, 1), (1, 0)])
def test_doctor_checks_mapped_tasks(tmp_path, capsys, retries, code) -> None:
    (tmp_path / "dag.py").write_text(MAPPED_DAG.format(retries=retries))
    assert main(["doctor", "--dags-folder", str(tmp_path)]) == code
    out = capsys.readouterr().out
    assert "3 found" in out
    assert ("mapped_dag.literal (mapped): retries=0" in out) is (retries == 0)


@pytest.mark.parametrize(
    ("task_id", "map_index", "service"), [("literal", 1, "cli_b"), ("from_xcom", 0, "cli_c")]
)
def test_clear_cancel_job_on_a_mapped_task_cancels_that_map_index_job(
    sql, tmp_path, capsys, task_id, map_index, service
) -> None:
    (tmp_path / "dag.py").write_text(MAPPED_DAG.format(retries=1))
    services = {name: FakeJobService(name=name) for name in ("cli_a", "cli_b", "cli_c")}
    job_id = services[service].submit("rsm-tok", "job")
    scope = TaskScope("mapped_dag", RUN, task_id, map_index)
    sql.put(scope, "resumable.job", a_record("submitted", "RUNNING", job_id=job_id), None)
    args = ["--dag-id", "mapped_dag", "--run-id", RUN, "--task-id", task_id, "--map-index", str(map_index)]

    assert main(["state", "clear", *args, "--cancel-job", "--dags-folder", str(tmp_path), "--yes"]) == 0
    assert f"cancel job {job_id}" in capsys.readouterr().out
    assert services[service].cancelled == [job_id]
    assert all(not s.cancelled for name, s in services.items() if name != service)
    assert sql.get(scope, "resumable.job") is None


RACE_DAG = """
from datetime import datetime
from airflow.sdk import DAG
from resumable.testing.fake import FakeJobOperator
with DAG("race_dag", schedule=None, start_date=datetime(2025, 1, 1)):
    FakeJobOperator(task_id="t", retries=1, service="cli_race")
"""


@pytest.mark.parametrize("written", ["the same job", "another job"])
def test_clear_cancel_job_looks_at_what_the_attempt_wrote_meanwhile(
    sql, tmp_path, capsys, monkeypatch, written
) -> None:
    """The task's attempt writes its record in the instant between the cancel and the delete (it saw
    the job stopping; or, in the other case, it had just submitted another job): the clear deletes
    the record only while it names the job it cancelled, and the attempt cannot write it back."""
    (tmp_path / "dag.py").write_text(RACE_DAG)
    service = FakeJobService(name="cli_race")
    job_id = service.submit("rsm-tok", "job")
    scope = TaskScope("race_dag", RUN, "t")
    sql.put(scope, "resumable.job", a_record("submitted", "RUNNING", job_id=job_id), None)
    cancel = service.cancel
    named = job_id if written == "the same job" else service.submit("rsm-tok-2", "job")

    def cancel_while_the_attempt_writes(job: str) -> None:
        cancel(job)
        sql.put(scope, "resumable.job", a_record("submitted", "STOPPING", job_id=named), 1)

    monkeypatch.setattr(service, "cancel", cancel_while_the_attempt_writes)
    args = ["--dag-id", "race_dag", "--run-id", RUN, "--task-id", "t", "--dags-folder", str(tmp_path)]
    code = main(["state", "clear", *args, "--cancel-job", "--yes"])

    assert service.cancelled == [job_id]
    if written == "the same job":
        assert code == 0
        assert sql.get(scope, "resumable.job") is None
        with pytest.raises(VersionConflict):  # the attempt's next write (over version 2) finds nothing
            sql.put(scope, "resumable.job", a_record("done", "CANCELLED", job_id=job_id), 2)
    else:
        assert code == 4
        assert f"names job {named}" in capsys.readouterr().err
        kept = sql.get(scope, "resumable.job")
        assert kept is not None and kept.value["handle"]["job_id"] == named


def test_clear_cancel_job_sends_no_cancel_to_a_job_that_ended_since_the_record_was_written(
    sql, tmp_path, capsys
) -> None:
    (tmp_path / "dag.py").write_text(RACE_DAG)
    service = FakeJobService(name="cli_race")
    job_id = service.submit("rsm-tok", "job")
    service.finish(job_id, JobState.CANCELLED)  # the attempt's own cancel went through
    scope = TaskScope("race_dag", RUN, "t")
    sql.put(scope, "resumable.job", a_record("submitted", "RUNNING", job_id=job_id), None)
    args = ["--dag-id", "race_dag", "--run-id", RUN, "--task-id", "t", "--dags-folder", str(tmp_path)]
    assert main(["state", "clear", *args, "--cancel-job", "--yes"]) == 0
    assert f"Job {job_id} is CANCELLED" in capsys.readouterr().out
    assert service.cancelled == []
    assert sql.get(scope, "resumable.job") is None


@pytest.mark.parametrize("state", ["running", "deferred", "up_for_retry"])
def test_clear_cancel_job_leaves_a_live_task_instance_to_its_attempt(api, capsys, state) -> None:
    """On the airflow backend no write is conditional: while the task instance runs (or is about to),
    the clear refuses and says to stop the task in Airflow instead; nothing is cancelled or deleted."""
    scope = TaskScope("d", RUN, "t")
    api.put(scope, "resumable.job", a_record("submitted", "RUNNING"), None)
    api.ti_states[scope] = state
    assert main(["state", "clear", *ARGS, "--cancel-job", "--yes", "--backend", "airflow"]) == 4
    err = capsys.readouterr().err
    assert f"is {state}" in err and "Mark the task instance failed" in err
    assert api.get(scope, "resumable.job") is not None


def test_clear_cancel_job_refuses_a_record_that_names_no_job(sql, capsys) -> None:
    scope = TaskScope("d", RUN, "t")
    sql.put(scope, "resumable.job", a_record("submitting", None), None)
    assert main(["state", "clear", *ARGS, "--cancel-job", "--yes"]) == 4
    err = capsys.readouterr().err
    assert "names no job id" in err and "rsm-x-3-1" in err
    assert cli_clear_hint(scope, "resumable.job", backend="sql") in err
    assert sql.get(scope, "resumable.job") is not None


def test_clear_cancel_job_says_what_happens_to_a_stop_asked_before_the_job_id_was_known(sql, capsys) -> None:
    scope = TaskScope("d", RUN, "t")
    sql.put(scope, "resumable.job", {**a_record("submitting", None), "stop_reason": "user_stop"}, None)
    assert main(["state", "clear", *ARGS, "--cancel-job", "--yes"]) == 4
    err = " ".join(capsys.readouterr().err.split())
    assert "A stop (user_stop) was asked while its submit was in flight" in err
    assert "follow-up process looks for the job by that token" in err and "rsm-x-3-1" in err
    assert sql.get(scope, "resumable.job") is not None


# ---- which backend: the one the tasks write to ----------------------------------------------


@pytest.mark.parametrize(("airflow", "backend"), [("3.1.8", "sql"), ("3.3.2", "airflow")])
def test_auto_in_the_cli_reads_where_the_tasks_of_that_airflow_write(
    sql_url, sql, api, monkeypatch, capsys, airflow, backend
) -> None:
    monkeypatch.setattr("resumable.records.airflow_version", lambda: Version(airflow))
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "auto")
    scope = TaskScope("d", RUN, "t")
    (sql if backend == "sql" else api).put(scope, "resumable.job", a_record("done", "SUCCEEDED"), None)
    assert main(["state", "show", *ARGS]) == 0
    assert json.loads(capsys.readouterr().out)["phase"] == "done"
    assert bool(api.requests) is (backend == "airflow")


AUTO = "[resumable] state_backend auto"


@pytest.mark.parametrize(
    ("airflow", "configured", "says", "code"),
    [
        ("3.1.8", "auto", f"state backend sql: chosen by {AUTO}; Airflow 3.1.8 < 3.3", 0),
        ("3.3.2", "auto", f"state backend airflow: chosen by {AUTO}; Airflow 3.3.2 >= 3.3", 0),
        ("3.3.2", "sql", "state backend sql: chosen by [resumable] state_backend", 0),
        ("3.1.8", "airflow", "tasks have task_state_store only from Airflow 3.3", 1),
    ],
)
def test_doctor_reports_the_airflow_version_the_backend_auto_chose_and_whether_it_answers(
    sql_url, api, monkeypatch, tmp_path, capsys, airflow, configured, says, code
) -> None:
    monkeypatch.setattr("resumable.records.airflow_version", lambda: Version(airflow))
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", configured)
    assert main(["doctor", "--dags-folder", str(tmp_path)]) == code
    out = " ".join(capsys.readouterr().out.split())  # undo the console's line wrapping
    assert f"Airflow {airflow}" in out
    assert says in out
    if code == 0:
        answers = api.url if "backend airflow" in says else f"{sql_url})"
        assert f"{answers} answers" in out


def test_doctor_says_when_the_backend_does_not_answer(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr("resumable.records.airflow_version", lambda: Version("3.1.8"))
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "auto")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", f"sqlite:///{tmp_path}/no/such/dir/x.db")
    assert main(["doctor", "--dags-folder", str(tmp_path)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "FAIL state backend sql: the database" in out


# ---- purge ----------------------------------------------------------------------------------


def test_state_purge_deletes_what_is_older_than_the_retention(sql_url, sql, monkeypatch, capsys) -> None:
    old, fresh = TaskScope("d", "old", "t"), TaskScope("d", "fresh", "t")
    sql.put(old, "resumable.job", a_record("done", "SUCCEEDED"), None)
    sql.put(fresh, "resumable.job", a_record("done", "SUCCEEDED"), None)
    engine = sa.create_engine(sql_url)
    with engine.begin() as conn:
        conn.execute(
            state_table.update()
            .where(state_table.c.run_id == "old")
            .values(updated_at=datetime.now(timezone.utc) - timedelta(days=10))
        )
    engine.dispose()
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_RETENTION_DAYS", "30")

    assert main(["state", "purge"]) == 0
    assert "Deleted 0 record(s) not written for 30 days" in capsys.readouterr().out
    assert main(["state", "purge", "--older-than-days", "7", "--dry-run"]) == 0
    assert "Would delete 1 record(s)" in capsys.readouterr().out
    assert sql.get(old, "resumable.job") is not None
    assert main(["state", "purge", "--older-than-days", "7"]) == 0
    assert "Deleted 1 record(s) not written for 7 days" in capsys.readouterr().out
    assert sql.get(old, "resumable.job") is None and sql.get(fresh, "resumable.job") is not None

    assert main(["state", "purge", "--older-than-days", "0"]) == 2
    assert "Nothing was deleted" in capsys.readouterr().err
    assert main(["state", "purge", "--backend", "airflow"]) == 2
    assert "airflow state-store clean" in capsys.readouterr().err
    assert sql.get(fresh, "resumable.job") is not None


# ---- a stand-in for Airflow's REST API (the state-store routes ApiSource uses) -------------


class FakeApi:
    """Airflow's REST API for task state, as :class:`~resumable.records.ApiSource` calls it.

    Values are kept wrapped the way the ``airflow`` backend writes them; every request is logged
    with its bearer token. It also offers ``put``/``get``/``delete`` like a state backend, so the
    same test code can write records here or in the ``sql`` backend.
    """

    def __init__(self) -> None:
        self.store: dict[TaskScope, dict[str, Any]] = {}
        #: The state each task instance is in, as the task-instance routes answer it.
        self.ti_states: dict[TaskScope, str] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]], str | None]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.answer(*fake.handle("GET", self.path, self.headers.get("Authorization")))

            def do_DELETE(self) -> None:
                self.answer(*fake.handle("DELETE", self.path, self.headers.get("Authorization")))

            def answer(self, status: int, body: Any) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # the state-backend-like side, for tests
    def get(self, scope: TaskScope, key: str) -> Any:
        from resumable.state import Versioned

        with self.lock:
            stored = self.store.get(scope, {}).get(key)
        return None if stored is None else Versioned(stored["value"], stored["__resumable_version__"])

    def put(self, scope: TaskScope, key: str, value: Any, expected_version: int | None = None) -> int:
        with self.lock:
            values = self.store.setdefault(scope, {})
            version = values.get(key, {}).get("__resumable_version__", 0) + 1
            values[key] = {"__resumable_version__": version, "value": value}
            return version

    def delete(self, scope: TaskScope, key: str) -> None:
        with self.lock:
            self.store.get(scope, {}).pop(key, None)

    def keys(self, scope: TaskScope) -> set[str]:
        with self.lock:
            return set(self.store.get(scope, {}))

    # the HTTP side
    def handle(self, method: str, raw_path: str, token: str | None) -> tuple[int, Any]:
        split = urlsplit(raw_path)
        query = parse_qs(split.query)
        self.requests.append((method, split.path, query, token))
        parts = [unquote(p) for p in split.path.split("/")]
        if split.path == "/api/v2/monitor/health":
            return 200, {"metadatabase": {"status": "healthy"}}
        # /api/v2/dags/{dag}/dagRuns[/{run}/taskInstances[/{task}/state-store[/{key}]]]
        if parts[:3] != ["", "api", "v2"] or len(parts) < 6 or parts[3] != "dags":
            return 404, {"detail": "not found"}
        dag = parts[4]
        with self.lock:
            scopes = [s for s in self.store if s.dag_id == dag]
        if len(parts) == 6:
            runs = sorted({s.run_id for s in scopes})
            return 200, {"dag_runs": [{"dag_run_id": r} for r in runs], "total_entries": len(runs)}
        run = parts[6]
        if len(parts) == 8:
            tis = [
                {
                    "task_id": s.task_id,
                    "dag_run_id": s.run_id,
                    "map_index": s.map_index,
                    "state": self.ti_states.get(s, "success"),
                }
                for s in scopes
                if s.run_id == run
            ]
            offset = int(query.get("offset", ["0"])[0])
            return 200, {"task_instances": tis[offset:], "total_entries": len(tis)}
        scope = TaskScope(dag, run, parts[8], int(query.get("map_index", ["-1"])[0]))
        if len(parts) == 10 and method == "GET":
            with self.lock:
                values = dict(self.store.get(scope, {}))
            items = [{"key": k, "value": v, "updated_at": "2025-01-01T00:00:00Z"} for k, v in values.items()]
            return 200, {"task_state_store": items, "total_entries": len(items)}
        if len(parts) == 11 and method == "DELETE":
            self.delete(scope, parts[10])
            return 204, None
        return 404, {"detail": "not found"}

    @property
    def tokens(self) -> list[str | None]:
        return [r[3] for r in self.requests]
