"""Resumable BigQuery: ``BigQueryInsertJobOperator`` that inserts one BigQuery job per submission and
reattaches to it after a crash.

BigQuery lets the caller choose a job's id, and inserting an id that exists creates nothing: the
service answers ``409 Already Exists``. Our token is the job's id (after the operator's ``job_id``,
when one is given), so a retry after a crash between the insert and the record inserts with the same
id, gets the 409, and takes the job that exists, whatever state it is in. The provider's operator
derives the id itself instead (with a random suffix under its default ``force_rerun=True``, so a
retry inserts a second job; with ``force_rerun=False`` a hash of the configuration, so a clear of a
succeeded task fails on the existing id): ours inserts through the provider's own ``_submit_job``
with our id, and neither ``force_rerun`` nor ``reattach_states`` changes it.

The operator is the provider's, made resumable through Airflow 3.3's job contract
(:mod:`resumable.adapter`): its labels, links (``BigQueryJobDetailLink``, ``BigQueryTableLink``), XCom
``job_id_path`` and return value (the job's id) are kept; its own ``durable`` is off (one record,
ours). The google provider release that implements the contract needs Python 3.11 or later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
from airflow.providers.google.cloud.operators.bigquery import BigQueryInsertJobOperator
from airflow.providers.google.cloud.triggers.bigquery import BigQueryInsertJobTrigger
from asgiref.sync import sync_to_async
from google.api_core import exceptions as google_errors
from google.cloud.bigquery.retry import DEFAULT_RETRY

from resumable.adapter import ContractOperator, JobContract
from resumable.errors import ResumableError
from resumable.job import JobState, JobStatus
from resumable.links import ResumableJobLink
from resumable.protocol import CancelOnKill
from resumable.trigger_stop import StopsJobOnAPersonsStop

#: BigQuery's rule for a job's id.
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")
#: The ``errorResult`` reason of a job that was cancelled.
CANCELLED_REASON = "stopped"
#: Seconds a cancel call may take, the client's retries included: BigQuery answers a cancel at once
#: (the job stops later), so a longer wait is a stalled connection, not a slow service.
CANCEL_TIMEOUT = 30.0
#: BigQuery job states while the job runs (a finished job is ``DONE``, with an ``errorResult`` when it
#: failed or was cancelled; a cancel shows only once the job has stopped).
BIGQUERY_STATES = {
    "PENDING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
}


def bigquery_hook(op: Any) -> BigQueryHook:
    """The provider's hook, made once per operator as the provider's ``submit_job`` makes it."""
    if op.hook is None:
        op.hook = BigQueryHook(gcp_conn_id=op.gcp_conn_id, impersonation_chain=op.impersonation_chain)
    if op.project_id is None:
        op.project_id = op.hook.project_id
    return op.hook  # type: ignore[no-any-return]


def given_job_id(op: Any) -> str | None:
    """The operator's own (rendered) ``job_id``, kept the first time it is read in this process: the
    provider's link code overwrites ``job_id`` with the job's id, as its ``execute`` keeps the given one
    aside before it starts."""
    if not hasattr(op, "_given_job_id"):
        op._given_job_id = op.job_id
    return op._given_job_id  # type: ignore[no-any-return]


def job_id_for(given: str | None, token: str) -> str:
    """The job's id for a submission: the token, after the operator's ``job_id`` when it has one."""
    job_id = f"{given}_{token}" if given else token
    if not JOB_ID_PATTERN.match(job_id):
        raise ResumableError(
            f"BigQuery takes job ids of 1 to 1024 letters, digits, _ and -; {job_id!r} is not one "
            f"(job_id={given!r} followed by the submission's token). Nothing was submitted: pass a "
            "job_id of those characters, short enough, or none."
        )
    return job_id


def _submit(op: Any, context: Mapping[str, Any], token: str) -> str:
    """Insert the job with our id; an id BigQuery already has (409) is this submission's job."""
    hook = bigquery_hook(op)
    op._add_job_labels(hook)
    job_id = job_id_for(given_job_id(op), token)
    op.log.info("Executing: %s", op.configuration)
    if op.sql:
        op.log.info("SQL query:\n%s", op.sql)
    try:
        job = op._submit_job(hook, job_id)
    except google_errors.Conflict:
        job = hook.get_job(project_id=op.project_id, location=op.location, job_id=job_id)
        op.log.info(
            "resumable: BigQuery already has job %s (%s): it was inserted with this submission's id by an "
            "earlier try whose answer was lost; taking it instead of inserting another",
            job_id,
            job.state,
        )
    op._job = job
    if op.location is None and getattr(job, "location", None):
        op.location = job.location  # where the status reads and the cancel look for it
    return str(job.job_id)


def _status(op: Any, job_id: str) -> JobStatus:
    hook = bigquery_hook(op)
    try:
        job = hook.get_job(project_id=op.project_id, location=op.location, job_id=job_id)
    except google_errors.NotFound:
        return JobStatus(JobState.NOT_FOUND, "missing", f"BigQuery has no job {job_id} in {op.project_id}")
    op._job = job
    raw = str(job.state)
    if raw != "DONE":
        # a state BigQuery adds later is waited on, never taken for an end
        return JobStatus(BIGQUERY_STATES.get(raw, JobState.RUNNING), raw).created(job.created)
    error = job.error_result or {}
    if not error:
        return JobStatus(JobState.SUCCEEDED, raw).created(job.created)
    reason = str(error.get("reason", ""))
    state = JobState.CANCELLED if reason == CANCELLED_REASON else JobState.FAILED
    return JobStatus(state, f"DONE ({reason})", str(error.get("message", ""))).created(job.created)


def cancel_bigquery_job(
    hook: BigQueryHook,
    job_id: str,
    project_id: str | None,
    location: str | None,
    timeout: float = CANCEL_TIMEOUT,
) -> None:
    """Ask BigQuery to cancel the job, and return: BigQuery stops it on its own time (the hook's
    ``cancel_job`` waits up to a minute for that, longer than Airflow gives a stopped task).

    The call, with the client's own retries of transient errors, gives up after about ``timeout``
    seconds (the client's default waits for an answer without end and retries for ten minutes): a
    cancel whose answer never comes fails with the client's ``RetryError`` ("Timeout of 30.0s
    exceeded, last exception: ... Read timed out") instead of holding a stopped task, a trigger or a
    ``clear --cancel-job`` forever."""
    hook.get_client(project_id=project_id or hook.project_id, location=location).cancel_job(
        job_id=job_id,
        project=project_id,
        location=location,
        retry=DEFAULT_RETRY.with_timeout(timeout),
        timeout=timeout,
    )


def _cancel(op: Any, job_id: str) -> None:
    cancel_bigquery_job(bigquery_hook(op), job_id, op.project_id, op.location)


def _announce(op: Any, context: Mapping[str, Any], job_id: str) -> None:
    """The provider's links (job detail and tables) and its ``job_id_path`` XCom, from the job."""
    given_job_id(op)
    job = getattr(op, "_job", None)
    if job is None or job.job_id != job_id:
        job = op._job = bigquery_hook(op).get_job(
            project_id=op.project_id, location=op.location, job_id=job_id
        )
    op._persist_job_links(job, context)


def _result(op: Any, context: Mapping[str, Any], job_id: str) -> str:
    given_job_id(op)
    op.job_id = job_id  # what the provider's listeners read
    return job_id  # the provider's execute returns the job's id


def _url(op: Any, job_id: str) -> str:
    location = op.location or "US"
    return (
        f"https://console.cloud.google.com/bigquery?project={op.project_id}"
        f"&j=bq:{location}:{job_id}&page=queryresults"
    )


BIGQUERY_JOB = JobContract(
    system="bigquery",
    submit=_submit,
    idempotent=True,
    cancel=_cancel,
    states=BIGQUERY_STATES,
    status=_status,
    announce=_announce,
    result=_result,
    url=_url,
    token_limit=1024,
    provider_off={"durable": False},
)


def is_transient(error: BaseException) -> bool:
    """What ``google-cloud-bigquery`` itself retries: rate limits, 5xx and a lost connection; and its
    ``RetryError`` when the last error of its retries was one (a call that ran out of its timeout)."""
    if isinstance(error, google_errors.RetryError):
        return error.cause is not None and is_transient(error.cause)
    if isinstance(error, google_errors.GoogleAPICallError):
        return is_throttled(error) or isinstance(
            error, (google_errors.ServerError, google_errors.TooManyRequests)
        )
    return type(error).__module__.startswith(("requests.", "urllib3.", "google.auth.exceptions"))


def is_throttled(error: BaseException) -> bool:
    """BigQuery's ways of saying "slow down": 429, or 403 with reason ``rateLimitExceeded`` or
    ``quotaExceeded``."""
    if isinstance(error, google_errors.TooManyRequests):
        return True
    if isinstance(error, google_errors.Forbidden):
        reasons = {str(e.get("reason")) for e in (error.errors or []) if isinstance(e, dict)}
        return bool(reasons & {"rateLimitExceeded", "quotaExceeded"})
    return False


class ResumableBigQueryInsertJobTrigger(StopsJobOnAPersonsStop, BigQueryInsertJobTrigger):
    """``BigQueryInsertJobTrigger`` whose job is cancelled when a person stops the deferred task (the
    operator's ``cancel_on_kill``); a triggerer restart or a moved trigger keeps it. The provider's own
    cancel on a trigger's cancellation (before Airflow 3.3) is off: it cannot tell a person's stop from
    a triggerer's shutdown as reliably, and ours decides (:mod:`resumable.trigger_stop`)."""

    async def safe_to_cancel(self) -> bool:
        return False  # the provider's own cancel (Airflow < 3.3); ours decides

    async def stop_for_a_person(self) -> None:
        hook = BigQueryHook(gcp_conn_id=self.conn_id, impersonation_chain=self.impersonation_chain)
        await sync_to_async(cancel_bigquery_job, thread_sensitive=False)(
            hook, str(self.job_id), self.project_id, self.location
        )

    def stop_worth_retrying(self, error: BaseException) -> bool:
        return is_transient(error)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs


class ResumableBigQueryInsertJobOperator(ContractOperator, BigQueryInsertJobOperator):  # type: ignore[misc]
    """``BigQueryInsertJobOperator`` that inserts one BigQuery job per submission, whatever happens to
    the worker.

    Takes the provider's parameters with their meaning (``configuration``, ``project_id``,
    ``location``, ``gcp_conn_id``, ``impersonation_chain``, ``result_timeout``, ``result_retry``,
    ``deferrable``, ``poll_interval``, ...), plus the mixin's. The job's id is the submission's token,
    after ``job_id`` when given (``{job_id}_{token}``): a retry reattaches to the job, a clear inserts
    a new one. ``force_rerun`` and ``reattach_states`` are accepted and change nothing (the id is
    ours). ``cancel_on_kill`` takes the provider's booleans: True cancels the job on a person's stop
    (``"user_stop"``, not on a worker's SIGTERM), False never cancels it; our own values are taken
    too. ``poll_interval`` (4 s, as the provider's) is the time between status reads, also without
    ``deferrable``. Returns the job's id, as the provider's operator does.
    """

    job_contract = BIGQUERY_JOB
    operator_extra_links = (*BigQueryInsertJobOperator.operator_extra_links, ResumableJobLink())  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        given = kwargs.get("cancel_on_kill")
        if isinstance(given, bool):
            kwargs["cancel_on_kill"] = CancelOnKill.USER_STOP.value if given else CancelOnKill.NEVER.value
        kwargs.setdefault("poll_interval", 4.0)
        super().__init__(**kwargs)

    def waits_for_job(self) -> bool:
        return True  # the provider's operator always waits for its job

    def is_transient_error(self, error: BaseException) -> bool:
        return super().is_transient_error(error) or is_transient(error)

    def is_throttled(self, error: BaseException) -> bool:
        return is_throttled(error)

    def job_trigger(self, context: Mapping[str, Any], handle: Any) -> ResumableBigQueryInsertJobTrigger:
        return ResumableBigQueryInsertJobTrigger(
            conn_id=self.gcp_conn_id,
            job_id=handle.job_id,
            project_id=self.project_id,
            location=self.location or bigquery_hook(self).location,
            poll_interval=self.poll_interval,
            impersonation_chain=self.impersonation_chain,
            cancel_on_kill=self.cancel_on_kill is not CancelOnKill.NEVER,
        )


__all__ = [
    "BIGQUERY_JOB",
    "BIGQUERY_STATES",
    "ResumableBigQueryInsertJobOperator",
    "ResumableBigQueryInsertJobTrigger",
    "cancel_bigquery_job",
    "job_id_for",
]
