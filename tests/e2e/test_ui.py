"""The "Resumable jobs" page in a real headless Chromium, against the embedded Airflow, with the
records a crash test leaves: what it lists, where its links go, who may clear, and the screenshot
in the docs (``docs/images/resumable-jobs.png``, taken here on Airflow 3.3 and nowhere else).

Marked ``every_airflow``: below 3.3 the records are in the ``sql`` backend's table (a SQLite file
in the embedded Airflow's home), which the page reads in the API server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from packaging.version import Version

from resumable.records import SqlSource, airflow_version
from resumable.state import TaskScope
from resumable.testing.crash import CrashLab, Run
from resumable.ui.app import ACTION_HEADER

pytestmark = [pytest.mark.e2e, pytest.mark.every_airflow]

VERSION = airflow_version() or Version("3.3")
#: Where the tasks write: Airflow's task state store from 3.3, the sql backend below.
NATIVE_STORE = VERSION.release >= (3, 3)

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "resumable-jobs.png"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright (``RESUMABLE_TEST_CHROMIUM`` to use another binary)."""
    binary = (
        os.environ.get("RESUMABLE_TEST_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not binary:
        message = "Chromium is not installed (apt-get install chromium; `make test-e2e` installs it as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true requires it", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        yield launched
        launched.close()


def state_store(lab: CrashLab, run: Run, key: str) -> str:
    return f"dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/job/state-store/{quote(key, safe='')}"


def sql_source(lab: CrashLab) -> SqlSource:
    """The sql backend the embedded Airflow's tasks write to below 3.3 (its default SQLite file)."""
    return SqlSource(f"sqlite:///{lab.stack.home / 'resumable_state.db'}")


def stored(lab: CrashLab, run: Run, key: str) -> bool:
    if not NATIVE_STORE:
        return any(e.key == key for e in sql_source(lab).entries(run.dag_id, run.run_id, "job", -1))
    response = requests.get(f"{lab.stack.url}/api/v2/{state_store(lab, run, key)}", timeout=30)
    return response.status_code == 200


def store_unusable_value(lab: CrashLab, run: Run, key: str) -> None:
    """A value no task can use under ``key`` of the run's task (what troubleshooting repairs)."""
    if NATIVE_STORE:
        lab.stack.api("PUT", state_store(lab, run, key), json={"value": "not a record"})
    else:
        sql_source(lab).backend.put(TaskScope(run.dag_id, run.run_id, "job", -1), key, "not a record", None)


def page_of(lab: CrashLab, run: Run) -> str:
    return f"{lab.stack.url}/resumable/?dag_id={quote(run.dag_id)}&run_id={quote(run.run_id)}"


def test_the_page_lists_a_crash_tests_records_links_them_and_lets_only_editors_clear(
    lab: CrashLab, browser: Any
) -> None:
    from playwright.sync_api import expect

    # A crash test's records: a worker SIGKILLed while its job runs, the retry reattaches. The job runs
    # until the retry has reattached (an hour, then the clock moves on): a job that ended before the
    # retry looked at it is finished with, not reattached to, and leaves another record.
    lab.script("databricks", 3600)
    run = lab.start_run("databricks")
    lab.wait_until_submitted(run)
    lab.wait_for_state(run, ("running",), try_number=1)
    time.sleep(3)
    lab.processes(run).signal(signal.SIGKILL)
    job_id = lab.job_ids(run)[0]
    lab.wait(
        lambda: f"job {job_id} as try 2" in lab.task_log(run, 2),  # took ownership / reattached
        "the retry to reattach to the job",
        timeout=180,
    )
    lab.advance("databricks", 3600)
    assert lab.finish(run) == "success"
    # Beside it, a value no task can use (what troubleshooting sends people to repair).
    store_unusable_value(lab, run, "resumable.broken")

    admin = browser.new_page(viewport={"width": 1500, "height": 700})
    admin.goto(page_of(lab, run))
    expect(admin.locator("#records tbody tr")).to_have_count(2)
    record = admin.locator('tr[data-key="resumable.job"]')
    # Airflow's store (3.3+) is written only for the intent and the job's id: the retry reattached
    # in its lineage without a write, and the job's end is read from the job, not recorded.
    expect(record.locator(".phase")).to_have_text("submitted" if NATIVE_STORE else "done")
    job_link = record.locator("a.job")
    expect(job_link).to_have_text(job_id)
    assert job_link.get_attribute("href") == lab.databricks.run(int(job_id))["run_page_url"]
    task_link = record.locator("a.ti")
    assert (
        task_link.get_attribute("href") == f"/dags/{run.dag_id}/runs/{quote(run.run_id, safe='')}/tasks/job"
    )
    cells = [c.strip() for c in record.locator("td").all_inner_texts()]
    # owner try, lineage (the task instance's max_tries), last job status
    owner, last_status = ("try 1", "-") if NATIVE_STORE else ("try 2", "SUCCEEDED")
    assert cells[4:7] == [owner, str(lab.task(run)["max_tries"]), last_status]
    broken = admin.locator('tr[data-key="resumable.broken"]')
    expect(broken.locator(".phase")).to_have_text("unusable")
    fix = broken.locator(".problem code").inner_text()
    assert (
        f"--dag-id {run.dag_id} --run-id '{run.run_id}' --task-id job --key resumable.broken --leave-job"
        in fix
    )
    assert fix.endswith(f"--backend airflow --api-url {lab.stack.url}" if NATIVE_STORE else "--backend sql")

    # The task link opens Airflow's own page of that task instance.
    with browser.new_page() as airflow_page:
        airflow_page.goto(lab.stack.url + task_link.get_attribute("href"))
        expect(airflow_page.get_by_text(run.run_id).first).to_be_visible(timeout=30_000)

    # The page in Airflow's UI (Browse > Resumable jobs, from Airflow 3.1); the docs' screenshot on 3.3.
    if VERSION.release >= (3, 1):
        with browser.new_page(viewport={"width": 1500, "height": 650}) as shown:
            shown.goto(f"{lab.stack.url}/plugin/resumable-jobs")
            frame = shown.frame_locator("iframe")
            expect(frame.locator('tr[data-key="resumable.job"]').first).to_be_visible(timeout=30_000)
            if NATIVE_STORE:
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                shown.screenshot(path=str(SCREENSHOT))

    # A viewer sees the records and no clear button; the endpoint refuses the clear as well.
    viewer_token = lab.stack.token_for("viewer", "viewer")
    viewer = browser.new_context(extra_http_headers={"Authorization": f"Bearer {viewer_token}"}).new_page()
    viewer.goto(page_of(lab, run))
    expect(viewer.locator("#records tbody tr")).to_have_count(2)
    expect(viewer.locator("button.clear")).to_have_count(0)
    body = {
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "task_id": "job",
        "key": "resumable.broken",
        "job": "leave",
    }
    refused = requests.post(
        f"{lab.stack.url}/resumable/clear",
        json=body,
        headers={"Authorization": f"Bearer {viewer_token}", ACTION_HEADER: "resumable"},
        timeout=30,
    )
    assert refused.status_code == 403, refused.text
    assert "may not edit the task instances" in refused.text
    assert stored(lab, run, "resumable.broken")

    # An editor clears the unusable value after confirming; the record of the job stays.
    admin.once("dialog", lambda dialog: dialog.accept())
    broken.locator("button.clear").click()
    expect(admin.locator("#outcome")).to_contain_text("Deleted 'resumable.broken'")
    assert not stored(lab, run, "resumable.broken")
    assert stored(lab, run, "resumable.job")
    admin.reload()
    expect(admin.locator("#records tbody tr")).to_have_count(1)

    # Both attempts are in Airflow's audit log, with who made them and what came of them.
    events = lab.stack.api("GET", "eventLogs", params={"event": "resumable.clear", "dag_id": run.dag_id})
    mine = [e for e in events["event_logs"] if e["run_id"] == run.run_id]
    results = {json.loads(e["extra"])["result"]: e["owner"] for e in mine}
    assert len(mine) == 2 and results["refused"] == "viewer", mine
    assert results["done"] not in (None, "viewer"), mine  # the stack's all-admins user


def test_a_clear_that_would_cancel_under_a_running_attempt_is_refused_and_the_job_runs_on(
    lab: CrashLab,
) -> None:
    lab.script("databricks", 120)
    run = lab.start_run("databricks")
    lab.wait_until_submitted(run)
    lab.wait_for_state(run, ("running",), try_number=1)
    lab.wait(lambda: stored(lab, run, "resumable.job"), "the record to be written", 30)
    body = {"dag_id": run.dag_id, "run_id": run.run_id, "task_id": "job", "key": "resumable.job"}

    def clear(job: str) -> requests.Response:
        return requests.post(
            f"{lab.stack.url}/resumable/clear",
            json={**body, "job": job},
            headers={ACTION_HEADER: "resumable"},
            timeout=60,
        )

    refused = clear("cancel")
    assert refused.status_code == 409, refused.text
    assert "is running: its attempt owns the record" in refused.text
    assert lab.cancelled(run) == 0 and lab.active_jobs(run) == lab.job_ids(run)
    assert stored(lab, run, "resumable.job")
    no_header = requests.post(f"{lab.stack.url}/resumable/clear", json={**body, "job": "leave"}, timeout=30)
    assert no_header.status_code == 403 and stored(lab, run, "resumable.job")

    # What the refusal says to do: mark it failed (its attempt cancels the job), then clear.
    lab.stack.mark(run.dag_id, run.run_id, "job", "failed")
    lab.wait_until_cancelled(run)
    assert lab.finish(run) == "failed"
    lab.wait(lambda: not lab.active_jobs(run), "the job to stop", 60)
    done = clear("cancel")
    assert done.status_code == 200, done.text
    assert "nothing to cancel" in done.text and "Deleted 'resumable.job'" in done.text
    assert not stored(lab, run, "resumable.job")
    assert (lab.submitted(run), lab.cancelled(run)) == (1, 1)
