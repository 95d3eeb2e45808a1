"""The resume decision: a pure function from (record, job status, task facts) to one action.

It is the decision table of ``docs/concepts.md`` ("The resume decision") in code;
``tests/unit/test_protocol.py`` is the same table.
No I/O happens here: the mixin observes, calls :func:`decide`, and performs what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from resumable.errors import RecordError
from resumable.job import JobState, JobStatus
from resumable.record import Phase, Record


class Action(str, Enum):
    SUBMIT = "submit"
    REATTACH = "reattach"
    #: The job is on its way out (a cancel was asked for): wait until it ends, then decide again.
    AWAIT_STOP = "await_stop"
    FINISH = "finish"
    FAIL = "fail"
    REPAIR = "repair"
    #: A newer try owns the record: this attempt is stale and touches nothing.
    STAND_DOWN = "stand_down"


class PriorFailure(str, Enum):
    """What a retry of the same lineage does when the job it finds has failed or was cancelled."""

    RESUBMIT = "resubmit"
    FAIL = "fail"
    REPAIR = "repair"


#: ``stop_reason`` written when a person cleared the task while it ran: the next attempt reruns.
STOP_CLEARED = "cleared"
#: ``stop_reason`` written when an attempt's execution_timeout cancelled the job.
STOP_TIMEOUT = "timeout"
#: ``stop_reason`` written when a person (or a final failure) stopped the task.
STOP_USER = "user_stop"
#: ``stop_reason`` written with ``cancel_on_kill='always'``.
STOP_KILLED = "killed"
#: ``stop_reason`` written when an attempt reached the operator's wait limit.
STOP_WAIT_LIMIT = "wait_limit"
#: Stops a person asked for: a job still running under one of them is asked again to cancel. A spent
#: time budget (timeout, wait limit) is not asked again: a retry brings a budget of its own.
PERSONS_STOPS = frozenset({STOP_CLEARED, STOP_USER, STOP_KILLED})


@dataclass(frozen=True)
class Facts:
    """What the attempt knows about itself.

    ``lineage`` is ``ti.max_tries``; ``retries`` the task's retries and ``clear_number`` the DAG
    run's clear counter, when Airflow provides them (they tell a clear from a retry where
    ``max_tries`` alone cannot). ``run_after`` tells a DAG run from an earlier one with the same
    run_id (deleted and triggered again).
    """

    lineage: int
    try_number: int
    on_prior_failure: PriorFailure = PriorFailure.RESUBMIT
    retries: int | None = None
    clear_number: int | None = None
    run_after: str | None = None
    #: When the DAG run started (ISO 8601): a record last written before it, by a try this attempt
    #: has not passed, belongs to a deleted DAG run with the same run_id.
    run_started_at: str | None = None


@dataclass(frozen=True)
class Decision:
    """The action to take and, for a submission, whether the record's token may be reused."""

    action: Action
    reason: str
    reuse_token: bool = False
    #: Whether the record's own job is ours to cancel before submitting (its DAG run was deleted).
    cancel_previous: bool = False
    #: Whether the job to reattach to was submitted by an earlier lineage (a clear adopting it).
    inherited: bool = False

    def describe(self) -> str:
        token = " with the same token" if self.action is Action.SUBMIT and self.reuse_token else ""
        return f"{self.action.value}{token}: {self.reason}"


def same_lineage(record: Record, facts: Facts) -> bool:
    """Whether ``record`` was written in this attempt's lineage (a retry) or an earlier one (a clear).

    A clear of a finished task sets ``max_tries = try_number + retries``, which usually differs
    from the lineage's; but a ``retries`` changed before the clear can give an old value back. A
    retry never raises the DAG run's ``clear_number`` and most clears do (Airflow 3.2+: every clear
    that resets the DAG run; 3.0/3.1: a clear that requeues a finished DAG run), so where Airflow
    provides it a changed ``clear_number`` also means a new lineage (clearing another task of the
    same DAG run while this one waits for its retry counts too: a finished job then runs again,
    never a second copy beside a running one). Where it is unknown, the first try after a clear is
    told by ``try_number == max_tries - retries + 1``, which no retry of a lineage has. A clear that
    leaves ``clear_number`` as it was and repeats an old ``max_tries`` is taken for a retry. A record
    this attempt wrote its try number on is its lineage's only if it carries the same clear counter: a
    claim, or the wait for a cleared lineage's job to stop, keeps the lineage the record had.
    """
    if _known_and_different(record.clear_number, facts.clear_number):
        # An attempt that takes over an earlier lineage's record (to claim it, or to wait for its job to
        # stop) writes its own try number on it; the record stays that lineage's all the same.
        return False
    return written_in_this_lineage(record.lineage, record.owner, record.clear_number, facts)


#: How far the service's clock and the worker's may disagree: a job of a reused token created at most
#: this long before the reusing lineage's intent is still that lineage's, unless that is more than half
#: the time since the cleared lineage last wrote the record (its job was created before its try died,
#: the task failed and a person cleared it).
CLOCK_SKEW_SECONDS = 2.0


def created_by_this_lineage(record: Record, job: JobStatus | None, facts: Facts) -> bool:
    """Whether the job of ``record``'s token was created by this lineage's submission with a cleared
    lineage's token (``record.reuse``): a service answers a repeated token with the job it has, or
    creates one, and does not say which; the job's creation time after the intent does. A try that died
    before it looked at that job leaves the record in the cleared lineage's name."""
    reuse = record.reuse
    if reuse is None or job is None or job.created_at is None:
        return False
    if not written_in_this_lineage(reuse.lineage, reuse.owner, reuse.clear_number, facts):
        return False
    try:
        intent = datetime.fromisoformat(reuse.at)
        since = intent - timedelta(seconds=CLOCK_SKEW_SECONDS)
        if reuse.after:
            before = datetime.fromisoformat(reuse.after)
            since = max(since, before + (intent - before) / 2)
    except (TypeError, ValueError):
        return False
    return job.created_at >= since


def written_in_this_lineage(lineage: int, owner: int, clear_number: int | None, facts: Facts) -> bool:
    """:func:`same_lineage` for any value written by try ``owner`` of lineage ``lineage`` (``max_tries``
    then) when the DAG run's clear counter was ``clear_number``: a job record, a checkpoint."""
    if lineage != facts.lineage:
        return False
    if owner >= facts.try_number:
        return True  # this attempt's own writes
    if clear_number is not None and facts.clear_number is not None:
        return clear_number == facts.clear_number
    if facts.retries is None:
        return True
    return facts.try_number != facts.lineage - facts.retries + 1


def _known_and_different(recorded: object, now: object) -> bool:
    return recorded is not None and now is not None and recorded != now


def of_an_earlier_dag_run(record: Record, facts: Facts) -> bool:
    """Whether ``record`` was left by a deleted DAG run with this run_id (re-triggered, backfilled).

    Try numbers only grow within a DAG run, and every write of a newer try comes after the run
    started; a record of a try this attempt has not passed, last written before the run started,
    is another run's. So is one of an earlier try written before the run started, unless the run
    was cleared since (which starts it again and raises its clear counter). (Only the ``sql``
    backend can find one: Airflow's store deletes records with their run.)
    """
    if _known_and_different(record.run_after, facts.run_after):
        return True
    if not facts.run_started_at or not record.updated_at:
        return False
    try:
        before = datetime.fromisoformat(record.updated_at) < datetime.fromisoformat(facts.run_started_at)
    except (TypeError, ValueError):
        return False
    if not before:
        return False
    if record.owner >= facts.try_number:
        return True
    # An earlier try of this run can predate its start only if the run was cleared (a clear of a
    # finished run starts it again), and every clear raises the clear counter; a new run's starts at 0.
    return (
        record.clear_number is not None
        and facts.clear_number is not None
        and (facts.clear_number <= record.clear_number)
    )


def decide(record: Record | RecordError | None, job: JobStatus | None, facts: Facts) -> Decision:
    """Choose what this attempt does.

    ``job`` is the status of the job the record points to: read through its handle for a
    ``submitted`` record, found by token for a ``submitting`` one (``None`` when discovery found
    nothing), and the recorded outcome for a ``done`` one.
    """
    if isinstance(record, RecordError):
        return Decision(Action.FAIL, f"the record cannot be used: {record}")
    if record is None:
        return Decision(Action.SUBMIT, "no record: first submission of this task instance")

    if job is None and record.phase is Phase.DONE:
        job = record.last_status
    state = job.state if job is not None else JobState.NOT_FOUND

    if of_an_earlier_dag_run(record, facts):
        return Decision(
            Action.SUBMIT,
            f"the record belongs to an earlier DAG run with this run_id (written {record.updated_at} by "
            f"try {record.owner}; this run started {facts.run_started_at}): that run was deleted; submit "
            "for this one",
            cancel_previous=state.is_active,
        )
    if record.owner > facts.try_number:
        return Decision(
            Action.STAND_DOWN,
            f"try {record.owner} owns the job and this is try {facts.try_number}: a stale attempt "
            "touches nothing",
        )

    same = same_lineage(record, facts)
    lineage = "same lineage (a retry)" if same else "new lineage (cleared by a person)"
    stop_reason = record.stop_reason
    if not same and created_by_this_lineage(record, job, facts):
        same = True
        lineage = (
            "same lineage: created by this lineage's submission with the cleared lineage's token "
            f"(intent written at {record.reuse.at})"  # type: ignore[union-attr]
        )
        if stop_reason is not None and stop_reason == record.reuse.stop:  # type: ignore[union-attr]
            # The stop came with the token, from the cleared lineage: it was about a job of the token
            # created before this lineage's intent, not about the one this lineage created.
            stop_reason = None
            lineage += f"; the cleared lineage's stop ({record.stop_reason}) was not about this job"

    if record.phase is Phase.SUBMITTING and state is JobState.NOT_FOUND:
        return Decision(
            Action.SUBMIT,
            "intent written but no job found: the last attempt died around submit; submitting with "
            f"the record's own token returns the job if the service has it ({lineage})",
            reuse_token=True,
        )

    found = "job found by its token" if record.phase is Phase.SUBMITTING else "job"
    if state is JobState.STOPPING or (state.is_active and stop_reason in PERSONS_STOPS):
        why = f" (cancel asked for: {stop_reason})" if stop_reason else ""
        return Decision(
            Action.AWAIT_STOP,
            f"{found} is {state.value}{why}; {lineage}: wait until it has stopped, never run a second "
            "copy beside it, then decide again",
        )
    if state.is_active:
        return Decision(
            Action.REATTACH,
            f"{found} is {state.value}; {lineage}: reattach and take ownership",
            inherited=not same,
        )
    if state is JobState.NOT_FOUND:
        return Decision(Action.SUBMIT, f"{found} no longer exists (expired or deleted): resubmit")
    if stop_reason == STOP_CLEARED:
        return Decision(
            Action.SUBMIT,
            f"{found} is {state.value}, cancelled because a person cleared the running task: rerun",
        )
    if not same:
        return Decision(Action.SUBMIT, f"{found} is {state.value}; {lineage}: a clear means rerun")
    if state is JobState.SUCCEEDED:
        return Decision(
            Action.FINISH, f"{found} already SUCCEEDED; {lineage}: no submit, finish with its result"
        )
    policy = facts.on_prior_failure
    prior = f"{found} is {state.value}; {lineage}; on_prior_failure={policy.value}"
    if policy is PriorFailure.FAIL:
        return Decision(Action.FAIL, f"{prior}: fail without submitting")
    if policy is PriorFailure.REPAIR:
        return Decision(Action.REPAIR, f"{prior}: repair the failed parts in place")
    return Decision(Action.SUBMIT, f"{prior}: resubmit with a new token")


class CancelOnKill(str, Enum):
    """Whose stop cancels the job: only a person's (default), every stop, or none."""

    USER_STOP = "user_stop"
    ALWAYS = "always"
    NEVER = "never"


#: Task-instance states that mean a newer try has taken over (or is about to): never cancel. No state
#: (``none``) is one of them: Airflow gives it to a task instance the scheduler reset (its worker was
#: lost) and to one a person cleared after it had ended; a clear of a running task is ``restarting``.
SUPERSEDED_STATES = frozenset(
    {"up_for_retry", "queued", "scheduled", "up_for_reschedule", "deferred", "none"}
)
#: States that mean a person cleared the task while it ran: cancel, and the next attempt reruns.
CLEARED_STATES = frozenset({"restarting"})
#: What the task state probe says when Airflow answered and has no such task instance: its DAG run
#: was deleted (with its records on Airflow's store), so no attempt will ever look at the job.
DELETED = "deleted"


@dataclass(frozen=True)
class KillFacts:
    """What ``on_kill`` knows when it is called."""

    policy: CancelOnKill
    timed_out: bool
    #: ``None``: cannot be told (the record is out of this attempt's reach); Airflow's state decides.
    owns_record: bool | None
    #: The task instance's state in Airflow now (lower case, ``"none"`` for no state),
    #: or ``None`` when Airflow could not be asked.
    ti_state: str | None
    #: Whether the job has already ended, asked only of a replaced attempt (``owns_record`` ``None``)
    #: about to cancel; ``None`` when not asked or not told.
    job_ended: bool | None = None


@dataclass(frozen=True)
class KillDecision:
    cancel: bool
    reason: str
    #: Written to the record when the job is cancelled, so the next attempt knows why.
    stop_reason: str | None = None


def decide_kill(facts: KillFacts) -> KillDecision:
    """The "who asked?" rules of ``docs/concepts.md`` ("Stopping: who asked?"): cancel only when
    the stop means "stop the job".

    A replaced attempt never cancels, whatever fired: ownership is asked before the timeout. When
    ownership cannot be told (the record is out of this attempt's reach because its task instance
    was replaced), a timeout does not count and Airflow's view of the task instance decides.
    """
    if facts.policy is CancelOnKill.NEVER:
        return KillDecision(False, "cancel_on_kill='never': the job is left running")
    if facts.owns_record is False:
        return KillDecision(False, "a newer try owns the job now (fencing): never cancel a successor's job")
    if facts.owns_record is None and facts.job_ended:
        # Airflow's state is the successor's: it reattached and ended with the job (or a person marked
        # it after the job had ended). Nothing runs to be stopped.
        return KillDecision(
            False,
            f"the task is {facts.ti_state} in Airflow, but this attempt was replaced and its job has "
            "already ended: nothing to cancel",
        )
    if facts.owns_record and facts.ti_state in SUPERSEDED_STATES:
        return KillDecision(
            False,
            f"the task is {facts.ti_state} in Airflow: this attempt was replaced (a zombie) and the next try "
            "takes over the job, whatever fired",
        )
    if facts.ti_state in CLEARED_STATES:
        # First, whatever else fired: the reason written makes the next attempt rerun.
        return KillDecision(
            True,
            f"the task is {facts.ti_state} in Airflow: a person cleared it; cancel and rerun",
            STOP_CLEARED,
        )
    if facts.ti_state == DELETED:
        return KillDecision(
            True,
            "the DAG run was deleted from Airflow: no attempt will ever look at the job again",
            STOP_USER,
        )
    if facts.timed_out and facts.owns_record:
        return KillDecision(True, "execution_timeout fired: the author's time budget is spent", STOP_TIMEOUT)
    if facts.policy is CancelOnKill.ALWAYS and facts.owns_record:
        return KillDecision(True, "cancel_on_kill='always'", STOP_KILLED)
    state = facts.ti_state
    if state is None:
        return KillDecision(False, "Airflow could not be asked why: keep the job, the retry reconciles it")
    if state == "running":
        return KillDecision(
            False,
            "the task is still running in Airflow: an infrastructure stop (eviction, restart) or a "
            "replaced attempt; keep the job for the try that runs",
        )
    if state in SUPERSEDED_STATES:
        return KillDecision(False, f"the task is {state} in Airflow: a newer try takes over the job")
    return KillDecision(
        True, f"the task is {state} in Airflow: a person (or a final failure) stopped it", STOP_USER
    )
