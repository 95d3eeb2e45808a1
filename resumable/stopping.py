"""What an attempt does when it is told to stop: remember the stop, decide it once, perform it.

``on_kill`` runs on every SIGTERM (eviction, restart, a person's mark failed or clear, a zombie
put down) and after ``execution_timeout``. :class:`StopControl` remembers that a stop came (even
before the job's id is known), asks who is stopping the task, lets
:func:`resumable.protocol.decide_kill` rule, and then cancels or keeps the job, recording a
cancel as asked for (never as the outcome: the job says when it has stopped).
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from resumable._compat import stats_incr
from resumable.errors import RecordUnreadableHere, SupersededError, VersionConflict
from resumable.job import JobHandle
from resumable.protocol import CancelOnKill, KillDecision, KillFacts, decide_kill
from resumable.record import Phase
from resumable.supervisor_calls import in_supervisor_call

if TYPE_CHECKING:
    from resumable.attempt import Attempt
    from resumable.mixin import ResumableMixin


#: How often a stopping attempt reads its record before it gives up telling whether it owns the job.
OWNER_READ_TRIES = 3
OWNER_READ_PAUSE = 0.2


class StopControl:
    """One attempt's stop: requested at most once, decided at most once, whoever comes to it first.

    ``on_kill``, the polling loop (which notices a replaced task instance), the submit path
    (a stop that came while the submit call was in flight) and the timeout path all end here. The
    decision (cancel or keep) is taken once; a "cancel" is then applied to every job this attempt
    comes to know, including one whose id arrives after the decision.
    """

    def __init__(self, operator: ResumableMixin) -> None:
        self._op = operator
        self.requested = threading.Event()
        self.timed_out = False
        #: Whether this attempt asked the system to cancel its job.
        self.cancelled = False
        #: The token of the submit call in flight (its answer, the job's id, has not come back yet).
        self.submitting: str | None = None
        #: Whether a stop came before this attempt began (Airflow installs its SIGTERM handler
        #: before it renders templates and calls ``execute``): the attempt it belongs to starts stopped.
        self._before_begin = False
        self._lock = threading.RLock()
        self._deciding = False
        self._verdict: KillDecision | None = None
        self._owns: bool | None = None
        self._cancelled_jobs: set[str] = set()
        self._thread: threading.Thread | None = None
        #: The process that goes on looking for the job of the in-flight submit after this one is killed.
        self.follower: int | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> StopControl:
        """A copy belongs to the copied operator, with no stop of its own (locks and events are not
        copyable; Airflow 3.0's ``dag.test()`` deep-copies operators)."""
        return StopControl(copy.deepcopy(self._op, memo))

    def reset(self) -> None:
        """Forget the previous attempt's stop (an operator object can run more than one attempt); a stop
        that came before this attempt began is kept: it is this attempt's."""
        if self._before_begin:
            self._before_begin = False
            self._op.log.warning(
                "resumable: this attempt was told to stop before it began; it submits nothing and decides "
                "about any job it finds by the same rules"
            )
        else:
            self.requested.clear()
        self.timed_out = self.cancelled = False
        self.submitting = None
        self._verdict, self._owns, self._thread, self.follower = None, None, None, None
        self._cancelled_jobs = set()

    @property
    def decided(self) -> bool:
        return self._verdict is not None

    def on_kill(self, attempt: Attempt | None, handle: JobHandle | None) -> None:
        """Remember the stop and decide it now (or once Airflow can be asked), job id known or not."""
        log = self._op.log
        self.requested.set()
        if attempt is None:
            self._before_begin = True
            log.info("resumable: told to stop before this attempt began; it will submit nothing")
            return
        token = self.submitting
        if handle is None and token is None:
            log.info(
                "resumable: told to stop before the job's id was known; nothing is submitted from now on, "
                "and a job found or submitted meanwhile is stopped by the same rules as soon as it is known"
            )
            return
        if handle is not None and self.decided and handle.job_id in self._cancelled_jobs:
            log.info("resumable: the stop of job %s was already decided by this attempt", handle.job_id)
            return
        if handle is None:
            # Airflow SIGKILLs the task a few seconds after SIGTERM: the submit's answer may never come.
            # Decide now, without it: the job is learnt from its token (here or after this process).
            log.warning(
                "resumable: told to stop while the submit of token %s is in flight (its job's id has not "
                "come back); deciding now without waiting for it",
                token,
            )
        if in_supervisor_call():
            # SIGTERM runs this in the main thread, which was waiting for the supervisor's answer:
            # a call from here would wait behind it forever. Decide in a thread that proceeds as
            # soon as the interrupted call returns; the attempt waits for it before it ends.
            log.info(
                "resumable: the stop interrupted a call to Airflow; deciding about %s once it returns",
                f"job {handle.job_id}" if handle else f"the job of token {token}",
            )
            self._thread = threading.Thread(
                target=self.settle_checking_owner,
                args=(attempt, handle),
                kwargs={"before_sigkill": True},
                name="resumable-on-kill",
                daemon=True,
            )
            self._thread.start()
            return
        self.settle_checking_owner(attempt, handle, before_sigkill=True)

    def wait_for_decision(self) -> None:
        """Wait for the decision on_kill handed to a thread (the supervisor bounds the wait)."""
        if self._thread is not None:
            self._thread.join()

    def settle_checking_owner(
        self, attempt: Attempt | None, handle: JobHandle | None, *, before_sigkill: bool = False
    ) -> bool:
        """Decide the stop after asking the record whether this attempt still owns the job, then apply it
        to ``handle`` (or, when no id is known, to the job of the in-flight submit's token)."""
        with self._lock:  # a decision in progress on another thread is waited for
            if self._deciding:
                return False
            if self._verdict is None:
                owns: bool | None = True if attempt is None else self._read_ownership(attempt)
                return self.settle(attempt, handle, owns, before_sigkill=before_sigkill)
            return self._apply(attempt, handle, before_sigkill=before_sigkill)

    def _read_ownership(self, attempt: Attempt) -> bool | None:
        """Whether this attempt still owns its record; ``None`` when that cannot be told from here."""
        for tries_left in range(OWNER_READ_TRIES - 1, -1, -1):
            try:
                attempt.check_owner()
                return True
            except RecordUnreadableHere:
                return None if attempt.backend.name == "airflow" else False
            except SupersededError:
                return False
            except Exception as error:  # noqa: BLE001 - a failing store is asked again, then Airflow decides
                self._op.log.warning(
                    "resumable: could not read the record while stopping (%s)%s",
                    error,
                    "; asking again" if tries_left else "; Airflow's view of the task decides",
                )
                if tries_left:
                    time.sleep(OWNER_READ_PAUSE)
        return None

    def settle(
        self,
        attempt: Attempt | None,
        handle: JobHandle | None,
        owns: bool | None,
        *,
        before_sigkill: bool = False,
    ) -> bool:
        """Apply the "who asked?" rules once; returns whether a job was (or is being) cancelled.

        ``owns=None``: the airflow backend reads the record through this attempt's task-instance
        id, which a clear or a retry replaces; the record is then out of reach, not gone, and
        Airflow's view of the task instance decides. The first caller decides for the attempt;
        later callers get its answer applied to the job they know. A caller coming in on the thread
        that is deciding (SIGTERM in the middle of it) returns at once and leaves the decision to it.
        """
        with self._lock:
            if self._deciding:
                return False
            if self._verdict is None:
                self._deciding = True
                try:
                    self._verdict, self._owns = self._decide(attempt, handle, owns), owns
                finally:
                    self._deciding = False
            return self._apply(attempt, handle, before_sigkill=before_sigkill)

    def _decide(self, attempt: Attempt | None, handle: JobHandle | None, owns: bool | None) -> KillDecision:
        op, log = self._op, self._op.log
        finished = attempt.record if attempt is not None and attempt.record is not None else None
        if finished is not None and finished.phase is Phase.DONE:
            # The job already ended and this attempt knows its outcome (the stop came after it, while the
            # task was reporting): there is nothing to stop, and the record stays as it is.
            log.info(
                "resumable: stopped after job %s ended (%s); nothing to cancel",
                finished.handle.job_id if finished.handle else "?",
                finished.last_status.describe() if finished.last_status else "outcome recorded",
            )
            return KillDecision(False, "the job had already ended")
        ti_state = None
        if op.cancel_on_kill is not CancelOnKill.NEVER and owns is not False:
            ti_state = op.task_state_probe.state_of(attempt.context if attempt else {})
        facts = KillFacts(op.cancel_on_kill, self.timed_out, owns, ti_state)
        verdict = decide_kill(facts)
        if verdict.cancel and owns is None and handle is not None:
            # A replaced attempt sees its successor's state: a successor that ended with the job (its
            # state success or failed) must not read as a person's stop. The job tells which it is.
            verdict = decide_kill(replace(facts, job_ended=self._job_ended(handle)))
        stats_incr("resumable.kill." + ("cancel" if verdict.cancel else "keep"), op._tags())
        what = f"job {handle.job_id}" if handle else "no job id known yet"
        log.warning(
            "resumable: stopping with %s: %s -> %s",
            what,
            verdict.reason,
            "cancel the job" if verdict.cancel else "keep the job",
        )
        return verdict

    def _job_ended(self, handle: JobHandle) -> bool | None:
        """Whether ``handle``'s job has ended, by one status read (no retries: Airflow SIGKILLs the task
        5 s after the SIGTERM); ``None`` when the service does not tell."""
        try:
            status = self._op.get_job_status(handle)
        except Exception as error:  # noqa: BLE001 - not told: the rules decide without it
            self._op.log.warning(
                "resumable: could not read job %s's status while stopping (%s)", handle.job_id, error
            )
            return None
        return status.state.is_terminal

    def _apply(self, attempt: Attempt | None, handle: JobHandle | None, *, before_sigkill: bool) -> bool:
        """Carry the decision out on ``handle``, or on the job of the record's token when no id is known."""
        verdict = self._verdict
        assert verdict is not None
        if not verdict.cancel:
            return False
        record = attempt.record if attempt is not None else None
        if handle is None and record is not None and record.phase is not Phase.SUBMITTING:
            handle = record.handle  # the job this attempt was about to look at
        if handle is None:
            if attempt is None or attempt.record is None or attempt.record.phase is not Phase.SUBMITTING:
                return False
            if not self._record_stop(attempt, attempt.record, None, verdict):
                return False
            if before_sigkill:
                self._follow_after_this_process(attempt, attempt.record.token, verdict)
                return True
            handle = self._op._recover_handle(attempt)
            if handle is None:
                self._op.log.warning(
                    "resumable: no job of token %s was found; nothing to cancel. The record keeps the stop: "
                    "the next attempt cancels a job of that token if one turns up",
                    attempt.record.token,
                )
                return False
        if handle.job_id in self._cancelled_jobs:
            return True
        record = attempt.record if attempt is not None else None
        if record is not None and not self._record_stop(attempt, record, handle, verdict):
            return False
        self._cancelled_jobs.add(handle.job_id)
        self.cancelled = True
        op, log = self._op, self._op.log
        if attempt is not None:
            # Airflow SIGKILLs the task a few seconds after SIGTERM (also when the stop is decided here,
            # once the job's id is known), and after a final timeout no try comes: a cancel the service
            # does not take at once (it throttles, it is down) is carried on by a process that outlives
            # this one.
            self._follow_after_this_process(attempt, None, verdict, handle=handle)
        try:
            op._call(lambda: op.cancel_job(handle), "cancel the job")
        except Exception as error:  # noqa: BLE001 - logged with what was kept; the next attempt asks again
            log.error(
                "resumable: could not cancel job %s (%s). The record says a cancel was asked for: the next "
                "attempt waits for the job to stop and asks again.",
                handle.job_id,
                error,
            )
            return True
        log.warning("resumable: asked the system to cancel job %s (%s)", handle.job_id, verdict.stop_reason)
        return True

    def _follow_after_this_process(
        self, attempt: Attempt, token: str | None, verdict: KillDecision, handle: JobHandle | None = None
    ) -> None:
        """Hand the job of ``token`` (or the known job ``handle``) to a process that outlives this one:
        Airflow SIGKILLs this one a few seconds after SIGTERM, and the submit's answer (the job's id),
        or the service's acceptance of the cancel, may come later than that."""
        from resumable import follow_up

        seconds = follow_up.budget_seconds()
        what = f"job {handle.job_id}" if handle is not None else f"the job of token {token}"
        self.follower = follow_up.start(self._op, attempt, token, handle)
        if self.follower is None:
            self._op.log.warning(
                "resumable: could not start a process to stop %s after this one ends; the record keeps "
                "the stop, and the next attempt, `resumable state` or the page cancels it",
                what,
            )
            return
        if handle is not None:
            self._op.log.info(
                "resumable: process %s makes sure job %s is cancelled (%s) if the service does not take "
                "this attempt's cancel before Airflow kills it (for up to %.0f s)",
                self.follower,
                handle.job_id,
                verdict.stop_reason,
                seconds,
            )
            return
        self._op.log.warning(
            "resumable: process %s looks for %s for up to %.0f s (a repeated submit with the token, or "
            "find_job) and cancels it (%s), whether or not this process is killed first; the record "
            "keeps the stop for whoever comes next",
            self.follower,
            what,
            seconds,
            verdict.stop_reason,
        )

    def _record_stop(
        self, attempt: Attempt | None, record: Any, handle: JobHandle | None, verdict: KillDecision
    ) -> bool:
        """Write "cancel asked for" before asking (with the job, or with its token only when its id is
        unknown); ``False`` when a newer try took the record meanwhile."""
        owns = self._owns
        if owns is None or attempt is None:
            if owns is None:
                self._op.log.info(
                    "resumable: the record is out of this attempt's reach (its task instance was replaced); "
                    "the next attempt reads the job's state instead"
                )
            return True
        # This attempt's own stop: about whatever job its lineage has, also one it created with an earlier
        # lineage's token (whose inherited stop was not about it).
        reuse = replace(record.reuse, stop=None) if record.reuse is not None else None
        if handle is None:
            stopped = record.evolve(stop_reason=verdict.stop_reason, reuse=reuse)
        else:
            stopped = record.evolve(
                phase=Phase.SUBMITTED, handle=handle, stop_reason=verdict.stop_reason, reuse=reuse
            )
        try:
            attempt.write(stopped)
        except VersionConflict as conflict:
            if not self._still_owner_after(attempt, conflict):
                return False
            try:
                attempt.write(stopped)
            except Exception as error:  # noqa: BLE001 - ownership was just read: cancel anyway
                self._op.log.warning("resumable: cancelling, but the record was not updated (%s)", error)
        except Exception as error:  # noqa: BLE001 - a store that fails (any error) must not keep the job running
            # Ownership was read a moment ago; the stop was asked for: the job is cancelled anyway.
            self._op.log.warning("resumable: cancelling, but the record was not updated (%s)", error)
        return True

    def _still_owner_after(self, attempt: Attempt, conflict: VersionConflict) -> bool:
        """After a write lost to a newer version: whether that version is this attempt's own (a write
        whose answer was lost) rather than a newer try's. Reads the record again."""
        try:
            attempt.check_owner()
        except SupersededError:
            self._op.log.warning(
                "resumable: a newer try changed the record while this attempt stopped (%s): not cancelling",
                conflict,
            )
            return False
        except Exception as error:  # noqa: BLE001 - cannot tell: ownership was read a moment ago
            self._op.log.warning("resumable: could not read the record again while stopping (%s)", error)
        return True


def describe_stop(control: StopControl, handle: JobHandle | None) -> str:
    """How the stop ended, for the error that ends the attempt."""
    job: Any = handle.job_id if handle else "(none yet)"
    if control.cancelled:
        return f"job {job} was asked to cancel"
    return f"job {job} was kept for the retry to reattach" if handle else "nothing was submitted"
