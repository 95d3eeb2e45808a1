"""The resumable Snowflake SQL API operator on a real Airflow (``dag.test()``), through the snowflake
provider's real ``SnowflakeSqlApiHook`` against the loopback SQL API emulator
(``resumable.testing.snowflake``).

What a user checks: how many times Snowflake executed the SQL, which statements the task reported,
the task's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import tenacity

pytest.importorskip(
    "airflow.providers.snowflake.operators.snowflake",
    reason="the snowflake provider is not installed (its job-contract release needs Python 3.11+)",
)

#: Every row on Airflow 3.3; on the oldest version those marked core_row (see the Makefile).
pytestmark = pytest.mark.oldest_airflow

from resumable.job import JobHandle, JobState  # noqa: E402
from resumable.operators.snowflake import (  # noqa: E402
    ResumableSnowflakeSqlApiOperator,
    request_id_for,
)
from resumable.testing.airflow import clear_and_rerun, run_dag, task_states  # noqa: E402
from resumable.testing.snowflake import SnowflakeEmulator, StatementScript  # noqa: E402
from tests.helpers import (  # noqa: E402
    EVERY_TRIGGER_STOP,
    PERSONS_STOP,
    new_dag,
    on_the_retrys_first_look,
    raised_by,
    stop_deferred_task,
)

SQL = "INSERT INTO sales.daily SELECT * FROM sales.staging"
#: The hook's own retries, fast (its default waits seconds between tries).
FAST_RETRIES = {"stop": tenacity.stop_after_attempt(4), "wait": tenacity.wait_none()}


@pytest.fixture
def sf(airflow_db: str) -> Iterator[SnowflakeEmulator]:
    """The emulator as ``snowflake_default``, 40 emulated seconds a second; statements take 4 of them."""
    emulator = SnowflakeEmulator(speed=40.0, default_script=StatementScript(duration=4.0))
    with emulator as emu, emu.use_as(), emu.patch_hook():
        yield emu


def make(sf: SnowflakeEmulator, **kwargs: Any) -> tuple[Any, ResumableSnowflakeSqlApiOperator]:
    kwargs.setdefault("sql", SQL)
    kwargs.setdefault("statement_count", 1)
    kwargs.setdefault("retries", 2)
    kwargs.setdefault("retry_delay", timedelta(0))
    kwargs.setdefault("poll_interval", 0.02)
    kwargs.setdefault("snowflake_api_retry_args", FAST_RETRIES)
    with new_dag("sf") as dag:
        op = ResumableSnowflakeSqlApiOperator(task_id="job", **kwargs)
    return dag, op


def xcom(dag_run: Any, key: str = "return_value") -> Any:
    (ti,) = dag_run.get_task_instances()
    return ti.xcom_pull(task_ids="job", key=key)


@pytest.mark.core_row
def test_fresh_run_executes_once_and_keeps_the_providers_xcom(sf) -> None:
    dag, _ = make(sf)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    (handle,) = sf.handles
    assert sf.state_of(handle) == "succeeded"
    assert xcom(dr, "query_ids") == [handle], "the provider's XCom: the statement handles"
    assert sf.retried == []


@pytest.mark.core_row
def test_crash_between_request_and_record_gets_the_first_execution_back(sf, fault) -> None:
    fault("after_submit")
    dag, _ = make(sf)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(sf.handles) == 1, "the retry's request (same requestId, retry=true) executes nothing"
    assert len(sf.retried) == 1
    assert xcom(dr, "query_ids") == sf.handles


@pytest.mark.core_row
def test_crash_while_polling_reattaches(sf, fault) -> None:
    fault("while_polling")
    dag, _ = make(sf)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(sf.handles) == 1 and sf.retried == []


def test_the_request_id_is_the_tokens_and_a_clear_gets_a_new_one(sf) -> None:
    dag, _ = make(sf)
    dr = run_dag(dag)
    dr = clear_and_rerun(dag, dr)
    assert task_states(dr) == {"job": "success"}
    assert len(sf.handles) == 2
    first, second = (sf.execution(h)["request_id"] for h in sf.handles)
    assert first != second, "a clear's request has a token of its own"
    assert request_id_for("rsm-x-1-1") == request_id_for("rsm-x-1-1") != request_id_for("rsm-x-1-2")


def test_a_multi_statement_request_is_one_execution(sf, fault) -> None:
    fault("after_submit")
    dag, _ = make(sf, sql="DELETE FROM t; INSERT INTO t SELECT 1;", statement_count=2)
    assert task_states(run_dag(dag)) == {"job": "success"}
    (handle,) = sf.handles
    assert sf.execution(handle)["statement_count"] == 2


@pytest.mark.parametrize(
    ("on_prior_failure", "final", "runs"), [("resubmit", "success", 2), ("fail", "failed", 1)]
)
def test_prior_failure_follows_on_prior_failure(sf, on_prior_failure, final, runs) -> None:
    sf.script_next(StatementScript(outcome="error", duration=1.0))
    dag, _ = make(sf, on_prior_failure=on_prior_failure)
    assert task_states(run_dag(dag)) == {"job": final}
    assert len(sf.handles) == runs
    assert sf.state_of(sf.handles[0]) == "failed"


def test_throttled_and_failing_status_reads_are_retried(sf, fault) -> None:
    """The retry's first looks at the statement are refused 429 and 503 past the hook's own tries: the
    mixin retries them; nothing is executed again or cancelled."""
    fault("while_polling")
    sf.script_next(StatementScript(duration=40.0))
    dag, _ = make(sf, status_retry_attempts=8)

    def refuse() -> None:
        sf.fail_next(5, status=429, path="{handle}")
        sf.fail_next(3, status=503, path="{handle}")

    with on_the_retrys_first_look(ResumableSnowflakeSqlApiOperator, refuse):
        dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    assert len(sf.handles) == 1 and sf.cancels == []
    assert sf.calls["GET statements/{handle}"] >= 9


def test_an_unknown_statement_is_not_found_and_a_cancel_stops_a_statement(sf) -> None:
    sf.script_next(StatementScript(duration=float("inf")))
    _, op = make(sf)
    handle = op.submit_job({}, "rsm-test-token")
    assert op.get_job_status(JobHandle(op.job_system, "no-such-handle")).state is JobState.NOT_FOUND
    assert op.get_job_status(handle).state.is_active
    op.cancel_job(handle)
    assert sf.cancels == [handle.job_id]
    sf.advance(5)
    status = op.get_job_status(handle)
    assert status.state is JobState.CANCELLED and "canceled" in status.message


def test_a_cancel_whose_answer_never_comes_fails_after_its_timeouts_and_cancels_the_statement(
    sf, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stalled control plane holds the cancel's answer: the deferred task's trigger, stopping its
    statement for a person, gives up after ``CANCEL_TIMEOUT`` a request and the provider's tries (the
    provider's hook would wait without end) with a transient error, and the cancel Snowflake took still
    stops the statement."""
    import asyncio

    import requests

    from resumable.operators import snowflake as snowflake_operators

    monkeypatch.setattr(snowflake_operators, "CANCEL_TIMEOUT", 2)  # 30 s otherwise
    sf.script_next(StatementScript(duration=float("inf")))
    _, op = make(sf)
    handle = op.submit_job({}, "rsm-test-token")
    trigger = op.job_trigger({}, handle)
    sf.cancel_delay = 3600.0
    error = raised_by(lambda: asyncio.run(trigger.stop_for_a_person()), 180)  # the provider's 5 tries
    assert isinstance(error, requests.exceptions.Timeout) and trigger.stop_worth_retrying(error)
    assert sf.cancels[0] == handle.job_id
    sf.cancel_delay = 0.0
    sf.advance(5)
    assert op.get_job_status(handle).state is JobState.CANCELLED


@pytest.mark.core_row
def test_deferrable_waits_in_the_providers_trigger(sf) -> None:
    sf.script_next(StatementScript(duration=100.0))
    dag, _ = make(sf, deferrable=True, poll_interval=1)
    dr = run_dag(dag)
    assert task_states(dr) == {"job": "success"}
    (handle,) = sf.handles
    assert sf.state_of(handle) == "succeeded"
    assert len(sf.polls[handle]) >= 3, "the trigger polled the statement"


@pytest.mark.core_row
def test_deferrable_records_the_statement_before_deferring(sf, fault) -> None:
    sf.script_next(StatementScript(duration=400.0))
    fault("after_submit")
    dag, _ = make(sf, deferrable=True, poll_interval=1)
    assert task_states(run_dag(dag)) == {"job": "success"}
    assert len(sf.handles) == 1


@EVERY_TRIGGER_STOP
@PERSONS_STOP
def test_a_deferred_statements_trigger_cancels_it_only_on_a_persons_stop(
    sf, monkeypatch, before_3_3, state, cancelled
) -> None:
    sf.script_next(StatementScript(duration=float("inf")))
    _, op = make(sf)
    handle = op.submit_job({}, "rsm-deferred")
    path, kwargs = op.job_trigger({}, handle).serialize()
    assert path == "resumable.operators.snowflake.ResumableSnowflakeSqlApiTrigger"
    stop_deferred_task(path, kwargs, monkeypatch, state=state, before_3_3=before_3_3)
    assert sf.cancels == ([handle.job_id] if cancelled else [])
    if cancelled:
        sf.advance(5)
        assert sf.state_of(handle.job_id) == "cancelled"


def test_the_providers_cancel_on_kill_booleans_are_read_as_ours(sf) -> None:
    _, keeps = make(sf, cancel_on_kill=False)
    _, cancels = make(sf, cancel_on_kill=True)
    assert keeps.cancel_on_kill.value == "never"
    assert cancels.cancel_on_kill.value == "user_stop"
    assert cancels.durable is False, "the provider's own resuming is off: one record, ours"
