"""The resumable BigQuery operator on a real Airflow (``dag.test()``), through the google provider's real
``BigQueryHook`` (``google-cloud-bigquery``'s REST client) against the loopback BigQuery emulator
(``resumable.testing.bigquery``).

What a user checks: how many jobs BigQuery saw, which job the task reported, the task's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip(
    "airflow.providers.google.cloud.operators.bigquery",
    reason="the google provider is not installed (its release with the job contract needs Python 3.11+)",
)

#: Every row on Airflow 3.3; on the oldest version those marked core_row (see the Makefile).
pytestmark = pytest.mark.oldest_airflow

from resumable.errors import ResumableError  # noqa: E402
from resumable.job import JobHandle, JobState  # noqa: E402
from resumable.operators.bigquery import (  # noqa: E402
    ResumableBigQueryInsertJobOperator,
    job_id_for,
)
from resumable.testing.airflow import clear_and_rerun, run_dag, task_states  # noqa: E402
from resumable.testing.bigquery import BigQueryEmulator, JobScript  # noqa: E402
from tests.helpers import (  # noqa: E402
    EVERY_TRIGGER_STOP,
    PERSONS_STOP,
    new_dag,
    on_the_retrys_first_look,
    raised_by,
    stop_deferred_task,
)

QUERY = {"query": {"query": "INSERT INTO sales.daily SELECT * FROM sales.staging", "useLegacySql": False}}


@pytest.fixture
def bq(airflow_db: str) -> Iterator[BigQueryEmulator]:
    """The emulator as ``google_cloud_default``, 40 emulated seconds a second; jobs take 4 of them."""
    emulator = BigQueryEmulator(speed=40.0, default_script=JobScript(duration=4.0, queued=1.0))
    with emulator as emu, emu.use_as():
        yield emu


def make(bq: BigQueryEmulator, **kwargs: Any) -> tuple[Any, ResumableBigQueryInsertJobOperator]:
    kwargs.setdefault("configuration", QUERY)
    kwargs.setdefault("retries", 2)
    kwargs.setdefault("retry_delay", timedelta(0))
    kwargs.setdefault("poll_interval", 0.02)
    with new_dag("bq") as dag:
        op = ResumableBigQueryInsertJobOperator(task_id="job", **kwargs)
    return dag, op


def xcom(dag_run: Any, key: str = "return_value") -> Any:
    (ti,) = dag_run.get_task_instances()
    return ti.xcom_pull(task_ids="job", key=key)


@pytest.mark.core_row
def test_fresh_run_inserts_once_and_keeps_the_providers_results(bq) -> None:
    dag, _ = make(bq)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    (job_id,) = bq.jobs
    assert job_id.startswith("rsm-"), "the job's id is the submission's token"
    assert bq.state_of(job_id) == "DONE"
    assert xcom(dr) == job_id, "the provider's return value: the job's id"
    assert xcom(dr, "job_id_path") == f"{bq.project}:{bq.location}:{job_id}"
    assert xcom(dr, "resumable_job_url").endswith(f"j=bq:US:{job_id}&page=queryresults"), "our Job page link"
    labels = bq.job(job_id)["configuration"]["labels"]
    assert labels["airflow-task"] == "job", "the provider's labels are kept"
    assert bq.duplicates == []


@pytest.mark.core_row
def test_crash_between_insert_and_record_takes_the_job_that_exists(bq, fault) -> None:
    fault("after_submit")
    dag, _ = make(bq)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(bq.jobs) == 1, "the retry inserts with the same id and takes the job, not another"
    assert bq.duplicates == bq.jobs, "BigQuery answered the retry's insert 409"


def test_a_job_that_ended_before_the_retry_is_taken_as_it_ended(bq, fault) -> None:
    """The worker dies after the insert; the job succeeds before the retry inserts again: the 409's job
    is DONE, and the task succeeds with it (the provider's operator raises "already exists")."""
    bq.script_next(JobScript(duration=0.0, queued=0.0))
    fault("after_submit")
    dag, _ = make(bq)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(bq.jobs) == 1 and xcom(dr) == bq.jobs[0]


@pytest.mark.core_row
def test_crash_while_polling_reattaches(bq, fault) -> None:
    fault("while_polling")
    dag, _ = make(bq)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(bq.jobs) == 1 and bq.duplicates == []


def test_a_given_job_id_prefixes_the_token(bq) -> None:
    dag, _ = make(bq, job_id="daily_sales", force_rerun=True)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    (job_id,) = bq.jobs
    assert job_id.startswith("daily_sales_rsm-"), "force_rerun adds no random suffix under ours"


def test_a_job_id_bigquery_would_refuse_fails_before_anything_is_inserted(bq) -> None:
    with pytest.raises(ResumableError, match="1 to 1024 letters, digits, _ and -.*Nothing was submitted"):
        job_id_for("daily sales!", "rsm-x-1-1")
    dag, _ = make(bq, job_id="daily sales!", retries=0)
    assert task_states(run_dag(dag)) == {"job": "failed"}
    assert bq.jobs == []


def test_clear_after_success_inserts_a_new_job(bq) -> None:
    dag, _ = make(bq)
    dr = run_dag(dag)
    dr = clear_and_rerun(dag, dr)
    assert task_states(dr) == {"job": "success"}
    assert len(bq.jobs) == 2 and bq.duplicates == [], "a clear's job has an id of its own"


@pytest.mark.parametrize(
    ("on_prior_failure", "final", "jobs"), [("resubmit", "success", 2), ("fail", "failed", 1)]
)
def test_prior_failure_follows_on_prior_failure(bq, on_prior_failure, final, jobs) -> None:
    bq.script_next(JobScript(outcome="error", duration=1.0))
    dag, _ = make(bq, on_prior_failure=on_prior_failure)
    assert task_states(run_dag(dag)) == {"job": final}
    assert len(bq.jobs) == jobs
    assert bq.state_of(bq.jobs[0]) == "FAILED"


def test_throttled_and_failing_status_reads_are_retried(bq, fault) -> None:
    """The retry's first looks at the job are refused 403 rateLimitExceeded and 503 backendError (the
    client library retries those itself, and the mixin on top): nothing is inserted again or cancelled."""
    fault("while_polling")
    bq.script_next(JobScript(duration=40.0))
    dag, _ = make(bq)

    def refuse() -> None:
        bq.fail_next(3, status=403, path="{id}")
        bq.fail_next(2, status=503, path="{id}")

    with on_the_retrys_first_look(ResumableBigQueryInsertJobOperator, refuse):
        dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(bq.jobs) == 1 and bq.cancels == []
    assert bq.calls["GET jobs/{id}"] >= 6


def test_a_lost_insert_answer_is_retried_by_the_client_into_the_same_job(bq) -> None:
    """The insert reaches BigQuery but its answer is a 503: the client inserts again with the same id,
    gets 409, and the task takes the job that exists."""
    original = bq._insert

    def insert_then_fail(project: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = original(project, body)
        if len(bq.jobs) == 1 and not bq.duplicates:
            from resumable.testing.bigquery import _ApiError

            raise _ApiError(503, "backendError", "The service is temporarily unavailable.")
        return answer

    dag, _ = make(bq)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bq, "_insert", insert_then_fail)
        dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(bq.jobs) == 1 and bq.duplicates == bq.jobs


def test_an_unknown_job_is_not_found_and_a_cancel_stops_a_job(bq) -> None:
    bq.script_next(JobScript(duration=float("inf")))
    _, op = make(bq)
    handle = op.submit_job({}, "rsm-test-token")
    assert op.get_job_status(JobHandle(op.job_system, "no-such-job")).state is JobState.NOT_FOUND
    assert op.get_job_status(handle).state.is_active
    op.cancel_job(handle)
    assert bq.cancels == [handle.job_id]
    bq.advance(5)
    status = op.get_job_status(handle)
    assert status.state is JobState.CANCELLED and "cancelled" in status.message


@pytest.mark.core_row
def test_deferrable_waits_in_the_providers_trigger(bq) -> None:
    bq.script_next(JobScript(duration=100.0, queued=0.0))
    dag, _ = make(bq, deferrable=True, poll_interval=1)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    (job_id,) = bq.jobs
    assert bq.state_of(job_id) == "DONE" and xcom(dr) == job_id
    assert len(bq.polls[job_id]) >= 3, "the trigger polled the job"


@pytest.mark.core_row
def test_deferrable_records_the_job_before_deferring(bq, fault) -> None:
    bq.script_next(JobScript(duration=400.0, queued=0.0))
    fault("after_submit")
    dag, _ = make(bq, deferrable=True, poll_interval=1)
    assert task_states(run_dag(dag)) == {"job": "success"}
    assert len(bq.jobs) == 1


def test_a_failed_job_fails_the_deferred_task(bq) -> None:
    bq.script_next(JobScript(outcome="error", duration=20.0, queued=0.0))
    dag, _ = make(bq, deferrable=True, poll_interval=1, retries=0)
    assert task_states(run_dag(dag)) == {"job": "failed"}
    assert len(bq.jobs) == 1


@EVERY_TRIGGER_STOP
@PERSONS_STOP
def test_a_deferred_jobs_trigger_cancels_it_only_on_a_persons_stop(
    bq, monkeypatch, before_3_3, state, cancelled
) -> None:
    bq.script_next(JobScript(duration=float("inf"), queued=0.0))
    _, op = make(bq)
    handle = op.submit_job({}, "rsm-deferred")
    path, kwargs = op.job_trigger({}, handle).serialize()
    assert path == "resumable.operators.bigquery.ResumableBigQueryInsertJobTrigger"
    stop_deferred_task(path, kwargs, monkeypatch, state=state, before_3_3=before_3_3)
    assert bq.cancels == ([handle.job_id] if cancelled else [])
    if cancelled:
        bq.advance(5)
        assert bq.state_of(handle.job_id) == "CANCELLED"


def test_the_providers_cancel_on_kill_booleans_are_read_as_ours(bq) -> None:
    _, keeps = make(bq, cancel_on_kill=False)
    _, cancels = make(bq, cancel_on_kill=True)
    assert keeps.cancel_on_kill.value == "never"
    assert cancels.cancel_on_kill.value == "user_stop"
    assert cancels.durable is False, "the provider's own resuming is off: one record, ours"


def test_a_cancel_whose_answer_never_comes_fails_after_its_timeout_and_cancels_the_job(bq) -> None:
    """A stalled control plane holds the cancel's answer: the call gives up after its timeout (with the
    client's default it would wait without end, holding a trigger or a ``clear --cancel-job``), and the
    cancel BigQuery took still stops the job."""
    from google.api_core.exceptions import RetryError

    from resumable.operators.bigquery import bigquery_hook, cancel_bigquery_job, is_transient

    bq.script_next(JobScript(duration=float("inf")))
    _, op = make(bq)
    handle = op.submit_job({}, "rsm-test-token")
    bq.cancel_delay = 3600.0
    hook = bigquery_hook(op)
    error = raised_by(lambda: cancel_bigquery_job(hook, handle.job_id, op.project_id, None, timeout=2.0), 120)
    assert isinstance(error, RetryError) and "Timeout of 2.0s exceeded" in str(error)
    assert "Read timed out" in str(error)
    assert is_transient(error)  # a stop that was not taken is asked again, within the stop's budget
    assert bq.cancels[0] == handle.job_id
    bq.cancel_delay = 0.0
    bq.advance(5)
    assert op.get_job_status(handle).state is JobState.CANCELLED
