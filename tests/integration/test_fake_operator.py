"""The resume protocol on a real Airflow (``dag.test()`` on Airflow 3.3) against the fake job service.

Each test asserts what a user would check: how many jobs the service created, which job the retry
polled, what the task returned and how it ended.
"""

from __future__ import annotations

import time

import pytest

from resumable.job import JobState
from resumable.state import SqlBackend, TaskScope
from resumable.testing.airflow import clear_and_rerun, run_dag, task_states
from resumable.testing.fake import FakeJobOperator, FakeJobService


def result_of(dag_run) -> object:
    (ti,) = dag_run.get_task_instances()
    return ti.xcom_pull(task_ids="job")


def test_fresh_run_submits_once_and_returns_the_job(make_dag) -> None:
    dag, svc = make_dag()
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 1 and svc.calls["submit"] == 1
    assert result_of(dr) == {"job_id": svc.created[0], "state": "SUCCEEDED"}


def test_retry_after_crash_between_submit_and_persist_finds_the_job_by_token(make_dag, fault) -> None:
    fault("after_submit")
    dag, svc = make_dag()
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 1, "the service must see exactly one job"
    assert result_of(dr) == {"job_id": svc.created[0], "state": "SUCCEEDED"}


def test_retry_after_crash_between_submit_and_persist_discovers_the_job_without_idempotency(
    make_dag, fault
) -> None:
    fault("after_submit")
    dag, svc = make_dag(FakeJobService(idempotent=False))
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.calls["submit"] == 1 and svc.total_submissions == 1
    assert svc.calls["find"] == 1


@pytest.mark.parametrize("point", ["before_intent", "after_intent"])
def test_crash_before_submit_submits_once_on_retry(make_dag, fault, point) -> None:
    fault(point)
    dag, svc = make_dag(FakeJobService(idempotent=False))
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.calls["submit"] == 1 and svc.total_submissions == 1


def test_retry_after_crash_while_polling_reattaches_to_the_same_job(make_dag, fault) -> None:
    fault("while_polling")
    dag, svc = make_dag(FakeJobService(polls=3))
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.calls["submit"] == 1 and svc.total_submissions == 1
    assert result_of(dr) == {"job_id": svc.created[0], "state": "SUCCEEDED"}


def test_a_retry_that_reattaches_reads_the_status_once_before_it_waits(make_dag, fault) -> None:
    """The retry decides on the status it read and then waits a poll interval: a fleet's retries
    reattaching at once ask a throttled service once each, not twice (a second read straight after
    the first used up a third of a storm's capacity)."""
    fault("while_polling")
    dag, svc = make_dag(FakeJobService(polls=4), poll_interval=0.5)
    called: dict[int, float] = {}
    for n in (1, 2, 3):
        svc.when_status_called(n, lambda n=n: called.setdefault(n, time.monotonic()))
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.calls["submit"] == 1
    # Call 1: the first try's poll (it then crashes); 2: the retry's look before its decision;
    # 3: the retry's first poll, a poll interval (0.5 s, jittered by 10 % at most) later.
    assert called[3] - called[2] >= 0.45


def test_retry_after_crash_past_the_handle_write_reattaches(make_dag, fault) -> None:
    fault("after_handle")
    dag, svc = make_dag()
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.calls["submit"] == 1


def test_prior_success_in_the_same_lineage_finishes_without_submitting(make_dag, fault) -> None:
    # polls=0: the first status read says SUCCEEDED, and the attempt dies right there.
    fault("while_polling")
    dag, svc = make_dag(FakeJobService(polls=0))
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.calls["submit"] == 1
    # The same result as the fresh path gives.
    assert result_of(dr) == {"job_id": svc.created[0], "state": "SUCCEEDED"}


def test_clear_of_a_succeeded_task_submits_a_new_job(make_dag) -> None:
    dag, svc = make_dag()
    first = run_dag(dag)
    assert task_states(first) == {"job": "success"}
    second = clear_and_rerun(dag, first)  # what a person's clear does
    assert task_states(second) == {"job": "success"}
    assert svc.total_submissions == 2
    assert len(svc.submissions) == 2, "the rerun must use a new token"
    assert result_of(second) == {"job_id": svc.created[1], "state": "SUCCEEDED"}


def test_prior_failure_resubmit_submits_a_new_job(make_dag) -> None:
    dag, svc = make_dag(FakeJobService(outcomes=[JobState.FAILED]), on_prior_failure="resubmit")
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 2 and len(svc.submissions) == 2


def test_prior_failure_fail_does_not_submit_again(make_dag) -> None:
    dag, svc = make_dag(FakeJobService(outcomes=[JobState.FAILED]), on_prior_failure="fail")
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"}
    assert svc.total_submissions == 1 and svc.calls["submit"] == 1


def test_prior_failure_repair_repairs_the_same_job(make_dag) -> None:
    dag, svc = make_dag(FakeJobService(outcomes=[JobState.FAILED]), on_prior_failure="repair")
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 1 and svc.repaired == [svc.created[0]]
    assert result_of(dr) == {"job_id": svc.created[0], "state": "SUCCEEDED"}


def test_transient_status_errors_during_reattach_are_retried(make_dag, fault) -> None:
    fault("while_polling")
    dag, svc = make_dag(FakeJobService(polls=3))
    svc.when_status_called(1, lambda: svc.fail_next_calls(3))
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 1


def _record(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "v": 1,
        "lineage": 0,
        "owner": 1,
        "seq": 1,
        "phase": "submitted",
        "token": "rsm-x",
        "operator": "resumable.testing.fake.FakeJobOperator",
        "handle": {"system": "fake", "job_id": "1"},
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    ("stored", "says"),
    [
        ({"v": 1, "phase": "submitted", "garbage": True}, "is corrupt"),
        (_record(v=2), "schema version v=2"),
        (_record(operator="somewhere.OtherOperator"), "was written by somewhere.OtherOperator"),
        (_record(handle={"system": "emr-steps", "job_id": "s-1"}), "'emr-steps' job handle"),
    ],
    ids=["corrupt", "unknown-version", "another-operator", "unreadable-handle"],
)
def test_unusable_record_fails_the_task_without_submitting(
    make_dag, logical_date, monkeypatch, tmp_path, capsys, stored, says
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "sql")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", url)
    dag, svc = make_dag(retries=1)
    run_id = f"manual__{logical_date.isoformat()}"
    scope = TaskScope(dag.dag_id, run_id, "job", -1)
    SqlBackend(url).put(scope, "resumable.job", stored, None)

    dr = run_dag(dag, logical_date=logical_date)
    assert dr.run_id == run_id
    assert task_states(dr) == {"job": "failed"}
    assert svc.calls["submit"] == 0 and svc.calls["status"] == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert says in text
    assert f"python -m resumable state clear --dag-id {dag.dag_id} --run-id '{run_id}' --task-id job" in text
    # The record is kept as it was, for a person to look at.
    assert SqlBackend(url).get(scope, "resumable.job").value == stored  # type: ignore[union-attr]


def test_sql_backend_resumes_like_the_airflow_one(make_dag, fault, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "sql")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", f"sqlite:///{tmp_path / 'state.db'}")
    fault("after_submit")
    dag, svc = make_dag()
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 1


def test_a_job_found_succeeded_by_the_retry_is_recorded_done(make_dag, fault, monkeypatch, tmp_path) -> None:
    """The first try dies at its first status read, which says SUCCEEDED; the retry finishes with the job
    (no submit) and records the outcome: the record is done and owned by the retry, not "submitted" by
    the try that died."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "sql")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", url)
    fault("while_polling")
    dag, svc = make_dag(FakeJobService(polls=0))
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.calls["submit"] == 1
    stored = SqlBackend(url).get(TaskScope(dag.dag_id, dr.run_id, "job", -1), "resumable.job")
    assert stored is not None
    assert (stored.value["phase"], stored.value["owner"]) == ("done", 2)
    assert stored.value["last_status"]["state"] == "SUCCEEDED"


def test_deferrable_run_records_the_job_before_deferring(make_dag) -> None:
    dag, svc = make_dag(deferrable=True)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 1
    assert result_of(dr) == {"job_id": svc.created[0], "state": "SUCCEEDED"}


def test_deferrable_worker_lost_between_submit_and_defer_reattaches(make_dag, fault) -> None:
    fault("after_handle")
    dag, svc = make_dag(deferrable=True)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.calls["submit"] == 1


def test_wait_limit_cancels_the_job_and_fails_the_attempt(make_dag, monkeypatch) -> None:
    monkeypatch.setattr(FakeJobOperator, "wait_limit", lambda self: 0.05)
    dag, svc = make_dag(FakeJobService(polls=10_000), retries=0)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "failed"}
    assert svc.cancelled == svc.created and len(svc.created) == 1


def test_not_waiting_returns_right_after_submit_and_announces_the_job(make_dag, monkeypatch) -> None:
    announced: list[str] = []
    monkeypatch.setattr(FakeJobOperator, "waits_for_job", lambda self: False)
    monkeypatch.setattr(
        FakeJobOperator, "announce_job", lambda self, ctx, handle: announced.append(handle.job_id)
    )
    dag, svc = make_dag(FakeJobService(polls=10_000))
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 1 and announced == svc.created
    assert svc.jobs[svc.created[0]].state.is_active, "the job was left running, as asked"


def test_repair_in_attempt_repairs_once_and_waits_for_the_repair(make_dag, monkeypatch) -> None:
    monkeypatch.setattr(FakeJobOperator, "repair_in_attempt", lambda self, ctx, handle, status: True)
    dag, svc = make_dag(FakeJobService(outcomes=[JobState.FAILED]), retries=0)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert svc.total_submissions == 1 and svc.repaired == svc.created
