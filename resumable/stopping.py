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
    (a stop that came while the submit call was in flight) and the timeout path all end here.
    """

    def __init__(self, operator: ResumableMixin) -> None:
        self._op = operator
        self.requested = threading.Event()
        self.timed_out = False
        #: Whether this attempt asked the system to cancel its job.
        self.cancelled = False
        self._lock = threading.RLock()
        self._deciding = False
        self._decided: bool | None = None
        self._thread: threading.Thread | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> StopControl:
        """A copy belongs to the copied operator, with no stop of its own (locks and events are not
        copyable; Airflow 3.0's ``dag.test()`` deep-copies operators)."""
        return StopControl(copy.deepcopy(self._op, memo))

    def reset(self) -> None:
        """Forget the previous attempt's stop (an operator object can run more than one attempt)."""
        self.requested.clear()
        self.timed_out = self.cancelled = False
        self._decided, self._thread = None, None

    @property
    def decided(self) -> bool:
        return self._decided is not None

    def on_kill(self, attempt: Attempt | None, handle: JobHandle | None) -> None:
        """Remember the stop; when the job is known, decide it now (or once Airflow can be asked)."""
        log = self._op.log
        self.requested.set()
        if handle is None:
            log.info(
                "resumable: told to stop before the job's id was known; nothing is submitted from now on, "
                "and a job whose submit is in flight is stopped by the same rules as soon as its id arrives"
            )
            return
        if self.decided:
            log.info("resumable: the stop of job %s was already decided by this attempt", handle.job_id)
            return
        if in_supervisor_call():
            # SIGTERM runs this in the main thread, which was waiting for the supervisor's answer:
            # a call from here would wait behind it forever. Decide in a thread that proceeds as
            # soon as the interrupted call returns; the attempt waits for it before it ends.
            log.info(
                "resumable: the stop interrupted a call to Airflow; deciding about job %s once it returns",
                handle.job_id,
            )
            self._thread = threading.Thread(
                target=self.settle_checking_owner,
                args=(attempt, handle),
                name="resumable-on-kill",
                daemon=True,
            )
            self._thread.start()
            return
        self.settle_checking_owner(attempt, handle)

    def wait_for_decision(self) -> None:
        """Wait for the decision on_kill handed to a thread (the supervisor bounds the wait)."""
        if self._thread is not None:
            self._thread.join()

    def settle_checking_owner(self, attempt: Attempt | None, handle: JobHandle | None) -> bool:
        """Decide the stop after asking the record whether this attempt still owns the job."""
        with self._lock:  # a decision in progress on another thread is waited for
            if self._deciding or self._decided is not None:
                return bool(self._decided)
            owns: bool | None = True if attempt is None else self._owns(attempt)
            return self.settle(attempt, handle, owns)

    def _owns(self, attempt: Attempt) -> bool | None:
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

    def settle(self, attempt: Attempt | None, handle: JobHandle | None, owns: bool | None) -> bool:
        """Apply the "who asked?" rules once; returns whether the job was cancelled.

        ``owns=None``: the airflow backend reads the record through this attempt's task-instance
        id, which a clear or a retry replaces; the record is then out of reach, not gone, and
        Airflow's view of the task instance decides. The first caller decides for the attempt;
        later callers get its answer. A caller coming in on the thread that is deciding (SIGTERM
        in the middle of it) returns at once and leaves the decision to it.
        """
        with self._lock:
            if self._deciding:
                return False
            if self._decided is None:
                self._deciding = True
                try:
                    self._decided = self._decide(attempt, handle, owns)
                finally:
                    self._deciding = False
            return self._decided

    def _decide(self, attempt: Attempt | None, handle: JobHandle | None, owns: bool | None) -> bool:
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
            return False
        ti_state = None
        if op.cancel_on_kill is not CancelOnKill.NEVER and owns is not False:
            ti_state = op.task_state_probe.state_of(attempt.context if attempt else {})
        verdict = decide_kill(KillFacts(op.cancel_on_kill, self.timed_out, owns, ti_state))
        stats_incr("resumable.kill." + ("cancel" if verdict.cancel else "keep"), op._tags())
        if handle is None and verdict.cancel and attempt is not None:
            handle = op._recover_handle(attempt)
        what = f"job {handle.job_id}" if handle else "no job id known yet"
        log.warning(
            "resumable: stopping with %s: %s -> %s",
            what,
            verdict.reason,
            "cancel the job" if verdict.cancel else "keep the job",
        )
        if not verdict.cancel or handle is None:
            return False
        if not self._record_cancel(attempt, handle, verdict, owns):
            return False
        self.cancelled = True
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

    def _record_cancel(
        self, attempt: Attempt | None, handle: JobHandle, verdict: KillDecision, owns: bool | None
    ) -> bool:
        """Write "cancel asked for" before asking; ``False`` when a newer try took the record meanwhile."""
        if owns is None or attempt is None or attempt.record is None:
            if owns is None:
                self._op.log.info(
                    "resumable: the record is out of this attempt's reach (its task instance was replaced); "
                    "the next attempt reads the job's state instead"
                )
            return True
        try:
            attempt.write(
                attempt.record.evolve(phase=Phase.SUBMITTED, handle=handle, stop_reason=verdict.stop_reason)
            )
        except VersionConflict as conflict:
            self._op.log.warning(
                "resumable: a newer try changed the record while this attempt stopped (%s): not cancelling",
                conflict,
            )
            return False
        except Exception as error:  # noqa: BLE001 - a store that fails (any error) must not keep the job running
            # Ownership was read a moment ago; the stop was asked for: the job is cancelled anyway.
            self._op.log.warning("resumable: cancelling, but the record was not updated (%s)", error)
        return True


def describe_stop(control: StopControl, handle: JobHandle | None) -> str:
    """How the stop ended, for the error that ends the attempt."""
    job: Any = handle.job_id if handle else "(none yet)"
    if control.cancelled:
        return f"job {job} was asked to cancel"
    return f"job {job} was kept for the retry to reattach" if handle else "nothing was submitted"
