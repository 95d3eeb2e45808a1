"""ResumableMixin: runs the resume protocol around an operator's submit / status / cancel.

The mixin owns ``execute``: it reads the record, observes the job, lets :func:`decide` choose,
performs that choice (writing intent before every submit), polls, and writes the outcome.
``on_kill`` asks Airflow who is stopping the task before it cancels anything.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from resumable import faults
from resumable._compat import AirflowTaskTimeout, BaseOperatorMeta, stats_incr
from resumable.errors import (
    AttemptInterrupted,
    JobFailedError,
    RecordError,
    RecordUnreadableHere,
    ResumableError,
    SupersededError,
    TransientJobError,
    VersionConflict,
)
from resumable.job import JobHandle, JobState, JobStatus
from resumable.probe import AirflowTaskStateProbe, TaskStateProbe
from resumable.protocol import (
    Action,
    CancelOnKill,
    Decision,
    Facts,
    KillFacts,
    PriorFailure,
    decide,
    decide_kill,
)
from resumable.record import Phase, Record
from resumable.state import StateBackend, TaskScope, backend_for
from resumable.supervisor_calls import in_supervisor_call, through_supervisor
from resumable.tokens import make_token

T = TypeVar("T")

#: Default key of the record in the task's state; change it only for two jobs in one task.
DEFAULT_STATE_KEY = "resumable.job"
#: How many times a status, discovery or cancel call is tried when it fails transiently.
DEFAULT_STATUS_ATTEMPTS = 6


@dataclass
class _Attempt:
    """What one attempt knows while it runs (kept on the operator so ``on_kill`` can see it)."""

    context: Mapping[str, Any]
    scope: TaskScope
    backend: StateBackend
    key: str
    facts: Facts
    record: Record | None = None
    version: int | None = None

    @property
    def where(self) -> str:
        return f"{self.scope.describe()} key={self.key!r}"


class ResumableMixin:
    """Makes an operator that submits one external job survive the loss of its worker.

    Subclasses implement :meth:`submit_job`, :meth:`get_job_status` and :meth:`cancel_job` (and
    optionally :meth:`find_job`, :meth:`job_result`, :meth:`repair_job`, :meth:`job_trigger`);
    the mixin owns ``execute``, the state, polling, retries of status calls, kill semantics and
    the result path. Put it first in the bases: ``class MyOperator(ResumableMixin, BaseOperator)``.
    """

    #: The external system's name, written into every handle; a handle of another system is refused.
    job_system: str = "job"
    #: Whether reaching :meth:`wait_limit` cancels the job (it always fails the attempt).
    cancel_at_wait_limit: bool = True

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
        self._attempt: _Attempt | None = None
        self._handle: JobHandle | None = None
        self._stop = threading.Event()
        self._timed_out = False
        self._stop_cancelled = False
        # One stop decision per attempt, whether on_kill or the polling loop comes to it first.
        self._settle_lock = threading.RLock()
        self._settling = False
        self._settled: bool | None = None
        self._kill_thread: threading.Thread | None = None
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
        """

    def waits_for_job(self) -> bool:
        """Whether the task waits for the job to end; ``False`` finishes right after submit or reattach."""
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

    # ---- execute -----------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        if not self.resumable:
            return self._execute_plain(context)
        attempt = self._begin(context)
        for _ in range(3):
            record = self._read(attempt)
            handle, status = self._observe(attempt, record)
            decision = decide(record, status, attempt.facts)
            self._log_decision(attempt, record, status, decision)
            try:
                return self._perform(attempt, record, handle, status, decision)
            except VersionConflict as conflict:
                self.log.warning(
                    "resumable: the record of %s changed while this attempt acted on it (%s); deciding again",
                    attempt.where,
                    conflict,
                )
        raise SupersededError(f"the record of {attempt.where} kept changing under this attempt; giving up")

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        """Where a deferred task resumes: read the job's status once more and finish."""
        attempt = self._begin(context)
        record = self._read(attempt)
        if not isinstance(record, Record) or record.handle is None:
            raise RecordError(
                f"The resumable record of {attempt.where} was missing or unusable when the trigger fired "
                f"({record}). Nothing was submitted; clear the task to start again."
            )
        self._check_owner(attempt)
        self._handle = record.handle
        status = self._call(lambda: self.get_job_status(record.handle), "read the job status")  # type: ignore[arg-type]
        if status.state.is_active:
            self.log.info("resumable: trigger fired but job is %s; deferring again", status.describe())
            self._defer(attempt, record.handle)
        if status.state is JobState.FAILED and self.repair_in_attempt(context, record.handle, status):
            handle = self._repair(attempt, record.handle, f"it ended {status.describe()} while deferred")
            self._announce(context, handle)
            self._defer(attempt, handle)
        return self._finish(attempt, record.handle, status)

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
            _run_after(context),
        )
        self.log.info("resumable: resumable=False, submitting without keeping state")
        handle = self._handle = self.submit_job(context, token)
        faults.fault_point(faults.AFTER_SUBMIT, context)
        status = self._poll(None, handle)
        if status.state is not JobState.SUCCEEDED:
            raise JobFailedError(f"job {handle.job_id} ended {status.describe()}")
        return self.job_result(context, handle, status)

    def _begin(self, context: Any) -> _Attempt:
        ti = context["ti"]
        self._stop.clear()
        self._timed_out = False
        self._stop_cancelled, self._settled, self._kill_thread = False, None, None
        backend = backend_for(context)
        attempt = _Attempt(
            context=context,
            scope=TaskScope.from_context(context),
            backend=backend,
            key=self.state_key,
            facts=Facts(
                lineage=int(ti.max_tries),
                try_number=int(ti.try_number),
                on_prior_failure=self.on_prior_failure,
            ),
        )
        self._attempt = attempt
        self.log.info(
            "resumable: try %s of lineage %s, state backend %s",
            attempt.facts.try_number,
            attempt.facts.lineage,
            backend.describe(),
        )
        return attempt

    def _read(self, attempt: _Attempt) -> Record | RecordError | None:
        found = attempt.backend.get(attempt.scope, attempt.key)
        attempt.record, attempt.version = None, None
        if found is None:
            return None
        attempt.version = found.version
        hint = attempt.backend.clear_hint(attempt.scope, attempt.key)
        try:
            record = Record.from_json(found.value, where=attempt.where, clear_hint=hint)
        except RecordError as error:
            return error
        mine = _class_path(type(self))
        if record.operator != mine:
            return RecordError(
                f"The resumable record {attempt.where} was written by {record.operator}, not {mine}: "
                f"two operators share one state key. Nothing was submitted and the record was left as it "
                f"is. Give one of them another state_key, or clear the record with: {hint}"
            )
        if record.handle is not None and record.handle.system != self.job_system:
            return RecordError(
                f"The resumable record {attempt.where} holds a {record.handle.system!r} job handle, which "
                f"{mine} (system {self.job_system!r}) cannot read. Nothing was submitted and the record was "
                f"left as it is. Clear it with: {hint}"
            )
        attempt.record = record
        return record

    def _observe(
        self, attempt: _Attempt, record: Record | RecordError | None
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
        attempt: _Attempt,
        record: Record | RecordError | None,
        handle: JobHandle | None,
        status: JobStatus | None,
        decision: Decision,
    ) -> Any:
        if decision.action is Action.FAIL:
            if isinstance(record, RecordError):
                raise record
            raise JobFailedError(
                f"{decision.reason}. The failed job is kept in the record of {attempt.where}; "
                "clear the task in Airflow to submit a new one, or set on_prior_failure='resubmit'."
            )
        if decision.action is Action.FINISH:
            assert handle is not None and status is not None
            self._handle = handle
            self._announce(attempt.context, handle)
            return self.job_result(attempt.context, handle, status)
        if decision.action is Action.SUBMIT:
            prior = record if isinstance(record, Record) else None
            handle = self._submit(attempt, prior, decision.reuse_token)
        elif decision.action is Action.REPAIR:
            assert isinstance(record, Record) and handle is not None
            handle = self._repair(attempt, handle, decision.reason)
        else:
            assert isinstance(record, Record) and handle is not None
            self._write(
                attempt,
                record.evolve(
                    phase=Phase.SUBMITTED, handle=handle, owner=attempt.facts.try_number, stop_reason=None
                ),
            )
            self.log.info(
                "resumable: took ownership of job %s as try %s", handle.job_id, attempt.facts.try_number
            )
            stats_incr("resumable.reattach", self._tags())
        self._handle = handle
        self._announce(attempt.context, handle)
        if not self.waits_for_job():
            self.log.info(
                "resumable: job %s recorded; not waiting for it to end (as configured)", handle.job_id
            )
            return self.job_result(attempt.context, handle, status or JobStatus(JobState.PENDING))
        if self._deferrable():
            deferred: JobHandle = handle
            status = self._call(lambda: self.get_job_status(deferred), "read the job status")
            if status.state.is_active:  # a job that already ended needs no trigger
                self._defer(attempt, deferred)
        else:
            status = self._poll(attempt, handle)
        if status.state is JobState.FAILED and self.repair_in_attempt(attempt.context, handle, status):
            handle = self._repair(attempt, handle, f"it ended {status.describe()} during this attempt")
            self._announce(attempt.context, handle)
            status = self._poll(attempt, handle)
        return self._finish(attempt, handle, status)

    def _repair(self, attempt: _Attempt, handle: JobHandle, why: str) -> JobHandle:
        self.log.warning("resumable: repairing job %s because %s", handle.job_id, why)
        handle = self.repair_job(attempt.context, handle)
        stats_incr("resumable.repair", self._tags())
        assert attempt.record is not None
        self._write_as_owner(
            attempt,
            attempt.record.evolve(
                phase=Phase.SUBMITTED,
                handle=handle,
                owner=attempt.facts.try_number,
                last_status=None,
                stop_reason=None,
            ),
        )
        self._handle = handle
        return handle

    def _submit(self, attempt: _Attempt, prior: Record | None, reuse_token: bool) -> JobHandle:
        facts, scope, ctx = attempt.facts, attempt.scope, attempt.context
        if prior is not None and reuse_token:
            lineage, seq, token = prior.lineage, prior.seq, prior.token
        else:
            same = prior is not None and prior.lineage == facts.lineage
            lineage, seq = facts.lineage, (prior.seq + 1 if same and prior is not None else 1)
            token = make_token(
                scope.dag_id, scope.run_id, scope.task_id, scope.map_index, lineage, seq, _run_after(ctx)
            )
        intent = Record(
            lineage=lineage,
            owner=facts.try_number,
            seq=seq,
            phase=Phase.SUBMITTING,
            token=token,
            operator=_class_path(type(self)),
        )
        faults.fault_point(faults.BEFORE_INTENT, ctx)
        self._write(attempt, intent)
        faults.fault_point(faults.AFTER_INTENT, ctx)
        self.resubmitting_token = prior is not None and reuse_token
        try:
            handle = self.submit_job(ctx, token)
        finally:
            self.resubmitting_token = False
        stats_incr("resumable.submit", self._tags())
        faults.fault_point(faults.AFTER_SUBMIT, ctx)
        self._write(attempt, intent.evolve(phase=Phase.SUBMITTED, handle=handle))
        self.log.info(
            "resumable: submitted job %s with token %s (%s)", handle.job_id, token, handle.url or "no url"
        )
        faults.fault_point(faults.AFTER_HANDLE, ctx)
        return handle

    def _write(self, attempt: _Attempt, record: Record) -> None:
        attempt.version = attempt.backend.put(attempt.scope, attempt.key, record.to_json(), attempt.version)
        attempt.record = record

    def _write_as_owner(self, attempt: _Attempt, record: Record) -> None:
        """Write once the job is ours: losing the race now means a newer try took the job over."""
        try:
            self._write(attempt, record)
        except VersionConflict as conflict:
            raise SupersededError(
                f"the record of {attempt.where} was changed by another attempt ({conflict}); this attempt "
                "stops and does not cancel the job"
            ) from conflict

    def _poll(self, attempt: _Attempt | None, handle: JobHandle) -> JobStatus:
        interval = self.poll_interval
        last: JobStatus | None = None
        limit, started = self.wait_limit(), time.monotonic()
        try:
            while True:
                if limit is not None and time.monotonic() - started > limit:
                    self._give_up_waiting(attempt, handle, limit)
                if self._stop.is_set():
                    self._await_kill_settle()
                    raise AttemptInterrupted(
                        f"the task was told to stop; job {handle.job_id} was "
                        f"{'cancelled' if self._stop_cancelled else 'kept for the retry to reattach'}"
                    )
                status = self._call(lambda: self.get_job_status(handle), "read the job status")
                if attempt is not None:
                    faults.fault_point(faults.WHILE_POLLING, attempt.context)
                if not status.state.is_active:
                    return status
                if self._stop.is_set():
                    continue  # told to stop during the status call: settled at the top, no more calls
                if attempt is not None:
                    self._check_owner_while_polling(attempt, handle)
                    if last is None or status.state is not last.state:
                        self._write_as_owner(attempt, attempt.record.evolve(last_status=status))  # type: ignore[union-attr]
                if last is None or status.raw != last.raw:
                    self.log.info("resumable: job %s is %s", handle.job_id, status.describe())
                last = status
                self._stop.wait(interval * random.uniform(0.9, 1.1))
                interval = min(interval * 1.5, self.max_poll_interval)
        except AirflowTaskTimeout:
            self._timed_out = True
            raise

    def _check_owner_while_polling(self, attempt: _Attempt, handle: JobHandle) -> None:
        try:
            self._check_owner(attempt)
        except RecordUnreadableHere:
            if attempt.backend.name != "airflow":
                raise
            # A clear or a retry replaced this attempt's task instance before Airflow told the
            # worker to stop: settle it as on_kill would (a clear cancels, a successor keeps).
            cancelled = self._settle_stop(attempt, handle, None)
            raise SupersededError(
                f"this attempt's task instance was replaced in Airflow; job {handle.job_id} was "
                + (
                    "cancelled because the task was cleared"
                    if cancelled
                    else "kept for the try that owns it now"
                )
            ) from None

    def _give_up_waiting(self, attempt: _Attempt | None, handle: JobHandle, limit: float) -> None:
        reason = f"the job was still running after this attempt's wait limit of {limit:.0f} s"
        if not self.cancel_at_wait_limit:
            raise JobFailedError(
                f"{reason}; job {handle.job_id} was left running (the operator does not cancel at its wait "
                "limit). A retry reattaches to it; raise the wait limit to wait longer in one attempt."
            )
        self.log.warning("resumable: %s; cancelling job %s", reason, handle.job_id)
        self._call(lambda: self.cancel_job(handle), "cancel the job")
        if attempt is not None and attempt.record is not None:
            self._write_as_owner(
                attempt,
                attempt.record.evolve(
                    phase=Phase.DONE, last_status=JobStatus(JobState.CANCELLED, "", reason)
                ),
            )
        raise JobFailedError(
            f"job {handle.job_id} was cancelled: {reason}. Raise the operator's wait limit (or leave it "
            "unset) to wait longer; a retry applies on_prior_failure to the cancelled job."
        )

    def _check_owner(self, attempt: _Attempt) -> None:
        """Stop (without cancelling) if a newer try or a new lineage owns the record now."""
        found = attempt.backend.get(attempt.scope, attempt.key)
        mine = attempt.record
        current = found.value if found is not None else None
        if mine is None or not isinstance(current, dict):
            raise RecordUnreadableHere(f"the record of {attempt.where} disappeared; not cancelling anything")
        if (current.get("owner"), current.get("lineage"), current.get("token")) != (
            mine.owner,
            mine.lineage,
            mine.token,
        ):
            raise SupersededError(
                f"try {current.get('owner')} (lineage {current.get('lineage')}) owns the job of "
                f"{attempt.where} now; try {mine.owner} stops polling and does not cancel it"
            )
        attempt.version = found.version  # type: ignore[union-attr]

    def _finish(self, attempt: _Attempt, handle: JobHandle, status: JobStatus) -> Any:
        if attempt.record is not None:
            self._write_as_owner(
                attempt, attempt.record.evolve(phase=Phase.DONE, handle=handle, last_status=status)
            )
        stats_incr(f"resumable.job.{status.state.value.lower()}", self._tags())
        if status.state is not JobState.SUCCEEDED:
            raise JobFailedError(
                f"job {handle.job_id} ended {status.describe()}"
                + (f" ({handle.url})" if handle.url else "")
                + ". The outcome is recorded; a retry applies on_prior_failure="
                + f"{self.on_prior_failure.value!r}."
            )
        self.log.info("resumable: job %s succeeded", handle.job_id)
        return self.job_result(attempt.context, handle, status)

    # ---- deferral ----------------------------------------------------------------------------

    def _deferrable(self) -> bool:
        return bool(getattr(self, "deferrable", False))

    def _defer(self, attempt: _Attempt, handle: JobHandle) -> None:
        self.log.info("resumable: job %s recorded; deferring to the triggerer", handle.job_id)
        trigger = self.job_trigger(attempt.context, handle)
        self.defer(trigger=trigger, method_name="execute_complete")

    # ---- stopping ----------------------------------------------------------------------------

    def on_kill(self) -> None:
        """Cancel the job only when the stop means "stop the job" (see docs/concepts.md)."""
        self._stop.set()
        attempt, handle = self._attempt, self._handle
        if handle is None:
            self.log.info("resumable: stopped before a job was submitted; nothing to cancel")
            return
        if self._stop_cancelled:
            self.log.info("resumable: job %s was already cancelled by this attempt", handle.job_id)
            return
        if in_supervisor_call():
            # SIGTERM runs this in the main thread, which was waiting for the supervisor's answer:
            # a call from here would wait behind it forever. Decide in a thread that proceeds as
            # soon as the interrupted call returns; the attempt waits for it before it ends.
            self.log.info(
                "resumable: the stop interrupted a call to Airflow; deciding about job %s once it returns",
                handle.job_id,
            )
            self._kill_thread = threading.Thread(
                target=self._settle_on_kill, args=(attempt, handle), name="resumable-on-kill", daemon=True
            )
            self._kill_thread.start()
            return
        self._settle_on_kill(attempt, handle)

    def _settle_on_kill(self, attempt: _Attempt | None, handle: JobHandle) -> None:
        with self._settle_lock:  # a decision in progress on another thread is waited for
            if self._settling or self._settled is not None:
                return
            owns: bool | None = True
            if attempt is not None:
                try:
                    self._check_owner(attempt)
                except RecordUnreadableHere:
                    owns = None if attempt.backend.name == "airflow" else False
                except SupersededError:
                    owns = False
                except Exception as error:  # noqa: BLE001 - unreachable state: keep, never guess
                    self.log.warning("resumable: could not read the record while stopping (%s)", error)
            self._settle_stop(attempt, handle, owns)

    def _await_kill_settle(self) -> None:
        """Wait for the decision on_kill handed to a thread (the supervisor bounds the wait)."""
        if self._kill_thread is not None:
            self._kill_thread.join()

    def _settle_stop(self, attempt: _Attempt | None, handle: JobHandle, owns: bool | None) -> bool:
        """Apply the "who asked?" rules to a stopping attempt; returns whether the job was cancelled.

        ``owns=None``: the airflow backend reads the record through this attempt's task-instance
        id, which a clear or a retry replaces; the record is then out of reach, not gone, and
        Airflow's view of the task instance decides.

        The first caller decides for the attempt; later callers get its answer. on_kill coming in
        on the thread that is deciding (SIGTERM in the middle of it) returns at once and leaves the
        decision to it.
        """
        with self._settle_lock:
            if self._settling:
                return False
            if self._settled is None:
                self._settling = True
                try:
                    self._settled = self._decide_stop(attempt, handle, owns)
                finally:
                    self._settling = False
            return self._settled

    def _decide_stop(self, attempt: _Attempt | None, handle: JobHandle, owns: bool | None) -> bool:
        ti_state = None
        if owns is None or (self.cancel_on_kill is CancelOnKill.USER_STOP and owns and not self._timed_out):
            ti_state = self.task_state_probe.state_of(attempt.context if attempt else {})
        verdict = decide_kill(KillFacts(self.cancel_on_kill, self._timed_out, owns, ti_state))
        stats_incr("resumable.kill." + ("cancel" if verdict.cancel else "keep"), self._tags())
        self.log.warning(
            "resumable: stopping with job %s: %s -> %s",
            handle.job_id,
            verdict.reason,
            "cancel the job" if verdict.cancel else "keep the job",
        )
        if not verdict.cancel:
            return False
        self._stop_cancelled = True
        self._call(lambda: self.cancel_job(handle), "cancel the job")
        if owns is None:
            self.log.info(
                "resumable: the record is out of this attempt's reach (its task instance was replaced); "
                "the next attempt reads the job's state instead"
            )
        elif attempt is not None and attempt.record is not None:
            try:
                self._write(
                    attempt,
                    attempt.record.evolve(
                        phase=Phase.DONE,
                        last_status=JobStatus(JobState.CANCELLED, "", verdict.reason),
                        stop_reason=verdict.stop_reason,
                    ),
                )
            except (VersionConflict, ResumableError) as error:
                self.log.warning("resumable: job cancelled but the record was not updated (%s)", error)
        return True

    # ---- helpers -----------------------------------------------------------------------------

    def _announce(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        with through_supervisor():  # announce_job pushes XComs
            self.announce_job(context, handle)

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """Call the external system, retrying transient errors only (with backoff and jitter)."""
        retrying = Retrying(
            retry=retry_if_exception(self.is_transient_error),
            stop=stop_after_attempt(self.status_retry_attempts),
            wait=wait_exponential_jitter(initial=min(1.0, self.poll_interval), max=30),
            before_sleep=lambda rs: self.log.warning(
                "resumable: could not %s (attempt %s): %s; retrying",
                what,
                rs.attempt_number,
                rs.outcome.exception() if rs.outcome else "",
            ),
            reraise=True,
        )
        return retrying(fn)

    def _log_decision(
        self,
        attempt: _Attempt,
        record: Record | RecordError | None,
        status: JobStatus | None,
        decision: Decision,
    ) -> None:
        if isinstance(record, Record):
            found = (
                f"record phase={record.phase.value} lineage={record.lineage} owner=try {record.owner} "
                f"seq={record.seq} token={record.token}"
                + (f" job={record.handle.job_id}" if record.handle else "")
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


def _run_after(context: Mapping[str, Any]) -> str:
    run_after = getattr(context.get("dag_run"), "run_after", None)
    return "" if run_after is None else str(run_after)


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


E = TypeVar("E", PriorFailure, CancelOnKill)


def _choice(enum: type[E], value: str | E, name: str) -> E:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise ValueError(f"{name}={value!r} is not one of {allowed}") from None
