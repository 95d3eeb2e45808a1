"""The resume decision: a pure function from (record, job status, task facts) to one action.

It is DESIGN.md's decision table in code; ``tests/unit/test_protocol.py`` is the same table.
No I/O happens here: the mixin observes, calls :func:`decide`, and performs what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from resumable.errors import RecordError
from resumable.job import JobState, JobStatus
from resumable.record import Phase, Record


class Action(str, Enum):
    SUBMIT = "submit"
    REATTACH = "reattach"
    FINISH = "finish"
    FAIL = "fail"
    REPAIR = "repair"


class PriorFailure(str, Enum):
    """What a retry of the same lineage does when the job it finds has failed or was cancelled."""

    RESUBMIT = "resubmit"
    FAIL = "fail"
    REPAIR = "repair"


#: ``stop_reason`` written when a person cleared the task while it ran: the next attempt reruns.
STOP_CLEARED = "cleared"


@dataclass(frozen=True)
class Facts:
    """What the attempt knows about itself: its lineage (``ti.max_tries``) and try number."""

    lineage: int
    try_number: int
    on_prior_failure: PriorFailure = PriorFailure.RESUBMIT


@dataclass(frozen=True)
class Decision:
    """The action to take and, for a submission, whether the record's token may be reused."""

    action: Action
    reason: str
    reuse_token: bool = False

    def describe(self) -> str:
        token = " with the same token" if self.action is Action.SUBMIT and self.reuse_token else ""
        return f"{self.action.value}{token}: {self.reason}"


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

    same_lineage = record.lineage == facts.lineage
    lineage = "same lineage (a retry)" if same_lineage else "new lineage (cleared by a person)"
    if job is None and record.phase is Phase.DONE:
        job = record.last_status
    state = job.state if job is not None else JobState.NOT_FOUND

    if record.phase is Phase.SUBMITTING and state is JobState.NOT_FOUND:
        if same_lineage:
            return Decision(
                Action.SUBMIT,
                "intent written but no job found: the last attempt died around submit; "
                "resubmitting with the same token cannot create a second job",
                reuse_token=True,
            )
        return Decision(Action.SUBMIT, f"intent of an earlier lineage, no job found; {lineage}: new token")

    found = "job found by its token" if record.phase is Phase.SUBMITTING else "job"
    if record.stop_reason == STOP_CLEARED:
        return Decision(
            Action.SUBMIT,
            f"{found} is {state.value}, cancelled because a person cleared the running task: rerun",
        )
    if state is JobState.STOPPING and not same_lineage:
        return Decision(
            Action.SUBMIT,
            f"{found} is {state.value} (being cancelled or shutting down); {lineage}: a clear means rerun",
        )
    if state.is_active:
        return Decision(Action.REATTACH, f"{found} is {state.value}; {lineage}: reattach and take ownership")
    if state is JobState.NOT_FOUND:
        return Decision(Action.SUBMIT, f"{found} no longer exists (expired or deleted): resubmit")
    if not same_lineage:
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


#: Task-instance states that mean a newer try has taken over (or is about to): never cancel.
SUPERSEDED_STATES = frozenset({"up_for_retry", "queued", "scheduled", "up_for_reschedule", "deferred"})
#: States that mean a person cleared the task while it ran: cancel, and the next attempt reruns.
CLEARED_STATES = frozenset({"restarting", "none"})


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


@dataclass(frozen=True)
class KillDecision:
    cancel: bool
    reason: str
    #: Written to the record when the job is cancelled, so the next attempt knows why.
    stop_reason: str | None = None


def decide_kill(facts: KillFacts) -> KillDecision:
    """DESIGN.md's "who asked?" rules: cancel only when the stop means "stop the job"."""
    if facts.policy is CancelOnKill.NEVER:
        return KillDecision(False, "cancel_on_kill='never': the job is left running")
    if facts.owns_record is False:
        return KillDecision(False, "a newer try owns the job now (fencing): never cancel a successor's job")
    if facts.timed_out:
        return KillDecision(True, "execution_timeout fired: the author's time budget is spent", "timeout")
    if facts.policy is CancelOnKill.ALWAYS and facts.owns_record:
        return KillDecision(True, "cancel_on_kill='always'", "killed")
    state = facts.ti_state
    if state is None:
        return KillDecision(False, "Airflow could not be asked why: keep the job, the retry reconciles it")
    if state == "running":
        return KillDecision(
            False,
            "the task is still running in Airflow: an infrastructure stop (eviction, restart); "
            "keep the job for the retry to reattach",
        )
    if state in SUPERSEDED_STATES:
        return KillDecision(False, f"the task is {state} in Airflow: a newer try takes over the job")
    if state in CLEARED_STATES:
        return KillDecision(
            True, f"the task is {state} in Airflow: a person cleared it; cancel and rerun", STOP_CLEARED
        )
    return KillDecision(
        True, f"the task is {state} in Airflow: a person (or a final failure) stopped it", "user_stop"
    )
