"""The resume decision table of ``docs/concepts.md``, row for row, and its "who asked?" kill rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from resumable.errors import RecordError
from resumable.job import JobHandle, JobState, JobStatus
from resumable.protocol import (
    DELETED,
    STOP_CLEARED,
    Action,
    CancelOnKill,
    Facts,
    KillFacts,
    PriorFailure,
    decide,
    decide_kill,
)
from resumable.record import Phase, Record, Reuse

LINEAGE = 3
HANDLE = JobHandle("fake", "42")


def record(
    phase: Phase | None,
    *,
    lineage: int = LINEAGE,
    stop_reason: str | None = None,
    last: JobState | None = None,
) -> Record | None:
    if phase is None:
        return None
    return Record(
        lineage=lineage,
        owner=1,
        seq=1,
        phase=phase,
        token="rsm-x-3-1",
        operator="tests.Op",
        handle=None if phase is Phase.SUBMITTING else HANDLE,
        last_status=JobStatus(last) if last else None,
        stop_reason=stop_reason,
    )


def status(state: JobState | None) -> JobStatus | None:
    return None if state is None else JobStatus(state)


S, A = JobState, Action
SUBMITTING, SUBMITTED, DONE = Phase.SUBMITTING, Phase.SUBMITTED, Phase.DONE
P = PriorFailure

# (record phase, external job, on_prior_failure, same lineage -> (action, reuse token), new lineage -> ...)
TABLE = [
    # record none: submit (write intent first)
    (None, None, P.RESUBMIT, (A.SUBMIT, False), (A.SUBMIT, False)),
    # submitting, found by token/discovery: continue as submitted with the found job
    (SUBMITTING, S.RUNNING, P.RESUBMIT, (A.REATTACH, False), (A.REATTACH, False)),
    (SUBMITTING, S.PENDING, P.RESUBMIT, (A.REATTACH, False), (A.REATTACH, False)),
    (SUBMITTING, S.SUCCEEDED, P.RESUBMIT, (A.FINISH, False), (A.SUBMIT, False)),
    (SUBMITTING, S.FAILED, P.RESUBMIT, (A.SUBMIT, False), (A.SUBMIT, False)),
    (SUBMITTING, S.FAILED, P.FAIL, (A.FAIL, False), (A.SUBMIT, False)),
    # submitting, not found: the record's own token in any lineage (the service hands back the job
    # it already has; what that job is then decides), never a second copy beside a running first
    (SUBMITTING, None, P.RESUBMIT, (A.SUBMIT, True), (A.SUBMIT, True)),
    (SUBMITTING, S.NOT_FOUND, P.FAIL, (A.SUBMIT, True), (A.SUBMIT, True)),
    # submitted, active: reattach and take ownership
    (SUBMITTED, S.PENDING, P.RESUBMIT, (A.REATTACH, False), (A.REATTACH, False)),
    (SUBMITTED, S.RUNNING, P.FAIL, (A.REATTACH, False), (A.REATTACH, False)),
    # ... unless it is on its way out (being cancelled): wait until it has stopped, then decide again
    (SUBMITTED, S.STOPPING, P.FAIL, (A.AWAIT_STOP, False), (A.AWAIT_STOP, False)),
    (SUBMITTING, S.STOPPING, P.RESUBMIT, (A.AWAIT_STOP, False), (A.AWAIT_STOP, False)),
    # submitted/done, succeeded: finish with the job's result; a clear means rerun
    (SUBMITTED, S.SUCCEEDED, P.RESUBMIT, (A.FINISH, False), (A.SUBMIT, False)),
    (DONE, S.SUCCEEDED, P.FAIL, (A.FINISH, False), (A.SUBMIT, False)),
    # submitted/done, failed or cancelled: on_prior_failure in a retry, resubmit after a clear
    (SUBMITTED, S.FAILED, P.RESUBMIT, (A.SUBMIT, False), (A.SUBMIT, False)),
    (SUBMITTED, S.FAILED, P.FAIL, (A.FAIL, False), (A.SUBMIT, False)),
    (SUBMITTED, S.FAILED, P.REPAIR, (A.REPAIR, False), (A.SUBMIT, False)),
    (DONE, S.CANCELLED, P.RESUBMIT, (A.SUBMIT, False), (A.SUBMIT, False)),
    (DONE, S.CANCELLED, P.FAIL, (A.FAIL, False), (A.SUBMIT, False)),
    (DONE, S.FAILED, P.REPAIR, (A.REPAIR, False), (A.SUBMIT, False)),
    # submitted, not found (expired, deleted): resubmit
    (SUBMITTED, S.NOT_FOUND, P.FAIL, (A.SUBMIT, False), (A.SUBMIT, False)),
]


@pytest.mark.parametrize(("phase", "job", "policy", "retry", "cleared"), TABLE)
def test_decision_table_row(phase, job, policy, retry, cleared) -> None:
    for lineage, expected in ((LINEAGE, retry), (LINEAGE + 2, cleared)):
        rec = record(phase, last=job if phase is DONE else None)
        decision = decide(rec, status(job) if phase is not DONE else None, Facts(lineage, 2, policy))
        assert (decision.action, decision.reuse_token) == expected, decision.reason
        assert decision.reason


def test_unreadable_record_fails_in_both_lineages_and_never_submits() -> None:
    error = RecordError("the record is corrupt")
    for lineage in (LINEAGE, LINEAGE + 1):
        decision = decide(error, None, Facts(lineage, 2))
        assert decision.action is Action.FAIL
        assert "corrupt" in decision.reason


@pytest.mark.parametrize(
    ("job", "action"),
    [
        (
            S.RUNNING,
            A.AWAIT_STOP,
        ),  # the cancel was asked for but has not shown yet: wait, never run beside it
        (S.STOPPING, A.AWAIT_STOP),
        (S.CANCELLED, A.SUBMIT),
        (S.SUCCEEDED, A.SUBMIT),  # it finished before the cancel landed: a clear still means rerun
        (S.NOT_FOUND, A.SUBMIT),
    ],
)
def test_job_cancelled_because_a_person_cleared_the_running_task_is_rerun(job, action) -> None:
    # Clearing a running task keeps max_tries (same lineage) but means "run again".
    rec = record(SUBMITTED, stop_reason=STOP_CLEARED)
    decision = decide(rec, status(job), Facts(LINEAGE, 2, PriorFailure.FAIL))
    assert (decision.action, decision.reuse_token) == (action, False), decision.reason


@pytest.mark.parametrize("reason", ["timeout", "wait_limit", "user_stop", "cleared", "killed"])
def test_a_cancel_request_is_not_an_outcome_the_next_attempt_waits_for_the_job(reason) -> None:
    rec = record(SUBMITTED, stop_reason=reason)
    assert decide(rec, status(S.STOPPING), Facts(LINEAGE, 2)).action is A.AWAIT_STOP
    # still running: a person's stop is asked again; a spent budget's is not (the retry has its own)
    still = decide(rec, status(S.RUNNING), Facts(LINEAGE, 2)).action
    assert still is (A.AWAIT_STOP if reason in ("user_stop", "cleared", "killed") else A.REATTACH)
    after = decide(record(DONE, stop_reason=reason, last=S.CANCELLED), None, Facts(LINEAGE, 2))
    assert (after.action, after.reuse_token) == (A.SUBMIT, False)


def test_lowering_retries_before_a_clear_is_still_a_clear() -> None:
    # retries 2 -> max_tries 2 at try 1; retries lowered to 1 and cleared at try 1: max_tries 1 + 1 = 2.
    done = replace(record(DONE, last=S.SUCCEEDED), lineage=2, retries=2, clear_number=0)  # type: ignore[arg-type]
    assert decide(done, None, Facts(2, 2, retries=1, clear_number=1)).action is A.SUBMIT
    # ... and raised again before the next try ran: the clear counter still tells
    assert decide(done, None, Facts(2, 2, retries=2, clear_number=1)).action is A.SUBMIT
    # A DAG file that changed retries while the task was being retried (no clear) is still a retry.
    assert decide(done, None, Facts(2, 2, retries=1, clear_number=0)).action is A.FINISH
    # Without a clear counter (it is unknown), the first try after a clear is told by its numbers.
    unknown = replace(done, clear_number=None)
    assert decide(unknown, None, Facts(2, 2, retries=1)).action is A.SUBMIT
    assert decide(unknown, None, Facts(2, 2, retries=2)).action is A.FINISH
    # The attempt's own writes are its lineage's ...
    own = replace(done, owner=2, clear_number=1)
    assert decide(own, None, Facts(2, 2, retries=1, clear_number=1)).action is A.FINISH
    assert decide(replace(own, clear_number=None), None, Facts(2, 2, retries=1)).action is A.FINISH


def test_a_record_this_attempt_took_over_from_a_cleared_lineage_stays_that_lineages() -> None:
    # A clear of the running task raises the clear counter and leaves max_tries alone; the next try
    # waits for the cleared lineage's job to stop with its own try number on the record (or claims
    # it), and then decides again: the job is still the cleared lineage's, so the clear reruns it.
    taken = replace(record(DONE, last=S.CANCELLED), owner=2, clear_number=0)  # type: ignore[arg-type]
    assert decide(taken, None, Facts(LINEAGE, 2, P.FAIL, retries=0, clear_number=1)).action is A.SUBMIT
    succeeded = replace(taken, last_status=JobStatus(S.SUCCEEDED))
    assert decide(succeeded, None, Facts(LINEAGE, 2, retries=0, clear_number=1)).action is A.SUBMIT
    # the same record in the lineage it was written in: a retry
    assert decide(taken, None, Facts(LINEAGE, 2, P.FAIL, retries=0, clear_number=0)).action is A.FAIL


def test_a_job_cancelled_by_a_cleared_attempt_whose_record_was_out_of_reach_is_rerun() -> None:
    # airflow backend: the cleared attempt cancelled the job but could not write why.
    rec = replace(record(SUBMITTED), clear_number=0)  # type: ignore[arg-type]
    assert decide(rec, status(S.CANCELLED), Facts(LINEAGE, 2, P.FAIL, clear_number=1)).action is A.SUBMIT
    assert decide(rec, status(S.CANCELLED), Facts(LINEAGE, 2, P.FAIL, clear_number=0)).action is A.FAIL


def _reused(at: str, *, lineage: int = LINEAGE + 2, owner: int = 3, clear_number: int = 1) -> Record:
    """Lineage 3's record (clear 0) whose token lineage 5 (try 3, clear 1) submitted with at ``at``."""
    rec = replace(record(SUBMITTED), clear_number=0)  # type: ignore[arg-type]
    return replace(rec, reuse=Reuse(at=at, lineage=lineage, owner=owner, clear_number=clear_number))


INTENT = "2026-12-06T10:00:00.000000+00:00"


def _created(state: JobState, at: str) -> JobStatus:
    return JobStatus(state, created_at=datetime.fromisoformat(at))


@pytest.mark.parametrize("state", [S.SUCCEEDED, S.FAILED])
def test_a_job_created_after_a_lineages_same_token_intent_is_that_lineages(state: JobState) -> None:
    """After a clear, try 3 submitted with the cleared lineage's token and the service created a job; try 3
    died before it looked at it. Its retry (try 4, same lineage) takes the job for its own: no rerun."""
    rec = _reused(INTENT)
    after = _created(state, "2026-12-06T10:00:01+00:00")
    facts = Facts(LINEAGE + 2, 4, P.FAIL, retries=1, clear_number=1)
    assert decide(rec, after, facts).action is (A.FINISH if state is S.SUCCEEDED else A.FAIL)
    assert "created by this lineage" in decide(rec, after, facts).reason


def test_a_job_created_before_the_same_token_intent_is_the_cleared_lineages_and_is_rerun() -> None:
    rec = _reused(INTENT)
    facts = Facts(LINEAGE + 2, 4, P.FAIL, retries=1, clear_number=1)
    long_before = _created(S.SUCCEEDED, "2026-12-06T09:58:00+00:00")
    assert decide(rec, long_before, facts).action is A.SUBMIT
    # within the clocks' allowed disagreement it counts as created after
    assert decide(rec, _created(S.SUCCEEDED, "2026-12-06T09:59:59+00:00"), facts).action is A.FINISH
    # unless that is more than half the time since the cleared lineage last wrote the record: a clear
    # that came at once (a script) reruns the job its try created a moment before
    assert rec.reuse is not None
    quick = replace(rec, reuse=replace(rec.reuse, after="2026-12-06T09:59:59.000000+00:00"))
    assert decide(quick, _created(S.SUCCEEDED, "2026-12-06T09:59:59.100000+00:00"), facts).action is A.SUBMIT
    assert decide(quick, _created(S.SUCCEEDED, "2026-12-06T09:59:59.600000+00:00"), facts).action is A.FINISH
    # a service that does not say when it created the job: the record's lineage decides (rerun)
    assert decide(rec, JobStatus(S.SUCCEEDED), facts).action is A.SUBMIT


def test_a_running_job_is_inherited_only_from_another_lineage() -> None:
    """Which reattachment adopts a cleared lineage's job (the mixin tells the rest of the attempt so)."""
    facts = Facts(LINEAGE + 2, 4, P.FAIL, retries=1, clear_number=1)
    retry = decide(record(SUBMITTED), status(S.RUNNING), Facts(LINEAGE, 2))
    cleared = decide(record(SUBMITTED), status(S.RUNNING), facts)
    own = decide(_reused(INTENT), _created(S.RUNNING, "2026-12-06T10:00:01+00:00"), facts)
    assert [(d.action, d.inherited) for d in (retry, cleared, own)] == [
        (A.REATTACH, False),
        (A.REATTACH, True),
        (A.REATTACH, False),
    ]


def test_a_same_token_intent_of_yet_another_lineage_does_not_make_the_job_this_ones() -> None:
    rec = _reused(INTENT)  # lineage 5, clear 1 reused the token; a second clear makes clear 2
    after = _created(S.SUCCEEDED, "2026-12-06T10:00:01+00:00")
    assert decide(rec, after, Facts(LINEAGE + 4, 5, retries=1, clear_number=2)).action is A.SUBMIT


def test_a_record_with_a_reuse_and_a_status_with_a_creation_time_survive_json() -> None:
    rec = replace(_reused(INTENT), last_status=_created(S.SUCCEEDED, "2026-12-06T10:00:01+00:00"))
    back = Record.from_json(rec.to_json(), where="here", clear_hint="clear it")
    assert back == rec
    old = {k: v for k, v in rec.to_json().items() if k != "reuse"}  # a record written before this field
    assert Record.from_json(old, where="here", clear_hint="clear it").reuse is None


def test_a_creation_time_is_read_from_what_the_services_say() -> None:
    assert JobStatus(S.RUNNING).created(1_700_000_000_000).created_at == datetime.fromtimestamp(
        1_700_000_000, tz=timezone.utc
    )
    naive = datetime(2026, 12, 6, 10, 0)
    assert JobStatus(S.RUNNING).created(naive).created_at == naive.replace(tzinfo=timezone.utc)
    assert JobStatus(S.RUNNING).created(None).created_at is None
    assert JobStatus(S.RUNNING).created("yesterday").created_at is None


def test_a_record_of_a_deleted_dag_run_with_the_same_run_id_is_not_this_runs() -> None:
    rec = replace(record(DONE, last=S.SUCCEEDED), run_after="2026-01-01T00:00:00+00:00")  # type: ignore[arg-type]
    decision = decide(rec, None, Facts(LINEAGE, 1, run_after="2026-01-02T00:00:00+00:00"))
    assert (decision.action, decision.reuse_token, decision.cancel_previous) == (A.SUBMIT, False, False)
    running = replace(record(SUBMITTED), run_after="2026-01-01T00:00:00+00:00")  # type: ignore[arg-type]
    decision = decide(running, status(S.RUNNING), Facts(LINEAGE, 1, run_after="2026-01-02T00:00:00+00:00"))
    assert (decision.action, decision.cancel_previous) == (A.SUBMIT, True)


@pytest.mark.parametrize("phase", [SUBMITTING, SUBMITTED, DONE])
def test_a_stale_try_never_takes_the_job_back(phase) -> None:
    rec = replace(record(phase, last=S.SUCCEEDED), owner=3)  # type: ignore[arg-type]
    decision = decide(rec, status(S.RUNNING) if phase is not DONE else None, Facts(LINEAGE, 2))
    assert decision.action is A.STAND_DOWN


U = CancelOnKill.USER_STOP
KILL_TABLE = [
    # policy, timed out, owns the record, ti state now -> cancel?, stop reason
    (U, True, True, "running", True, "timeout"),  # execution_timeout
    (U, True, True, None, True, "timeout"),  # ... even when Airflow cannot be asked
    (U, True, True, "up_for_retry", False, None),  # a zombie's timeout before its retry started
    (U, True, True, "queued", False, None),
    (U, False, True, "failed", True, "user_stop"),  # marked failed
    (U, False, True, "success", True, "user_stop"),  # marked success
    (U, False, True, "restarting", True, STOP_CLEARED),  # cleared while running
    # no state: the scheduler reset an orphaned task instance, or a person cleared the task after it
    # had failed (a zombie thawing later): never a person's stop of this attempt
    (U, False, True, "none", False, None),
    (U, True, True, "none", False, None),
    (U, False, None, "none", False, None),
    (U, False, True, "up_for_retry", False, None),  # superseded by a newer try
    (U, False, True, "queued", False, None),
    (U, False, False, "failed", False, None),  # a newer try owns the record: fenced
    (U, True, False, "running", False, None),  # fenced even on timeout
    # a replaced attempt's execution_timeout does not count: Airflow's state decides
    (U, True, None, "running", False, None),  # a zombie timed out while its successor runs
    (U, True, None, "up_for_retry", False, None),
    (U, True, None, "restarting", True, STOP_CLEARED),
    (U, False, True, "running", False, None),  # still running: infrastructure stop
    (U, False, True, None, False, None),  # Airflow unreachable: keep
    # the record is out of reach (airflow backend, replaced task-instance id): Airflow's state decides
    (U, False, None, "restarting", True, STOP_CLEARED),  # the try that was cleared
    (U, False, None, "running", False, None),  # a zombie whose successor runs
    (U, False, None, "up_for_retry", False, None),
    (U, False, None, None, False, None),
    # the DAG run was deleted (its records with it on the airflow backend): nobody will look again
    (U, False, None, DELETED, True, "user_stop"),
    (U, False, True, DELETED, True, "user_stop"),
    (U, True, None, DELETED, True, "user_stop"),
    (U, False, False, DELETED, False, None),  # fencing first: a re-created run's try owns the record
    (CancelOnKill.NEVER, False, None, DELETED, False, None),
    (CancelOnKill.ALWAYS, False, None, "running", False, None),
    (CancelOnKill.ALWAYS, False, True, "running", True, "killed"),
    (CancelOnKill.ALWAYS, False, True, None, True, "killed"),
    (CancelOnKill.ALWAYS, False, True, "up_for_retry", False, None),  # replaced: never, whatever fired
    (CancelOnKill.ALWAYS, False, False, "running", False, None),
    (CancelOnKill.NEVER, True, True, "failed", False, None),
]


@pytest.mark.parametrize(("policy", "timed_out", "owns", "ti_state", "cancel", "stop_reason"), KILL_TABLE)
def test_kill_rule(policy, timed_out, owns, ti_state, cancel, stop_reason) -> None:
    verdict = decide_kill(KillFacts(policy, timed_out, owns, ti_state))
    assert verdict.cancel is cancel, verdict.reason
    assert verdict.stop_reason == stop_reason


@pytest.mark.parametrize(
    ("owns", "ti_state", "job_ended", "cancel"),
    [
        # a replaced attempt (a zombie, a reset task's old try) stopped after its successor reattached and
        # ended with the job: the state is the successor's, not a person's stop
        (None, "success", True, False),
        (None, "failed", True, False),
        (None, DELETED, True, False),
        (None, "restarting", True, False),
        # the job still runs: a person stopped the task (or its last try failed without it)
        (None, "success", False, True),
        (None, "failed", False, True),
        (None, "failed", None, True),  # the service did not tell: the rules decide without it
        # the attempt that owns the job decides by Airflow's state alone
        (True, "failed", True, True),
        (False, "failed", False, False),
    ],
)
def test_a_replaced_attempt_cancels_no_job_that_has_ended(owns, ti_state, job_ended, cancel) -> None:
    verdict = decide_kill(KillFacts(U, False, owns, ti_state, job_ended=job_ended))
    assert verdict.cancel is cancel, verdict.reason
