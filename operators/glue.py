"""Resumable AWS Glue: ``GlueJobOperator`` that starts one job run per submission and reattaches to it.

Glue's ``StartJobRun`` takes no idempotency token. Ours rides in the run's arguments
(``--resumable-token``, which a Glue script that reads its options with ``getResolvedOptions``
ignores), and a retry after a crash between the start and the record finds the run by it with
``GetJobRuns`` instead of starting another. The job's ``MaxConcurrentRuns`` (1 unless the job says
otherwise) adds a second guard: Glue refuses a second run while one is active
(``ConcurrentRunsExceededException``), ours or not.

The operator is the provider's, made resumable through Airflow 3.3's job contract
(:mod:`resumable.adapter`): its own submit (the job is created or updated as the provider does),
result (the run id), XCom ``glue_job_run_id`` and console link are kept; its own ``durable`` is off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.amazon.aws.operators.glue import GlueJobOperator
from airflow.providers.amazon.aws.triggers.glue import GlueJobCompleteTrigger
from botocore.exceptions import ClientError

from resumable.adapter import ContractOperator, JobContract
from resumable.errors import ResumableError
from resumable.job import JobHandle, JobState, JobStatus, keep_the_first
from resumable.links import ResumableJobLink
from resumable.operators._aws import ResumableAwsMixin, error_code
from resumable.operators.aws_triggers import StopsAwsJobOnAPersonsStop
from resumable.protocol import CancelOnKill

#: The job run argument that carries the submission's token.
TOKEN_ARGUMENT = "--resumable-token"

#: Glue job run states (WAITING is waiting for resources; STOPPING is still active).
GLUE_STATES = {
    "STARTING": JobState.PENDING,
    "WAITING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "STOPPING": JobState.STOPPING,
    "STOPPED": JobState.CANCELLED,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
    "ERROR": JobState.FAILED,
    "EXPIRED": JobState.FAILED,
}


def _put_token(op: Any, context: Mapping[str, Any], token: str) -> None:
    op.script_args = {**(op.script_args or {}), TOKEN_ARGUMENT: token}


def _find_run(op: Any, context: Mapping[str, Any], token: str) -> str | None:
    """The run started with ``token``: ``GetJobRuns`` of the job, every page (Glue keeps runs for 90
    days). Two runs with one token should not exist; if they do, the oldest is the task's and the
    others, if active, are stopped."""
    runs = [
        run
        for page in op.hook.conn.get_paginator("get_job_runs").paginate(JobName=op.job_name)
        for run in page.get("JobRuns", [])
        if (run.get("Arguments") or {}).get(TOKEN_ARGUMENT) == token
    ]
    runs.sort(key=lambda run: run["StartedOn"].timestamp() if run.get("StartedOn") else 0.0)
    found = [(str(run["Id"]), op.map_status(str(run.get("JobRunState", ""))).state.is_active) for run in runs]
    return keep_the_first(
        op.log,
        f"Glue job {op.job_name}",
        token,
        found,
        lambda active: op.hook.conn.batch_stop_job_run(JobName=op.job_name, JobRunIds=active),
    )


def _status(op: Any, run_id: str) -> JobStatus:
    try:
        run = op.hook.conn.get_job_run(JobName=op.job_name, RunId=run_id)["JobRun"]
    except ClientError as error:
        if error_code(error) == "EntityNotFoundException":
            return JobStatus(JobState.NOT_FOUND, "missing", f"Glue has no run {run_id} of job {op.job_name}")
        raise
    raw = str(run.get("JobRunState", ""))
    state = op.map_status(raw).state  # a state not in GLUE_STATES: as the provider's contract says
    return JobStatus(state, raw, str(run.get("ErrorMessage", ""))).created(run.get("StartedOn"))


def stop_run(conn: Any, job_name: str, run_id: str) -> None:
    """``BatchStopJobRun`` of one run. Glue answers a run it did not stop with an error in the answer
    (not an exception); that is an error only while the run is still active: a run that has ended, or
    that Glue no longer knows, has nothing left to stop."""
    answer = conn.batch_stop_job_run(JobName=job_name, JobRunIds=[run_id])
    for error in answer.get("Errors") or []:
        try:
            state = str(conn.get_job_run(JobName=job_name, RunId=run_id)["JobRun"].get("JobRunState", ""))
        except ClientError as lookup:
            if error_code(lookup) == "EntityNotFoundException":
                return
            raise
        if GLUE_STATES.get(state, JobState.RUNNING).is_active:
            detail = error.get("ErrorDetail", {})
            raise ResumableError(
                f"Glue did not stop run {run_id} of job {job_name} ({state}): {detail.get('ErrorCode')}: "
                f"{detail.get('ErrorMessage')}"
            )


def _stop(op: Any, run_id: str) -> None:
    stop_run(op.hook.conn, op.job_name, run_id)


def _announce(op: Any, context: Mapping[str, Any], run_id: str) -> None:
    op._set_job_run_id(context, run_id)  # the provider's XCom glue_job_run_id, link and log line


def _url(op: Any, run_id: str) -> str:
    return op._console(f"editor/job/{op.job_name}/runs", service="gluestudio")  # type: ignore[no-any-return]


GLUE_JOB_RUN = JobContract(
    system="glue",
    put_token=_put_token,
    idempotent=False,
    find_job=_find_run,
    cancel=_stop,
    states=GLUE_STATES,
    status=_status,
    announce=_announce,
    url=_url,
    provider_off={"durable": False},
)


class ResumableGlueJobCompleteTrigger(StopsAwsJobOnAPersonsStop, GlueJobCompleteTrigger):
    """``GlueJobCompleteTrigger`` whose run is stopped when a person stops the deferred task (the
    operator's ``cancel_on_kill``); a triggerer restart or a moved trigger keeps it."""

    def stop_job(self) -> None:
        stop_run(self.hook().conn, self.serialized_fields["job_name"], self.serialized_fields["run_id"])


class ResumableGlueJobOperator(ContractOperator, ResumableAwsMixin, GlueJobOperator):  # type: ignore[misc]
    """``GlueJobOperator`` that starts one Glue job run per submission, whatever happens to the worker.

    Takes the provider's parameters with their meaning (``job_name``, ``script_args``,
    ``run_job_kwargs``, ``create_job_kwargs``, ``wait_for_completion``, ``deferrable``, ...). The
    token is added to the run's arguments as ``--resumable-token``; the retry finds the run by it.
    ``durable`` (the provider's own resuming) is accepted and has no effect: the record is ours.
    ``stop_job_run_on_kill``, when given, is the provider's spelling of ``cancel_on_kill``: True
    stops the run on a person's stop (``"user_stop"``), False never stops it; without either, a
    person's stop stops the run and a worker's loss keeps it. Polling waits as long as the run
    takes (the provider's ``job_completion`` has no limit); a deferred wait is bounded by
    ``waiter_delay * waiter_max_attempts`` seconds, after which the run is stopped.

    Args:
        stop_job_run_on_kill: the provider's flag, read as ``cancel_on_kill`` when that is not given.
    """

    job_contract = GLUE_JOB_RUN
    operator_extra_links = (*GlueJobOperator.operator_extra_links, ResumableJobLink())  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        if "stop_job_run_on_kill" in kwargs and "cancel_on_kill" not in kwargs:
            kwargs["cancel_on_kill"] = "user_stop" if kwargs["stop_job_run_on_kill"] else "never"
        kwargs.setdefault("poll_interval", kwargs.get("job_poll_interval", 6))
        super().__init__(**kwargs)
        self.stop_job_run_on_kill = False  # the provider's on_kill is not called; ours decides

    def waits_for_job(self) -> bool:
        return bool(self.wait_for_completion or self.deferrable)

    def wait_limit(self) -> float | None:
        return float(self.waiter_delay * self.waiter_max_attempts) if self.deferrable else None

    def trigger_gave_up(self, event: Any) -> str | None:
        message = str(event.get("message", "")) if isinstance(event, dict) else ""
        if "exceeded max attempts" in message.lower():  # the verbose trigger's words for its limit
            return f"the trigger stopped waiting ({message})"
        return super().trigger_gave_up(event)

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> ResumableGlueJobCompleteTrigger:
        return ResumableGlueJobCompleteTrigger(  # type: ignore[call-arg]  # cancel_on_kill is ours
            cancel_on_kill=self.cancel_on_kill is not CancelOnKill.NEVER,
            job_name=self.job_name,
            run_id=handle.job_id,
            verbose=self.verbose,
            waiter_delay=self.waiter_delay,
            waiter_max_attempts=self.waiter_max_attempts,
            **self._aws_trigger_args(),
        )


__all__ = [
    "GLUE_JOB_RUN",
    "GLUE_STATES",
    "TOKEN_ARGUMENT",
    "stop_run",
    "ResumableGlueJobCompleteTrigger",
    "ResumableGlueJobOperator",
]
