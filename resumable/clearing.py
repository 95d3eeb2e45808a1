"""Clearing one stored value from outside a task: the rules ``resumable state clear`` and the
"Resumable jobs" page share.

:func:`refusal` says why a clear must not happen (a job that may still run and no word on what to
do with it; an attempt that owns the record now; a cancel with no job id to cancel), and
:func:`clear` does it: the cancel first where asked, then a delete of the value as it was read.
Both return what to tell the person (:class:`Said`) instead of printing it, so each front end
shows the same words in its own way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from resumable.records import Entry, Source, find

#: Task-instance states in which an attempt runs (or is about to) and may write the record.
LIVE_TI_STATES = frozenset(
    {"running", "deferred", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "restarting"}
)

#: ``done``: cleared (or found cleared); ``refused``: nothing changed; ``not_cancelled``: the
#: service did not take the cancel and the record was kept.
Result = Literal["done", "refused", "not_cancelled"]


@dataclass(frozen=True)
class Said:
    """One thing to tell the person: ``text`` under a ``title`` (``Refused``, ``Kept``, …) or none."""

    text: str
    title: str | None = None


@dataclass
class Outcome:
    result: Result
    said: list[Said] = field(default_factory=list)


def refusal(entry: Entry, source: Source, *, cancel_job: bool, leave_job: bool) -> Said | None:
    """Why clearing ``entry`` must not happen as asked, or ``None`` when it may."""
    handle = entry.handle
    if entry.job_may_be_active and not (cancel_job or leave_job):
        job = f"job {handle.job_id}" if handle else "a job (the submit may have happened)"
        return Said(
            f"the record says {job} may still be running (phase {entry.phase}, "
            f"last status {entry.last_state or 'unknown'}). Deleting the record makes the next attempt "
            "submit another one while it runs. Kept the record. Pass --cancel-job to cancel it first, "
            "or --leave-job to leave it.",
            "Refused",
        )
    cancel = cancel_job and entry.job_may_be_active
    if cancel and entry.ti_state in LIVE_TI_STATES:
        return Said(
            f"{entry.scope.describe()} is {entry.ti_state}: its attempt owns the record and would write "
            "it back after a cancel from here. Kept the record and the job. Mark the task instance "
            "failed in Airflow (a person's stop: its attempt cancels the job and records that), or "
            f"wait for it to end; then run: {source.fix_command(entry.scope, entry.key)}",
            "Refused",
        )
    if cancel and handle is None:
        token = entry.fields.get("token")
        stop = entry.fields.get("stop_reason")
        asked = (
            f" A stop ({stop}) was asked while its submit was in flight: the stopped task's follow-up "
            "process looks for the job by that token and cancels it ([resumable] stop_follow_up_seconds), "
            "and the next attempt of the task cancels it too."
            if stop
            else ""
        )
        return Said(
            f"the record names no job id (phase {entry.phase}"
            + (f", token {token}" if token else "")
            + "), so --cancel-job has nothing to cancel."
            + asked
            + " Kept the record. Look for the job in its system's console"
            + (" by that token" if token else "")
            + ", cancel it there, then run: "
            + source.fix_command(entry.scope, entry.key),
            "Refused",
        )
    return None


def clear(source: Source, entry: Entry, *, cancel_job: bool, load_task: Callable[[Entry], Any]) -> Outcome:
    """Cancel ``entry``'s job where asked and it may still run (``load_task`` gives the resumable
    task that cancels it), then delete ``entry``. Call :func:`refusal` first."""
    handle = entry.handle
    said: list[Said] = []
    if cancel_job and entry.job_may_be_active and handle is not None:
        task = load_task(entry)
        try:
            status = task.get_job_status(handle)
        except Exception:  # noqa: BLE001 - the status only spares a needless cancel: cancel anyway
            status = None
        if status is not None and not status.state.is_active:
            said.append(Said(f"Job {handle.job_id} is {status.describe()}: nothing to cancel."))
            return delete(source, entry, said)
        try:
            task.cancel_job(handle)
        except Exception as error:  # noqa: BLE001 - any failure: say so and keep the record
            said.append(
                Said(
                    f"{handle.system} did not take the cancel of job {handle.job_id} "
                    f"({type(error).__name__}: {error}). Kept the record. Cancel the job in its own console, "
                    f"then run: {source.fix_command(entry.scope, entry.key)}",
                    "Not cancelled",
                )
            )
            return Outcome("not_cancelled", said)
        said.append(Said(f"Asked {handle.system} to cancel job {handle.job_id}."))
    elif cancel_job:
        said.append(Said("The record says its job ended (or it names none): nothing to cancel."))
    return delete(source, entry, said)


def delete(source: Source, entry: Entry, said: list[Said] | None = None) -> Outcome:
    """Delete the value as it was read. Where the source keeps versions, a write that came in
    meanwhile (the task's attempt recording the cancel, say) is looked at first: the record is
    deleted if it still names the same job, and kept if it names another."""
    said = list(said or [])
    current = entry
    for _ in range(3):
        if source.delete(current.scope, current.key, expected_version=current.version):
            said.append(Said(f"Deleted {entry.key!r} of {entry.scope.describe()}."))
            return Outcome("done", said)
        scope = current.scope
        found = find(source, scope, current.key)
        if found is None:
            said.append(Said(f"{entry.key!r} of {entry.scope.describe()} was deleted meanwhile."))
            return Outcome("done", said)
        now = found.handle
        if _names(found) != _names(entry):
            said.append(
                Said(
                    f"the task wrote {entry.key!r} of {scope.describe()} while this clear ran; it now "
                    f"names job {now.job_id if now else '(none yet)'} (phase {found.phase}), not the one "
                    "this clear looked at. Look at it with `resumable state show` and clear it again.",
                    "Kept",
                )
            )
            return Outcome("refused", said)
        current = found  # the same job, written again (its status, its cancel): delete that
    said.append(Said(f"{entry.key!r} of {entry.scope.describe()} kept changing; kept it. Clear it again."))
    return Outcome("refused", said)


def _names(entry: Entry) -> str | None:
    """The job a stored value names: its id, else the token of a submission under way."""
    return entry.handle.job_id if entry.handle else entry.fields.get("token")
