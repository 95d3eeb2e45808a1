"""The BigQuery emulator, through the google provider's real hook (``google-cloud-bigquery``'s client):
the behaviour the operator's tests rely on (caller-chosen ids with 409 on a repeat, states on the
emulated clock, asynchronous cancel, errors in BigQuery's envelope with the reasons the client retries)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip(
    "airflow.providers.google.cloud.hooks.bigquery",
    reason="the google provider is not installed (its job-contract release needs Python 3.11+)",
)

from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook  # noqa: E402
from google.api_core import exceptions  # noqa: E402

from resumable.testing.bigquery import BigQueryEmulator, JobScript  # noqa: E402

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}


@pytest.fixture
def bq() -> Iterator[BigQueryEmulator]:
    with BigQueryEmulator(manual_clock=True) as emu, emu.use_as():
        yield emu


def insert(hook: BigQueryHook, job_id: str) -> object:
    return hook.insert_job(configuration=QUERY, job_id=job_id, project_id=hook.project_id, nowait=True)


def test_a_job_id_is_taken_once_and_a_repeat_gets_409(bq) -> None:
    hook = BigQueryHook()
    assert hook.project_id == bq.project
    insert(hook, "rsm-one")
    with pytest.raises(exceptions.Conflict, match="Already Exists: Job emulated-project:US.rsm-one"):
        insert(hook, "rsm-one")
    assert bq.jobs == ["rsm-one"] and bq.duplicates == ["rsm-one"]


def test_states_follow_the_clock_and_a_query_result_waits_for_the_end(bq) -> None:
    bq.script_next(JobScript(duration=5, queued=1), JobScript(outcome="error", duration=1, queued=0))
    hook = BigQueryHook()
    insert(hook, "rsm-ok")
    insert(hook, "rsm-bad")
    assert hook.get_job(job_id="rsm-ok").state == "PENDING"
    bq.advance(2)
    assert hook.get_job(job_id="rsm-ok").state == "RUNNING"
    bq.advance(5)
    done = hook.get_job(job_id="rsm-ok")
    assert (done.state, done.error_result) == ("DONE", None)
    assert list(done.result()) == [], "getQueryResults answers the ended query"
    failed = hook.get_job(job_id="rsm-bad")
    assert failed.state == "DONE" and failed.error_result["reason"] == "invalidQuery"
    assert bq.compute_seconds("rsm-ok") == 5.0


def test_a_cancel_shows_after_cancel_seconds_as_stopped(bq) -> None:
    bq.script_next(JobScript(duration=float("inf")))
    hook = BigQueryHook()
    insert(hook, "rsm-long")
    hook.get_client(project_id=bq.project).cancel_job("rsm-long")
    assert bq.cancels == ["rsm-long"] and hook.get_job(job_id="rsm-long").state != "DONE"
    bq.advance(bq.cancel_seconds)
    assert hook.get_job(job_id="rsm-long").error_result["reason"] == "stopped"
    assert bq.state_of("rsm-long") == "CANCELLED"


def test_errors_come_in_bigquerys_envelope_and_the_client_retries_the_transient_ones(bq) -> None:
    hook = BigQueryHook()
    with pytest.raises(exceptions.NotFound, match="Not found: Job emulated-project:US.missing"):
        hook.get_job(job_id="missing")
    insert(hook, "rsm-x")
    bq.fail_next(1, status=403, path="{id}")  # rateLimitExceeded
    bq.fail_next(1, status=503, path="{id}")  # backendError
    assert hook.get_job(job_id="rsm-x").job_id == "rsm-x"
    assert bq.calls["GET jobs/{id}"] == 4  # the NotFound, two refused, one answered
