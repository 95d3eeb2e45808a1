"""The dbt Cloud emulator, through the dbt-cloud provider's real hook: the behaviour the operator's tests
rely on (one run of a job at a time, causes kept, pagination, cancel, errors as the service words them)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

pytest.importorskip("airflow.providers.dbt.cloud", reason="the dbt-cloud provider is not installed")

from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudHook  # noqa: E402

from resumable.testing.dbt_cloud import (  # noqa: E402
    CANCELLED,
    QUEUED,
    RUNNING,
    SUCCESS,
    DbtCloudEmulator,
    RunScript,
)


@pytest.fixture
def dbt() -> Iterator[DbtCloudEmulator]:
    with DbtCloudEmulator(manual_clock=True) as emu, emu.use_as(), emu.patch_hook():
        yield emu


def test_a_job_runs_one_run_at_a_time(dbt) -> None:
    job = dbt.create_job()
    dbt.script_next(RunScript(duration=5, queued=1), RunScript(duration=5, queued=1))
    hook = DbtCloudHook()
    first = hook.trigger_job_run(job_id=job, cause="first").json()["data"]["id"]
    second = hook.trigger_job_run(job_id=job, cause="second").json()["data"]["id"]
    dbt.advance(1.5)
    assert (hook.get_job_run_status(first), hook.get_job_run_status(second)) == (RUNNING, QUEUED)
    dbt.advance(5)
    assert (hook.get_job_run_status(first), hook.get_job_run_status(second)) == (SUCCESS, RUNNING)
    assert dbt.max_running_at_once(job) == 1


def test_runs_list_newest_first_with_their_cause_page_by_page(dbt) -> None:
    job = dbt.create_job()
    hook = DbtCloudHook()
    for n in range(120):
        hook.trigger_job_run(job_id=job, cause=f"run {n}")
    page = hook.get_job_runs(
        payload={"job_definition_id": job, "order_by": "-id", "include_related": ["trigger"]}
    ).json()
    assert len(page["data"]) == 100 and page["extra"]["pagination"]["total_count"] == 120
    assert page["data"][0]["trigger"]["cause"] == "run 119"
    assert sum(len(r.json()["data"]) for r in hook.list_job_runs(job_definition_id=job)) == 120


def test_a_cancel_shows_after_cancel_seconds_and_a_missing_run_is_404(dbt) -> None:
    job = dbt.create_job()
    dbt.script_next(RunScript(duration=float("inf"), queued=0))
    hook = DbtCloudHook()
    run = hook.trigger_job_run(job_id=job, cause="c").json()["data"]["id"]
    hook.cancel_job_run(run)
    assert hook.get_job_run_status(run) == RUNNING
    dbt.advance(dbt.cancel_seconds)
    assert asyncio.run(hook.get_job_status(run)) == CANCELLED
    with pytest.raises(Exception, match="404"):
        hook.get_job_run_status(run + 1)


def test_a_cause_over_255_characters_is_refused(dbt) -> None:
    job = dbt.create_job()
    with pytest.raises(Exception, match="400"):
        DbtCloudHook()._run_and_get_response(
            method="POST",
            endpoint=f"{dbt.account_id}/jobs/{job}/run/",
            payload='{"cause": "' + "x" * 256 + '"}',
        )
    assert dbt.runs == []
