"""ResumableMixin: runs the resume protocol around an operator's submit / status / cancel.

The mixin owns ``execute``: it reads the record, observes the job, lets :func:`decide` choose,
performs that choice (writing intent before every submit), polls, and writes the outcome.
``on_kill`` asks Airflow who is stopping the task before it cancels anything.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from resumable import faults
from resumable._compat import AirflowTaskTimeout, BaseOperatorMeta, stats_incr
from resumable.attempt import Attempt, run_after_of
from resumable.errors import (
    AttemptInterrupted,
    JobFailedError,
    RecordError,
    SupersededError,
    TransientJobError,
    VersionConflict,
)
from resumable.job import JobHandle, JobState, JobStatus
from resumable.links import JOB_URL_XCOM_KEY
from resumable.pacing import retry_after_of, wait_retry_after
from resumable.probe import AirflowTaskStateProbe, TaskStateProbe
from resumable.protocol import (
    PERSONS_STOPS,
    STOP_CLEARED,
    STOP_WAIT_LIMIT,
    Action,
    CancelOnKill,
    Decision,
    Facts,
    PriorFailure,
    decide,
    written_in_this_lineage,
)
from resumable.record import Phase, Record, Reuse, utcnow
from resumable.state import TaskScope
from resumable.stopping import StopControl, describe_stop
from resumable.supervisor_calls import through_supervisor
from resumable.tokens import deployment_salt, make_token

T = TypeVar("T")
#: Reads of the record a stopped attempt tries before it gives up (see ``_read``).
STOPPED_READ_TRIES = 4

#: Default key of the record in the task's state; change it only for two jobs in one task.
DEFAULT_STATE_KEY = "resumable.job"
#: How many times a status, discovery or cancel call is tried when it fails transiently.
DEFAULT_STATUS_ATTEMPTS = 6


class ResumableMixin:
    """Makes an operator that submits one external job survive the loss of its worker.

    Subclasses implement :meth:`submit_job`, :meth:`get_job_status` and :meth:`cancel_job` (and
    optionally :meth:`find_job`, :meth:`job_result`, :meth:`repair_job`, :meth:`job_trigger`);
    the mixin owns ``execute``, the state, polling, retries of status calls, kill semantics and
    the result path. Put it first in the bases: ``class MyOperator(ResumableMixin, BaseOperator)``.

    Args:
        resumable: ``False`` turns the mixin off: every try submits a job of its own and keeps no
            record (the provider operator's behaviour, for comparison).
        on_prior_failure: what a retry does when the job it finds in its lineage failed or was
            cancelled: ``"resubmit"`` (a new job, new token), ``"fail"`` (fail the task and keep the
            record), or ``"repair"`` (call :meth:`repair_job`; only where the operator implements it).
        cancel_on_kill: when a stopped attempt cancels its job: ``"user_stop"`` (a person marked the
            task failed or cleared it, or ``execution_timeout`` fired; never a worker shutdown or a
            replaced attempt), ``"always"`` (every stop of the attempt that owns the job, a worker's
            shutdown included; never a replaced attempt's), or ``"never"``.
        poll_interval: seconds between the first status reads; they back off to ``max_poll_interval``.
        max_poll_interval: the longest wait between two status reads (default: twice ``poll_interval``).
        state_key: the key of the record in the task's state; change it only to run two jobs in one task.
        status_retry_attempts: how many times a status, discovery or cancel call is tried when the
            system answers with a transient error (with exponential backoff and jitter); a call the
            system throttles is retried for ``throttled_retry_seconds`` (900) instead.
        **kwargs: the operator's own arguments (``BaseOperator``'s and the provider operator's).
    """

    #: The external system's name, written into every handle; a handle of another system is refused.
    job_system: str = "job"
    #: Whether reaching :meth:`wait_limit` cancels the job (it always fails the attempt).
    cancel_at_wait_limit: bool = True
    #: Seconds a status, discovery or cancel call that the system keeps throttling (:meth:`is_throttled`)
    #: is retried before the attempt fails: a whole fleet reattaching at once is throttled for as long
    #: as the service takes to answer every task once, however many tries that takes.
    throttled_retry_seconds: float = 900.0
    #: The names this operator's records were written under before a release moved the class (its
    #: module and class name, as ``"resumable.operators.emr.ResumableEmrAddStepsOperator"``): a record
    #: that names one of them is read as this operator's own, so a task in flight during an upgrade
    #: reattaches to its job. Records are written under the current name.
    former_names: tuple[str, ...] = ()

    if TYPE_CHECKING:  # provided by BaseOperator, which every user of the mixin also inherits
        log: Any
        defer: Any

    @BaseOperatorMeta._apply_defaults  # type: ignore[arg-type,type-var,misc]
    def __init__(
        self,
        *,
        resumable: bool = True,
        on_prior_failure: str = "resubmit",
        cancel_on_kill: str = "user_stop",
        poll_interval: float = 30.0,
        max_poll_interval: float | None = None,
        state_key: str = DEFAULT_STATE_KEY,
        status_retry_attempts: int = DEFAULT_STATUS_ATTEMPTS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.resumable = resumable
        self.on_prior_failure = _choice(PriorFailure, on_prior_failure, "on_prior_failure")
        self.cancel_on_kill = _choice(CancelOnKill, cancel_on_kill, "cancel_on_kill")
        if (
            self.on_prior_failure is PriorFailure.REPAIR
            and type(self).repair_job is ResumableMixin.repair_job
        ):
            raise ValueError(
                f"on_prior_failure='repair' needs {type(self).__name__}.repair_job, which it does not "
                "implement. Use 'resubmit' or 'fail'."
            )
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval or 2 * poll_interval)
        self.state_key = state_key
        self.status_retry_attempts = status_retry_attempts
        #: Replaced only by unit tests of the kill rules; asks Airflow for the task's state.
        self.task_state_probe: TaskStateProbe = AirflowTaskStateProbe()
        self._attempt: Attempt | None = None
        self._handle: JobHandle | None = None
        #: The id of a running job this attempt took over from the lineage before a clear.
        self._inherited: str | None = None
        # One stop per attempt, remembered and decided once, whoever comes to it first.
        self._stopping = StopControl(self)
        #: True while :meth:`submit_job` repeats a token whose job may already exist (after a crash
        #: between intent and handle); an operator skips side effects such as cancelling other runs.
        self.resubmitting_token = False

    # ---- the contract a subclass implements -------------------------------------------------

    def submit_job(self, context: Mapping[str, Any], token: str) -> JobHandle:
        """Submit the job, passing ``token`` on as the system's idempotency key if it has one."""
        raise NotImplementedError(f"{type(self).__name__} must implement submit_job")

    def get_job_status(self, handle: JobHandle) -> JobStatus:
        """The job's normalised status; ``NOT_FOUND`` when the system says it has no such job."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_job_status")

    def cancel_job(self, handle: JobHandle) -> None:
        """Ask the system to stop the job (it may finish stopping later)."""
        raise NotImplementedError(f"{type(self).__name__} must implement cancel_job")

    def find_job(self, context: Mapping[str, Any], token: str) -> JobHandle | None:
        """Find a job submitted with ``token``; needed where submit is not idempotent."""
        return None

    def job_result(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> Any:
        """The task's return value (and any XComs), the same on every path to success."""
        return handle.job_id

    def repair_job(self, context: Mapping[str, Any], handle: JobHandle) -> JobHandle:
        """Rerun the failed parts of a finished job in place, for ``on_prior_failure='repair'``."""
        raise NotImplementedError(f"{type(self).__name__} does not support repair")

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> Any:
        """The trigger that waits for the job in deferrable mode; it fires when the job is terminal."""
        raise NotImplementedError(f"{type(self).__name__} does not support deferrable mode")

    def announce_job(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        """Called whenever this attempt knows its job (submitted, reattached, repaired or found done).

        The place for XComs that operator extra links read while the task runs, such as a run's URL.
        By default it pushes the job's page for the "Job page" link
        (:class:`~resumable.links.ResumableJobLink`); an override calls it too.
        """
        if handle.url and getattr(self, "do_xcom_push", True):
            context["ti"].xcom_push(key=JOB_URL_XCOM_KEY, value=handle.url)

    def waits_for_job(self) -> bool:
        """Whether the task waits for the job to end; ``False`` finishes right after submit or reattach."""
        return True

    def submit_is_idempotent(self) -> bool:
        """Whether a repeated :meth:`submit_job` with one token returns the job that token already made
        (Databricks, EMR Serverless, EMR on EKS); where it does not, :meth:`find_job` is the only way back."""
        return True

    def wait_limit(self) -> float | None:
        """Seconds one attempt waits for its job before it gives up, cancels it and fails; None waits on."""
        return None

    def repair_in_attempt(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> bool:
        """Whether to repair a job that just failed inside this attempt and keep waiting for it."""
        return False

    def is_transient_error(self, error: BaseException) -> bool:
        """Whether a failed status, discovery or cancel call is worth trying again."""
        return isinstance(error, (TransientJobError, ConnectionError, TimeoutError))

    def is_throttled(self, error: BaseException) -> bool:
        """Whether the system refused a call for its rate limit (HTTP 429 and the like): retried for
        :attr:`throttled_retry_seconds` rather than ``status_retry_attempts`` times."""
        return False

    def retry_after(self, error: BaseException) -> float | None:
        """Seconds the system asked to wait before the failed call is tried again (HTTP
        ``Retry-After`` on the error or an error it wraps), or ``None`` where it said nothing.

        A retried call waits that long plus up to as much again at random; without an answer here
        it backs off exponentially, with jitter, up to 30 s.
        """
        return retry_after_of(error)

    # ---- execute -----------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        if not self.resumable:
            return self._execute_plain(context)
        return self._run_timed(self._begin(context))

    def _run_timed(self, attempt: Attempt) -> Any:
        try:
            return self._run(attempt)
        except AirflowTaskTimeout:
            # execution_timeout can fire anywhere (during submit, while an application starts),
            # not only while polling: the owner's time budget is spent, so its job is stopped.
            self._stopping.timed_out = True
            self._stopping.settle_checking_owner(attempt, self._handle)
            raise

    def _run(self, attempt: Attempt) -> Any:
        facts = attempt.facts
        for n in range(MAX_DECISIONS):
            record = self._read(attempt, first=n == 0)
            try:
                self._claim(attempt, record)
                handle, status = self._observe(attempt, record)  # reads only: no VersionConflict
            except VersionConflict:
                continue
            except Exception:
                self._stop_unobserved(attempt, record)
                raise
            decision = decide(record, status, facts)
            # Only the first read can find another DAG run's record; later ones read this attempt's writes.
            facts = replace(facts, run_started_at=None)
            self._log_decision(record, status, decision)
            if (
                handle is not None
                and status is not None
                and status.state.is_active
                and decision.action is not Action.STAND_DOWN  # a stale attempt touches nothing
            ):
                # From here on a stop is about the running job this attempt looked at (it reattaches
                # to it, or waits for it to stop); one that came while it looked is decided now.
                self._handle = handle
                if self._stopping.requested.is_set() and decision.action is Action.REATTACH:
                    # Whatever the stop decides, the job is this lineage's now: the next try must find
                    # it so, not as the job of a lineage that a clear ended (which it would run again).
                    assert isinstance(record, Record)
                    try:
                        self._adopt(attempt, record, handle)
                    except VersionConflict:
                        continue
                    except Exception as error:  # noqa: BLE001 - the stop is applied all the same
                        self.log.warning(
                            "resumable: could not record job %s as this lineage's (%s)", handle.job_id, error
                        )
                self._stop_if_asked(attempt, handle, "while this attempt looked at its job")
            try:
                outcome = self._perform(attempt, record, handle, status, decision)
            except VersionConflict as conflict:
                self.log.warning(
                    "resumable: the record of %s changed while this attempt acted on it (%s); deciding again",
                    attempt.where,
                    conflict,
                )
                continue
            if outcome is not _DECIDE_AGAIN:
                return outcome
        raise SupersededError(
            f"the record of {attempt.where} kept changing under this attempt ({MAX_DECISIONS} decisions); "
            "giving up without cancelling anything"
        )

    def _stop_unobserved(self, attempt: Attempt, record: Record | RecordError | None) -> None:
        """A stop that came before this attempt began, whose job could not be looked at (the service
        kept failing, or the store refused the claim on the record): the stop is decided on the job
        the record names all the same, since no later try may come to do it (a person's mark failed
        leaves none)."""
        if not self._stopping.requested.is_set() or not isinstance(record, Record):
            return
        if record.phase is Phase.SUBMITTING:
            # The last attempt died around its submit: the stop is about the job of the record's token,
            # which it learns only if it cancels it (an eviction submits nothing).
            self.log.warning(
                "resumable: told to stop, and could not look for the job of token %s; deciding the stop "
                "without it",
                record.token,
            )
            self._stop_if_asked(attempt, None, "before this attempt could look for its job")
        handle = record.handle if record.phase is Phase.SUBMITTED else None
        if handle is None:
            return
        self.log.warning(
            "resumable: told to stop, and could not look at job %s; deciding the stop without it",
            handle.job_id,
        )
        self._handle = handle
        self._stop_if_asked(attempt, handle, "before this attempt could look at its job")

    def _stop_if_asked(self, attempt: Attempt, handle: JobHandle | None, when: str) -> None:
        """Decide a stop that came before ``handle`` was known, now that it is; the attempt then ends
        instead of going on with the job. ``None``: the job of the record's token, learnt only if the
        stop cancels it."""
        if self._stopping.requested.is_set():
            self._stopping.settle_checking_owner(attempt, handle)
            raise AttemptInterrupted(
                f"the task was told to stop {when}; {describe_stop(self._stopping, handle)}"
            )

    def _claim(self, attempt: Attempt, record: Record | RecordError | None) -> None:
        """Take over an earlier try's record before looking at its job.

        A zombie checks that it still owns the record right before it cancels; writing this try as
        the owner first (compare-and-set) closes the window in which a zombie whose timeout fires
        would cancel the job this try is about to reattach to. The decision still reads the record
        as it was found. Airflow's store needs no claim: it refuses a replaced task instance itself.
        """
        if (
            isinstance(record, Record)
            and record.owner < attempt.facts.try_number
            and record.phase is not Phase.DONE
            and attempt.backend.atomic_compare_and_set
        ):
            attempt.write(record.evolve(owner=attempt.facts.try_number))

    def execute_complete(
        self,
        context: Any,
        event: Any = None,
        record: Any = None,
        record_version: int | None = None,
        trigger_errors: int = 0,
        inherited: str | None = None,
    ) -> Any:
        """Where a deferred task resumes: the trigger's event says the job may have ended, that the trigger
        reached its wait limit, or that it failed to watch; the job's own status decides which.

        ``record`` and ``record_version``: the record as the deferring attempt left it, handed over
        by Airflow with the deferral on a store that fences replaced attempts (``airflow``): a
        deferred try cannot have been replaced and still resume, so it need not read it again.
        ``trigger_errors``: how many triggers in a row failed to watch the job before this one.
        ``inherited``: the job, if this attempt took it over from the lineage before a clear.
        """
        attempt = self._begin(context)
        self._inherited = inherited
        if record is not None and attempt.backend.fences_replaced_attempts:
            record = attempt.take(record, record_version)
        else:
            record = attempt.read()
        if isinstance(record, Record) and _of_another_lineage(record, attempt):
            # Airflow keeps next_method and next_kwargs when a person clears a task that had resumed from
            # a deferral: this try was not deferred at all. It starts as execute does.
            self.log.warning(
                "resumable: resumed with the record of lineage %s (try %s), but this is try %s of lineage %s "
                "(the task was cleared after an earlier deferral): starting as a new attempt does",
                record.lineage,
                record.owner,
                attempt.facts.try_number,
                attempt.facts.lineage,
            )
            return self._run_timed(attempt)
        if not isinstance(record, Record) or record.handle is None:
            raise RecordError(
                f"The resumable record of {attempt.where} was missing or unusable when the trigger fired "
                f"({record}). Nothing was submitted; clear the task to start again."
            )
        attempt.check_resumed_owner(record)
        handle = self._handle = record.handle
        give_up = self.trigger_gave_up(event)
        trouble = None if give_up else self.trigger_failed(event)
        status = self._call(lambda: self.get_job_status(handle), "read the job status")
        if status.state.is_active and give_up:
            self._give_up_waiting(attempt, handle, give_up)
        if status.state.is_active and trouble:
            errors = trigger_errors + 1
            if errors < MAX_TRIGGER_ERRORS:
                self.log.warning(
                    "resumable: the trigger failed to watch job %s (%s), which is %s: a failed wait, not an "
                    "outcome; deferring again (%d failed trigger(s) in a row)",
                    handle.job_id,
                    trouble,
                    status.describe(),
                    errors,
                )
                self._defer(attempt, handle, trigger_errors=errors)
            self.log.warning(
                "resumable: %d triggers in a row failed to watch job %s (last: %s); this worker waits for it "
                "instead",
                errors,
                handle.job_id,
                trouble,
            )
            status = self._poll(attempt, handle)
        elif status.state.is_active:
            self.log.info("resumable: trigger fired but job is %s; deferring again", status.describe())
            self._defer(attempt, handle)
        if status.state is JobState.FAILED and self.repair_in_attempt(context, handle, status):
            handle = self._repair(attempt, handle, f"it ended {status.describe()} while deferred")
            self._announce(context, handle)
            self._defer(attempt, handle)
        outcome = self._finish(attempt, handle, status)
        return self._run_timed(attempt) if outcome is _DECIDE_AGAIN else outcome

    def trigger_gave_up(self, event: Any) -> str | None:
        """Why the trigger stopped waiting for a job that may still run because its wait budget was spent,
        or ``None``. Only that cancels a job that is still active (as the operator's wait limit does).

        The default reads a ``{"status": ..., "message": ...}`` event, the form the provider's
        triggers use: their ``waiter_max_attempts`` running out says ``max attempts reached``. Any other
        failure event (a network error, a 500 past botocore's retries) is :meth:`trigger_failed`.
        """
        message = _event_message(event)
        if message is not None and "max attempts reached" in message.lower():
            return f"the trigger stopped waiting ({message})"
        return None

    def trigger_failed(self, event: Any) -> str | None:
        """What went wrong when the trigger ended without the job's outcome and not at its wait limit (an
        error while it watched), or ``None``. The job is then looked at: still active means wait on."""
        return _event_message(event)

    def _execute_plain(self, context: Any) -> Any:
        ti = context["ti"]
        scope = TaskScope.from_context(context)
        token = make_token(
            scope.dag_id,
            scope.run_id,
            scope.task_id,
            scope.map_index,
            ti.max_tries,
            ti.try_number,
            run_after_of(context) or "",
        )
        self.log.info("resumable: resumable=False, submitting without keeping state")
        handle = self._handle = self.submit_job(context, token)
        faults.fault_point(faults.AFTER_SUBMIT, context)
        status = self._poll(None, handle)
        if status.state is not JobState.SUCCEEDED:
            raise JobFailedError(f"job {handle.job_id} ended {status.describe()}")
        return self.job_result(context, handle, status)

    def _read(self, attempt: Attempt, *, first: bool) -> Record | RecordError | None:
        """The record, as :meth:`Attempt.read` reads it. While a stop is pending (it came before this
        attempt began), a read that fails is tried again: the record is the only way to the job the
        stop is about, and no later try may come to stop it (a person's mark failed leaves none)."""
        if not self._stopping.requested.is_set():
            return attempt.read(first=first)
        retrying = Retrying(
            stop=stop_after_attempt(STOPPED_READ_TRIES),
            wait=wait_exponential_jitter(initial=0.2, max=1.0),
            before_sleep=lambda state: self.log.warning(
                "resumable: told to stop, and could not read the record of %s (%s); reading it again",
                attempt.where,
                state.outcome.exception() if state.outcome else "",
            ),
            reraise=True,
        )
        return retrying(attempt.read, first=first)

    def _begin(self, context: Any) -> Attempt:
        self._stopping.reset()
        self._handle = None
        self._inherited = None
        attempt = Attempt.begin(
            context,
            key=self.state_key,
            operator=type(self),
            job_system=self.job_system,
            on_prior_failure=self.on_prior_failure,
        )
        self._attempt = attempt
        self.log.info(
            "resumable: try %s of lineage %s, state backend %s",
            attempt.facts.try_number,
            attempt.facts.lineage,
            attempt.backend.describe(),
        )
        return attempt

    def _observe(
        self, attempt: Attempt, record: Record | RecordError | None
    ) -> tuple[JobHandle | None, JobStatus | None]:
        if not isinstance(record, Record) or record.phase is Phase.DONE:
            return (record.handle, record.last_status) if isinstance(record, Record) else (None, None)
        handle = record.handle
        if record.phase is Phase.SUBMITTING:
            handle = self._call(
                lambda: self.find_job(attempt.context, record.token), "look for the job by token"
            )
            if handle is None:
                return None, None
        assert handle is not None
        return handle, self._call(lambda: self.get_job_status(handle), "read the job status")

    def _perform(
        self,
        attempt: Attempt,
        record: Record | RecordError | None,
        handle: JobHandle | None,
        status: JobStatus | None,
        decision: Decision,
    ) -> Any:
        action = decision.action
        fresh: JobStatus | None = None
        if action is Action.FAIL:
            if isinstance(record, RecordError):
                raise record
            raise JobFailedError(
                f"{decision.reason}. The failed job is kept in the record of {attempt.where}; "
                "clear the task in Airflow to submit a new one, or set on_prior_failure='resubmit'."
            )
        if action is Action.STAND_DOWN:
            raise SupersededError(f"{decision.reason} ({attempt.where})")
        if action is Action.FINISH:
            assert handle is not None and status is not None
            self._handle = handle
            self._announce(attempt.context, handle)
            if isinstance(record, Record) and record.phase is not Phase.DONE and attempt.record is not None:
                # The job ended while no try watched it: record the outcome as a try that saw it end
                # does, so the record (the "Resumable jobs" page, `resumable state`) does not read as a
                # job in flight owned by a try that is gone.
                done = attempt.record.evolve(phase=Phase.DONE, handle=handle, last_status=status)
                if attempt.backend.records_outcomes:
                    attempt.write_as_owner(done)
                else:
                    attempt.know(done)
            return self.job_result(attempt.context, handle, status)
        if action is Action.AWAIT_STOP:
            assert isinstance(record, Record) and handle is not None and status is not None
            return self._await_stop(attempt, record, handle, status)
        if action is Action.SUBMIT:
            prior = record if isinstance(record, Record) else None
            if decision.cancel_previous and prior is not None and prior.handle is not None:
                self._cancel_stale(prior.handle)
            handle = self._submit(attempt, prior, decision.reuse_token)
            if decision.reuse_token:
                # The service may have handed back the job the last attempt created: what it is
                # (running, done, of which lineage) decides what comes next.
                return _DECIDE_AGAIN
        elif action is Action.REPAIR:
            assert isinstance(record, Record) and handle is not None
            handle = self._repair(attempt, handle, decision.reason)
        else:
            assert isinstance(record, Record) and handle is not None
            if decision.inherited:
                self._inherited = handle.job_id
            self._adopt(attempt, record, handle)
            stats_incr("resumable.reattach", self._tags())
            # The status the decision was made on was read a moment ago: the wait starts from it
            # rather than asking again (a fleet's retries reattaching at once ask once each).
            fresh = status
        self._handle = handle
        self._announce(attempt.context, handle)
        if not self.waits_for_job():
            self.log.info(
                "resumable: job %s recorded; not waiting for it to end (as configured)", handle.job_id
            )
            return self.job_result(attempt.context, handle, status or JobStatus(JobState.PENDING))
        if self._deferrable():
            deferred: JobHandle = handle
            status = fresh or self._call(lambda: self.get_job_status(deferred), "read the job status")
            if status.state.is_active:  # a job that already ended needs no trigger
                self._defer(attempt, deferred)
        else:
            status = self._poll(attempt, handle, known=fresh)
        if status.state is JobState.FAILED and self.repair_in_attempt(attempt.context, handle, status):
            handle = self._repair(attempt, handle, f"it ended {status.describe()} during this attempt")
            self._announce(attempt.context, handle)
            status = self._poll(attempt, handle)
        return self._finish(attempt, handle, status)

    def _adopt(self, attempt: Attempt, record: Record, handle: JobHandle) -> None:
        """Make ``record``'s active job this attempt's: its try, lineage and DAG run, no stop pending."""
        adopted = attempt.stamp(record.evolve(phase=Phase.SUBMITTED, handle=handle, stop_reason=None))
        if attempt.backend.fences_replaced_attempts and _same_but_owner(adopted, record):
            # Airflow fences the replaced try; the record already says all a later try needs.
            attempt.know(record)
            self.log.info(
                "resumable: reattached to job %s as try %s", handle.job_id, attempt.facts.try_number
            )
        else:
            attempt.write(adopted)
            self.log.info(
                "resumable: took ownership of job %s as try %s", handle.job_id, attempt.facts.try_number
            )

    def _await_stop(self, attempt: Attempt, record: Record, handle: JobHandle, status: JobStatus) -> object:
        """Wait for a job that is being stopped to end, then let the protocol decide again."""
        attempt.write(record.evolve(owner=attempt.facts.try_number))
        self._handle = handle
        if record.stop_reason in PERSONS_STOPS and status.state is not JobState.STOPPING:
            self.log.warning(
                "resumable: job %s is still %s although a cancel was asked for (%s); asking again",
                handle.job_id,
                status.describe(),
                record.stop_reason,
            )
            self._call(lambda: self.cancel_job(handle), "cancel the job")
        final = self._poll(attempt, handle, waiting_for_stop=True)
        self.log.info("resumable: job %s has stopped: %s", handle.job_id, final.describe())
        attempt.write_as_owner(attempt.record.evolve(phase=Phase.DONE, handle=handle, last_status=final))  # type: ignore[union-attr]
        return _DECIDE_AGAIN

    def _cancel_stale(self, handle: JobHandle) -> None:
        """Cancel the job of a deleted DAG run with this run_id: nobody will ever look at it again."""
        self.log.warning(
            "resumable: job %s of a deleted DAG run with this run_id is still active; cancelling it",
            handle.job_id,
        )
        try:
            self._call(lambda: self.cancel_job(handle), "cancel the job")
        except Exception as error:  # noqa: BLE001 - the new run goes on; the old job is named in the log
            self.log.error(
                "resumable: could not cancel job %s of the deleted DAG run: %s", handle.job_id, error
            )

    def _repair(self, attempt: Attempt, handle: JobHandle, why: str) -> JobHandle:
        assert attempt.record is not None
        # A repair is the owner's to make, once: claim it first with a write over the version this
        # attempt last read or wrote. A replaced attempt (a zombie that thawed) loses that write, or
        # Airflow refuses it, and repairs nothing: its repair would make the owner's own fail.
        attempt.write_as_owner(attempt.stamp(attempt.record.evolve(phase=Phase.SUBMITTED, handle=handle)))
        self.log.warning("resumable: repairing job %s because %s", handle.job_id, why)
        handle = self.repair_job(attempt.context, handle)
        stats_incr("resumable.repair", self._tags())
        attempt.write_as_owner(
            attempt.stamp(
                attempt.record.evolve(
                    phase=Phase.SUBMITTED, handle=handle, last_status=None, stop_reason=None
                )
            )
        )
        self._handle = handle
        return handle

    def _submit(self, attempt: Attempt, prior: Record | None, reuse_token: bool) -> JobHandle:
        facts, scope, ctx = attempt.facts, attempt.scope, attempt.context
        if prior is not None and reuse_token:
            lineage, seq, token = prior.lineage, prior.seq, prior.token
        else:
            same = prior is not None and prior.lineage == facts.lineage
            lineage, seq = facts.lineage, (prior.seq + 1 if same and prior is not None else 1)
            token = make_token(
                scope.dag_id,
                scope.run_id,
                scope.task_id,
                scope.map_index,
                lineage,
                seq,
                facts.run_after or "",
                run_started_at=facts.run_started_at or "",
                salt=deployment_salt(),
                try_number=facts.try_number,
            )
        intent = attempt.stamp(
            Record(
                lineage=lineage,
                owner=facts.try_number,
                seq=seq,
                phase=Phase.SUBMITTING,
                token=token,
                operator=attempt.operator,
            )
        )
        if prior is not None and reuse_token:
            # The old lineage stays on the record until the job the service returns is looked at, and so
            # does a stop asked for before that job's id was known: the job is cancelled, not adopted.
            # Who reuses the token, and since when: a job of the token created after this intent is this
            # lineage's (the service does not say whether it created one), also for a later try of it.
            intent = intent.evolve(
                lineage=prior.lineage,
                retries=prior.retries,
                clear_number=prior.clear_number,
                created_at=prior.created_at,
                stop_reason=prior.stop_reason,
                reuse=self._reuse(prior, facts),
            )
        # A stop that came before the submit (before execute began, say) needs no intent: nothing is
        # submitted, and a failed write must not keep the stop from the job of the record's token.
        self._stop_before_submitting(attempt, prior, reuse_token)
        faults.fault_point(faults.BEFORE_INTENT, ctx)
        attempt.write(intent)
        faults.fault_point(faults.AFTER_INTENT, ctx)
        # From here a stop is about the job of this token, whether or not its id ever comes back.
        self._stopping.submitting = token
        self._stop_before_submitting(attempt, prior, reuse_token)  # one that came during the write
        # A stop from now on is about the job this call submits: its id is not known yet.
        self._handle = None
        self.resubmitting_token = prior is not None and reuse_token
        try:
            handle = self.submit_job(ctx, token)
        finally:
            self.resubmitting_token = False
            self._stopping.submitting = None
        stats_incr("resumable.submit", self._tags())
        faults.fault_point(faults.AFTER_SUBMIT, ctx)
        # A stop that came while the call was in flight wrote its reason into the record: keep it.
        sent = attempt.record if attempt.record is not None and attempt.record.token == token else intent
        try:
            attempt.write(sent.evolve(phase=Phase.SUBMITTED, handle=handle))
        except Exception:
            # The job exists and the intent (its token) stays for the next attempt to find it; a stop
            # that came while the submit was in flight is still decided, now that its id is known.
            self._stop_if_asked(attempt, handle, "while submitting (its id could not be recorded)")
            raise
        self.log.info(
            "resumable: submitted job %s with token %s (%s)", handle.job_id, token, handle.url or "no url"
        )
        self._handle = handle
        faults.fault_point(faults.AFTER_HANDLE, ctx)
        # A stop that came while the submit call was in flight is decided now that the id is known.
        self._stop_if_asked(attempt, handle, "while submitting")
        return handle

    @staticmethod
    def _reuse(prior: Record, facts: Facts) -> Reuse:
        """Who submits with ``prior``'s token and since when: this lineage, now, unless an earlier try of
        it already did (a retry after a crash in the submit window): the job may be from that submit."""
        earlier = prior.reuse
        if earlier is not None and written_in_this_lineage(
            earlier.lineage, earlier.owner, earlier.clear_number, facts
        ):
            return earlier
        return Reuse(
            at=utcnow(),
            lineage=facts.lineage,
            owner=facts.try_number,
            clear_number=facts.clear_number,
            after=prior.updated_at or None,
            stop=prior.stop_reason,
        )

    def _stop_before_submitting(self, attempt: Attempt, prior: Record | None, reuse_token: bool) -> None:
        """Apply a stop that came before the submit call: submit nothing, and stop the job of the
        record's token where the last attempt died around its submit."""
        if not self._stopping.requested.is_set():
            return
        self._stopping.submitting = None
        if prior is not None and reuse_token:
            # The last attempt died around its submit and the job of this token was not found: it
            # may exist all the same (an idempotent submit returns it). The stop is about it, and learns
            # it only if it cancels it.
            self._stop_if_asked(attempt, None, "before submitting (the job of the record's token)")
        raise AttemptInterrupted(
            f"the task was told to stop before submitting; nothing was submitted ({attempt.where})"
        )

    def _recover_handle(self, attempt: Attempt) -> JobHandle | None:
        """The job of a submit whose answer never came (a stop or timeout during the call), if it exists:
        found by token, or where a repeated submit with one token returns the first job, asked for
        again (a stop means no job runs, so a job that second call creates is stopped too)."""
        record = attempt.record
        if record is None or record.phase is not Phase.SUBMITTING:
            return record.handle if record is not None else None
        handle = self._call(lambda: self.find_job(attempt.context, record.token), "look for the job by token")
        if handle is None and self.submit_is_idempotent():
            self.log.warning(
                "resumable: asking for the job of token %s again (a repeated submit returns it) to stop it",
                record.token,
            )
            self.resubmitting_token = True
            try:
                handle = self.submit_job(attempt.context, record.token)
            finally:
                self.resubmitting_token = False
        self._handle = handle
        return handle

    def _poll(
        self,
        attempt: Attempt | None,
        handle: JobHandle,
        *,
        waiting_for_stop: bool = False,
        known: JobStatus | None = None,
    ) -> JobStatus:
        """Wait for the job to end, reading its status every interval (``known``: a status just read,
        taken as the first reading)."""
        interval = self.poll_interval
        last: JobStatus | None = None
        limit = None if waiting_for_stop else self.wait_limit()
        started = time.monotonic()
        while True:
            if self._stopping.requested.is_set():
                self._stopping.wait_for_decision()
                self._stopping.settle_checking_owner(attempt, handle)
                raise AttemptInterrupted(
                    f"the task was told to stop; {describe_stop(self._stopping, handle)}"
                )
            status = known or self._call(lambda: self.get_job_status(handle), "read the job status")
            known = None
            if attempt is not None:
                faults.fault_point(faults.WHILE_POLLING, attempt.context)
            if not status.state.is_active:
                return status
            if self._stopping.requested.is_set():
                continue  # told to stop during the status call: settled at the top, no more calls
            if limit is not None and time.monotonic() - started > limit:
                self._give_up_waiting(attempt, handle, f"this attempt's wait limit of {limit:.0f} s")
            if attempt is not None:
                # On a store that does not fence replaced attempts itself (``sql``), a newer try or a
                # new lineage that took the record over makes this attempt stop, without cancelling.
                # Where the store fences them (``airflow``: the API server refuses a replaced task
                # instance's calls, and Airflow stops its process), polling reads nothing.
                if not attempt.backend.fences_replaced_attempts:
                    attempt.check_owner()
                if attempt.backend.records_outcomes and (last is None or status.state is not last.state):
                    attempt.write_as_owner(attempt.record.evolve(last_status=status))  # type: ignore[union-attr]
            if last is None or status.raw != last.raw:
                self.log.info("resumable: job %s is %s", handle.job_id, status.describe())
            last = status
            self._stopping.requested.wait(interval * random.uniform(0.9, 1.1))
            interval = min(interval * 1.5, self.max_poll_interval)

    def _give_up_waiting(self, attempt: Attempt | None, handle: JobHandle, why: str) -> None:
        """The job is still active (just read) and this attempt's wait budget is spent."""
        reason = f"the job was still running after {why}"
        if not self.cancel_at_wait_limit:
            raise JobFailedError(
                f"{reason}; job {handle.job_id} was left running (the operator does not cancel at its wait "
                "limit). A retry reattaches to it; raise the wait limit to wait longer in one attempt."
            )
        self.log.warning("resumable: %s; cancelling job %s", reason, handle.job_id)
        if attempt is not None and attempt.record is not None:
            attempt.write_as_owner(attempt.record.evolve(phase=Phase.SUBMITTED, stop_reason=STOP_WAIT_LIMIT))
        self._call(lambda: self.cancel_job(handle), "cancel the job")
        raise JobFailedError(
            f"job {handle.job_id} was asked to cancel: {reason}. Raise the operator's wait limit (or "
            "leave it unset) to wait longer; a retry waits for the job to stop, then applies "
            "on_prior_failure."
        )

    def _finish(self, attempt: Attempt, handle: JobHandle, status: JobStatus) -> Any:
        if status.state is JobState.CANCELLED and self._inherited == handle.job_id and attempt.record:
            # The clear's own cancel, taking effect after this attempt reattached: the cleared try could
            # not record it (Airflow's store refuses a cleared task instance), or it landed late (the
            # service took it asynchronously, or throttled it and the stop's follow-up carried it out).
            self.log.warning(
                "resumable: job %s, which this attempt took over from the lineage before a clear, was "
                "cancelled (%s): the clear's stop, not a failure of this lineage; a clear means rerun",
                handle.job_id,
                status.describe(),
            )
            self._inherited = None
            attempt.write_as_owner(
                attempt.record.evolve(
                    phase=Phase.DONE, handle=handle, last_status=status, stop_reason=STOP_CLEARED
                )
            )
            return _DECIDE_AGAIN
        if attempt.record is not None:
            done = attempt.record.evolve(phase=Phase.DONE, handle=handle, last_status=status)
            if attempt.backend.records_outcomes:
                attempt.write_as_owner(done)
            else:  # the next attempt reads the outcome from the job
                attempt.know(done)
        stats_incr(f"resumable.job.{status.state.value.lower()}", self._tags())
        if status.state is not JobState.SUCCEEDED:
            raise JobFailedError(
                f"job {handle.job_id} ended {status.describe()}"
                + (f" ({handle.url})" if handle.url else "")
                + (
                    ". The outcome is recorded"
                    if attempt.backend.records_outcomes
                    else ". The record keeps the job"
                )
                + f"; a retry applies on_prior_failure={self.on_prior_failure.value!r}."
            )
        self.log.info("resumable: job %s succeeded", handle.job_id)
        return self.job_result(attempt.context, handle, status)

    # ---- deferral ----------------------------------------------------------------------------

    def _deferrable(self) -> bool:
        return bool(getattr(self, "deferrable", False))

    def _defer(self, attempt: Attempt, handle: JobHandle, *, trigger_errors: int = 0) -> None:
        self.log.info("resumable: job %s recorded; deferring to the triggerer", handle.job_id)
        trigger = self.job_trigger(attempt.context, handle)
        handed: dict[str, Any] = {}
        if attempt.backend.fences_replaced_attempts and attempt.record is not None:
            handed = {"record": attempt.record.to_json(), "record_version": attempt.version}
        if trigger_errors:
            handed["trigger_errors"] = trigger_errors
        if self._inherited is not None:
            handed["inherited"] = self._inherited
        self.defer(trigger=trigger, method_name="execute_complete", kwargs=handed or None)

    # ---- stopping ----------------------------------------------------------------------------

    def on_kill(self) -> None:
        """Cancel the job only when the stop means "stop the job" (see docs/concepts.md)."""
        self._stopping.on_kill(self._attempt, self._handle)

    # ---- helpers -----------------------------------------------------------------------------

    def _announce(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        with through_supervisor():  # announce_job pushes XComs
            self.announce_job(context, handle)

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """Call the external system, retrying transient errors only: after the wait the system asked
        for (spread with jitter), or with exponential backoff and jitter where it asked for none."""
        tries = stop_after_attempt(self.status_retry_attempts)
        throttled_for = stop_after_delay(self.throttled_retry_seconds)

        def stop(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            throttled = error is not None and self.is_throttled(error)
            return throttled_for(state) if throttled else tries(state)

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            asked = self.retry_after(error) if error is not None else None
            self.log.warning(
                "resumable: could not %s (attempt %s): %s; retrying in %.1f s%s",
                what,
                state.attempt_number,
                error if error is not None else "",
                state.upcoming_sleep,
                f" (the service asked for {asked:g} s)" if asked is not None else "",
            )

        retrying = Retrying(
            retry=retry_if_exception(self.is_transient_error),
            stop=stop,
            wait=wait_retry_after(
                wait_exponential_jitter(initial=min(1.0, self.poll_interval), max=30), asked=self.retry_after
            ),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)

    def _log_decision(
        self, record: Record | RecordError | None, status: JobStatus | None, decision: Decision
    ) -> None:
        if isinstance(record, Record):
            found = (
                f"record phase={record.phase.value} lineage={record.lineage} owner=try {record.owner} "
                f"seq={record.seq} token={record.token}"
                + (f" job={record.handle.job_id}" if record.handle else "")
                + (f" stop_reason={record.stop_reason}" if record.stop_reason else "")
                + (f" status={status.describe()}" if status else " (no job found)")
            )
        elif isinstance(record, RecordError):
            found = "an unusable record"
        else:
            found = "no record"
        self.log.info("resumable: found %s; decided %s", found, decision.describe())
        stats_incr(f"resumable.decision.{decision.action.value}", self._tags())

    def _tags(self) -> dict[str, str]:
        return {"operator": type(self).__name__}


def _same_but_owner(adopted: Record, record: Record) -> bool:
    """Whether taking ``record`` over changes nothing but its owner (a retry in the same lineage)."""
    fields = ("phase", "handle", "stop_reason", "lineage", "retries", "clear_number", "run_after")
    return all(getattr(adopted, f) == getattr(record, f) for f in fields)


def _of_another_lineage(record: Record, attempt: Attempt) -> bool:
    """Whether ``record`` was written before a clear that started this attempt's lineage."""
    facts = attempt.facts
    if record.lineage != facts.lineage:
        return True
    # A clear can give max_tries its old value back; the DAG run's clear counter then tells (a clear of
    # another task of the run raises it too, but leaves this try's own record in place).
    cleared = record.clear_number is not None and facts.clear_number is not None
    return cleared and record.clear_number != facts.clear_number and record.owner != facts.try_number


def _event_message(event: Any) -> str | None:
    """The message of a trigger event that did not bring the job's outcome (``status`` other than
    ``success``), or ``None``."""
    if isinstance(event, Mapping) and "status" in event and str(event["status"]).lower() != "success":
        return str(event.get("message") or event["status"])
    return None


#: Triggers in a row that fail to watch a job still active before the worker waits for it itself.
MAX_TRIGGER_ERRORS = 5
#: Returned by a step after which the protocol decides again from the record.
_DECIDE_AGAIN = object()
#: Decisions one attempt makes at most (each after the record or the job changed).
MAX_DECISIONS = 6


E = TypeVar("E", PriorFailure, CancelOnKill)


def _choice(enum: type[E], value: str | E, name: str) -> E:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise ValueError(f"{name}={value!r} is not one of {allowed}") from None
