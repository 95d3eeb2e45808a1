"""Resumable Amazon Athena: ``AthenaOperator`` that starts one query execution per submission.

``StartQueryExecution`` honours an idempotency token, ``ClientRequestToken`` (32 to 128 characters):
a repeated call with one token answers with the query it started and starts nothing, so ours goes out
as that token and a retry after a crash between the start and the record gets the same query back.
Athena refuses a repeated token whose query string changed; a retry renders the same query (the same
DAG run's templates), so this only happens if the DAG file changed the query in between, and the
task then fails with Athena's message instead of running another query.

The operator is the provider's, with its parameters and result (the query execution id, and its
"Query Results" link); ours owns ``execute``, the record, polling, kill semantics and retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.amazon.aws.links.athena import AthenaQueryResultsLink
from airflow.providers.amazon.aws.operators.athena import AthenaOperator
from airflow.providers.amazon.aws.triggers.athena import AthenaTrigger

from resumable.errors import ResumableError
from resumable.job import JobHandle, JobState, JobStatus
from resumable.links import ResumableJobLink
from resumable.operators._aws import ResumableAwsMixin
from resumable.operators.aws_triggers import StopsAwsJobOnAPersonsStop
from resumable.protocol import CancelOnKill

#: Athena query states (Athena has no stopping state: a stopped query reads RUNNING until CANCELLED).
ATHENA_STATES = {
    "QUEUED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
}
#: The length limits of ``ClientRequestToken``.
TOKEN_LIMITS = (32, 128)


class ResumableAthenaTrigger(StopsAwsJobOnAPersonsStop, AthenaTrigger):
    """``AthenaTrigger`` whose query is stopped when a person stops the deferred task (the operator's
    ``cancel_on_kill``); a triggerer restart or a moved trigger keeps it."""

    def stop_job(self) -> None:
        self.hook().conn.stop_query_execution(QueryExecutionId=self.serialized_fields["query_execution_id"])


class ResumableAthenaOperator(ResumableAwsMixin, AthenaOperator):  # type: ignore[misc]
    """``AthenaOperator`` that starts one Athena query per submission, whatever happens to the worker.

    Takes the provider's parameters with their meaning (``query``, ``database``, ``output_location``,
    ``workgroup``, ``query_execution_context``, ``result_configuration``, ``sleep_time``,
    ``max_polling_attempts``, ``deferrable``, ...). Our token is sent as ``ClientRequestToken``;
    ``client_request_token``, when given, is sent instead (every submission of the task then returns
    the same query, also after a clear). ``sleep_time`` is the time between status reads; with
    ``max_polling_attempts`` given, the wait is bounded by ``sleep_time * max_polling_attempts``
    seconds, after which the query is stopped and the task fails (the provider fails the task and
    leaves the query running). Returns the query execution id, as the provider's operator does.
    """

    job_system = "athena"
    operator_extra_links = (*AthenaOperator.operator_extra_links, ResumableJobLink())  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        self._given_token = kwargs.get("client_request_token") or None
        self._polling_limit = kwargs.get("max_polling_attempts")
        kwargs.setdefault("poll_interval", kwargs.get("sleep_time", 30))
        super().__init__(**kwargs)

    def _job_handle(self, query_id: str) -> JobHandle:
        return JobHandle(
            self.job_system, query_id, self._console(f"query-editor/history/{query_id}", "athena")
        )

    def submit_job(self, context: Mapping[str, Any], token: str) -> JobHandle:  # type: ignore[override]
        sent = self._given_token or token
        low, high = TOKEN_LIMITS
        if not low <= len(sent) <= high:
            raise ResumableError(
                f"Athena's ClientRequestToken takes {low} to {high} characters; {sent!r} has {len(sent)}. "
                "Nothing was submitted: pass a client_request_token of that length, or none."
            )
        # What the provider's execute prepares before it starts the query.
        if self.database:
            self.query_execution_context["Database"] = self.database
        self.query_execution_context["Catalog"] = self.catalog
        if self.output_location:
            self.result_configuration["OutputLocation"] = self.output_location
        self.query_execution_id = self.hook.run_query(
            self.query, self.query_execution_context, self.result_configuration, sent, self.workgroup
        )
        return self._job_handle(str(self.query_execution_id))

    def get_job_status(self, handle: JobHandle) -> JobStatus:  # type: ignore[override]
        answer = self._describe(self.hook.conn.get_query_execution, QueryExecutionId=handle.job_id)
        if answer is None:
            return JobStatus(JobState.NOT_FOUND, "missing", f"Athena has no query execution {handle.job_id}")
        status = answer["QueryExecution"].get("Status", {})
        raw = str(status.get("State", ""))
        state = ATHENA_STATES.get(raw, JobState.RUNNING)
        message = str(
            status.get("StateChangeReason", "") or status.get("AthenaError", {}).get("ErrorMessage", "")
        )
        return JobStatus(state, raw, message).created(status.get("SubmissionDateTime"))

    def cancel_job(self, handle: JobHandle) -> None:  # type: ignore[override]
        self.hook.conn.stop_query_execution(QueryExecutionId=handle.job_id)

    def announce_job(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        super().announce_job(context, handle)
        self.query_execution_id = handle.job_id  # what the provider's listeners read
        AthenaQueryResultsLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            query_execution_id=handle.job_id,
        )

    def waits_for_job(self) -> bool:
        return True  # the provider's operator always waits for its query

    def wait_limit(self) -> float | None:
        return float(self.sleep_time * self._polling_limit) if self._polling_limit else None

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> ResumableAthenaTrigger:
        return ResumableAthenaTrigger(  # type: ignore[call-arg]  # cancel_on_kill is ours
            cancel_on_kill=self.cancel_on_kill is not CancelOnKill.NEVER,
            query_execution_id=handle.job_id,
            waiter_delay=self.sleep_time,
            waiter_max_attempts=self.max_polling_attempts,
            **self._aws_trigger_args(),
        )


__all__ = ["ATHENA_STATES", "ResumableAthenaOperator", "ResumableAthenaTrigger"]
