"""The "Resumable jobs" app inside Airflow's own API app (every Airflow 3), on records that tasks
run by ``dag.test()`` wrote: the plugin is mounted, Airflow's users and permissions decide who reads
and who clears, and every clear is in Airflow's audit log. The browser test is in tests/e2e."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from packaging.version import Version

from resumable.records import airflow_version
from resumable.testing.airflow import run_dag, task_states
from resumable.ui.app import ACTION_HEADER


@pytest.fixture(scope="module")
def client(airflow_db: str) -> Iterator[Any]:
    """Airflow's API app, as ``airflow api-server`` builds it (plugins mounted), in this process."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app("all")) as test_client:
        yield test_client


def bearer(role: str) -> dict[str, str]:
    """The headers of a user of the simple auth manager's ``role``, named after it."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=role, role=role))
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["auto", "sql"])
def finished(request: pytest.FixtureRequest, make_dag: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A DAG run whose resumable task succeeded, its record written to the backend under test."""
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", request.param)
    dag, service = make_dag()
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"job": "success"}
    return dag_run


def test_viewers_read_the_records_and_only_editors_clear_them_each_clear_audited(client, finished) -> None:
    dag_id, run_id = finished.dag_id, finished.run_id
    viewer, admin = bearer("viewer"), bearer("admin")

    listed = client.get("/resumable/records", params={"dag_id": dag_id}, headers=viewer)
    assert listed.status_code == 200, listed.text
    [row] = listed.json()["rows"]
    # Airflow's store (auto on 3.3) is not written when the job ends: the next attempt asks the job.
    on_airflow_store = os.environ["AIRFLOW__RESUMABLE__STATE_BACKEND"] == "auto" and native_store()
    phase, last_status = ("submitted", None) if on_airflow_store else ("done", "SUCCEEDED")
    assert (row["run_id"], row["task_id"], row["key"], row["phase"]) == (
        run_id,
        "job",
        "resumable.job",
        phase,
    )
    assert (row["last_status"], row["owner_try"], row["ti_state"], row["can_clear"]) == (
        last_status,
        1,
        "success",
        False,
    )
    assert row["ti_url"] == f"/dags/{dag_id}/runs/{run_id.replace(':', '%3A').replace('+', '%2B')}/tasks/job"
    assert (
        "button"
        not in client.get("/resumable/", params={"dag_id": dag_id}, headers=viewer)
        .text.split("<tbody>")[1]
        .split("</tbody>")[0]
    )
    assert client.get("/resumable/records", params={"dag_id": dag_id}).status_code == 401

    body = {"dag_id": dag_id, "run_id": run_id, "task_id": "job", "key": "resumable.job", "job": "leave"}
    with_header = {ACTION_HEADER: "resumable"}
    refused = client.post("/resumable/clear", json=body, headers={**viewer, **with_header})
    assert refused.status_code == 403 and "may not edit the task instances" in refused.text
    assert client.post("/resumable/clear", json=body, headers=admin).status_code == 403  # not from the page
    assert client.get("/resumable/records", params={"dag_id": dag_id}, headers=admin).json()["rows"][0][
        "can_clear"
    ]

    done = client.post("/resumable/clear", json=body, headers={**admin, **with_header})
    assert done.status_code == 200, done.text
    assert done.json()["said"][-1]["text"].startswith("Deleted 'resumable.job'")
    assert client.get("/resumable/records", params={"dag_id": dag_id}, headers=admin).json()["rows"] == []
    gone = client.post("/resumable/clear", json=body, headers={**admin, **with_header})
    assert gone.status_code == 404

    assert audit_log(dag_id) == [
        ("viewer", "refused"),
        ("admin", "refused"),
        ("admin", "done"),
        ("admin", "refused"),
    ]


def native_store() -> bool:
    found = airflow_version()
    return found is not None and found.release >= Version("3.3").release


def audit_log(dag_id: str) -> list[tuple[str, str]]:
    import json

    import sqlalchemy as sa
    from airflow.models.log import Log
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            sa.select(Log.owner, Log.extra)
            .where(Log.event == "resumable.clear", Log.dag_id == dag_id)
            .order_by(Log.id)
        ).all()
    return [(owner, json.loads(extra)["result"]) for owner, extra in rows]


def test_the_plugin_is_in_airflows_plugin_list_with_its_page_in_the_menu(client) -> None:
    plugins = client.get("/api/v2/plugins", headers=bearer("admin")).json()["plugins"]
    [ours] = [p for p in plugins if p["name"] == "resumable"]
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/resumable"]
    found = airflow_version()
    if (
        found is not None and found.release >= Version("3.1").release
    ):  # plugin views in the UI's menus came with Airflow 3.1
        [view] = ours["external_views"]
        assert (view["name"], view["href"], view["destination"]) == ("Resumable jobs", "/resumable/", "nav")


def test_ui_enabled_false_registers_no_page() -> None:
    code = (
        "from resumable.ui.plugin import ResumablePlugin as P\n"
        "print(len(P.fastapi_apps), len(P.external_views))"
    )
    env = {**os.environ, "AIRFLOW__RESUMABLE__UI_ENABLED": "False"}
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.split()[-2:] == ["0", "0"]
    env["AIRFLOW__RESUMABLE__UI_ENABLED"] = "True"
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.split()[-2:] == ["1", "1"]
