"""Resumable AWS Batch: ``BatchOperator`` that submits one Batch job per submission and reattaches to it.

``SubmitJob`` takes no idempotency token. Ours rides on the job as the tag ``resumable-token``, and a
retry after a crash between the submit and the record finds the job by it: ``ListJobs`` of the job
queue, filtered by the job's name (which returns jobs in every status), then ``DescribeJobs`` of those
to read their tags. Batch has no cancelled state: a job we stop is terminated with the reason
:data:`STOP_REASON` and ends ``FAILED`` with that reason, which reads as cancelled here.

The operator is the provider's, with its parameters, its submit code, its links and its result (the
job id); ours owns ``execute``, the record, polling, kill semantics and retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.amazon.aws.operators.batch import BatchOperator
from airflow.providers.amazon.aws.triggers.batch import BatchJobTrigger

from resumable.job import JobHandle, JobState, JobStatus, keep_the_first
from resumable.links import ResumableJobLink
from resumable.operators._aws import ResumableAwsMixin
from resumable.operators.aws_triggers import StopsAwsJobOnAPersonsStop
from resumable.protocol import CancelOnKill

#: The job tag that carries the submission's token.
TOKEN_TAG = "resumable-token"
#: The reason a job we stop is terminated with; Batch reports it back as the job's ``statusReason``.
STOP_REASON = "Stopped by airflow-resumable"
#: The reason the provider's own ``on_kill`` terminates a job with: a stop, not a failure, too.
PROVIDER_STOP_REASON = "Task killed by the user"
#: Batch job states (a job waiting for resources, dependencies or a compute environment is pending).
BATCH_STATES = {
    "SUBMITTED": JobState.PENDING,
    "PENDING": JobState.PENDING,
    "RUNNABLE": JobState.PENDING,
    "STARTING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
}
#: ``DescribeJobs`` takes at most this many job ids per call.
DESCRIBE_BATCH = 100


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + DESCRIBE_BATCH] for i in range(0, len(ids), DESCRIBE_BATCH)]


class ResumableBatchJobTrigger(StopsAwsJobOnAPersonsStop, BatchJobTrigger):
    """``BatchJobTrigger`` whose job is terminated when a person stops the deferred task (the
    operator's ``cancel_on_kill``); a triggerer restart or a moved trigger keeps it."""

    def stop_job(self) -> None:
        self.hook().conn.terminate_job(jobId=self.serialized_fields["job_id"], reason=STOP_REASON)


class ResumableBatchOperator(ResumableAwsMixin, BatchOperator):  # type: ignore[misc]
    """``BatchOperator`` that submits one AWS Batch job per submission, whatever happens to the worker.

    Takes the provider's parameters with their meaning (``job_name``, ``job_definition``,
    ``job_queue``, ``container_overrides``, ``parameters``, ``tags``, ``retry_strategy``,
    ``wait_for_completion``, ``deferrable``, ``poll_interval``, ``max_retries``, ...). The token is
    added to the job's tags as ``resumable-token``; the retry finds the job by it. A person's stop
    terminates the job (``TerminateJob``); a worker's loss keeps it. A deferred wait is bounded by
    ``poll_interval * max_retries`` seconds, after which the job is terminated, as the provider's
    trigger gives up then too; polling waits as long as the job runs.
    """

    job_system = "batch"
    operator_extra_links = (*BatchOperator.operator_extra_links, ResumableJobLink())  # type: ignore[assignment]

    def _job_handle(self, job_id: str) -> JobHandle:
        return JobHandle(self.job_system, job_id, self._console(f"jobs/detail/{job_id}", service="batch"))

    def submit_job(self, context: Mapping[str, Any], token: str) -> JobHandle:  # type: ignore[override]
        self.tags = {**(self.tags or {}), TOKEN_TAG: token}
        BatchOperator.submit_job(self, context)  # type: ignore[arg-type]  # the provider's submit, its link
        return self._job_handle(str(self.job_id))

    def find_job(self, context: Mapping[str, Any], token: str) -> JobHandle | None:
        """The job submitted with ``token``: the queue's jobs of this name, by their tag. Two jobs with one
        token should not exist; if they do, the oldest is the task's and the others, if active, are
        terminated."""
        conn: Any = self.hook.client
        ids = [
            summary["jobId"]
            for page in conn.get_paginator("list_jobs").paginate(
                jobQueue=self.job_queue, filters=[{"name": "JOB_NAME", "values": [self.job_name]}]
            )
            for summary in page.get("jobSummaryList", [])
        ]
        jobs = [
            job
            for chunk in _chunks(ids)
            for job in conn.describe_jobs(jobs=chunk).get("jobs", [])
            if (job.get("tags") or {}).get(TOKEN_TAG) == token
        ]
        jobs.sort(key=lambda job: job.get("createdAt", 0))
        found = [(str(job["jobId"]), self._state(job).state.is_active) for job in jobs]

        def terminate(active: list[str]) -> None:
            for job_id in active:
                conn.terminate_job(jobId=job_id, reason=STOP_REASON)

        first = keep_the_first(self.log, f"Batch queue {self.job_queue}", token, found, terminate)
        return None if first is None else self._job_handle(first)

    def _state(self, job: Mapping[str, Any]) -> JobStatus:
        raw = str(job.get("status", ""))
        reason = str(job.get("statusReason", ""))
        state = BATCH_STATES.get(raw, JobState.RUNNING)
        if state is JobState.FAILED and reason in (STOP_REASON, PROVIDER_STOP_REASON):
            state = JobState.CANCELLED  # terminated on request: Batch says FAILED
        return JobStatus(state, raw, reason)

    def get_job_status(self, handle: JobHandle) -> JobStatus:  # type: ignore[override]
        jobs = self.hook.client.describe_jobs(jobs=[handle.job_id]).get("jobs", [])
        if not jobs:
            return JobStatus(JobState.NOT_FOUND, "missing", f"AWS Batch has no job {handle.job_id}")
        return self._state(jobs[0]).created(jobs[0].get("createdAt"))  # epoch milliseconds

    def cancel_job(self, handle: JobHandle) -> None:  # type: ignore[override]
        self.hook.client.terminate_job(jobId=handle.job_id, reason=STOP_REASON)

    def announce_job(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        super().announce_job(context, handle)
        self.job_id = handle.job_id
        self._persist_links(context)  # type: ignore[arg-type]  # the job definition and queue links

    def job_result(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> Any:
        self._persist_cloudwatch_link(context)  # type: ignore[arg-type]  # as the provider's monitor_job
        return handle.job_id

    def waits_for_job(self) -> bool:
        return bool(self.wait_for_completion or self.deferrable)

    def wait_limit(self) -> float | None:
        return float(self.poll_interval * self.max_retries) if self.deferrable else None

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> ResumableBatchJobTrigger:
        return ResumableBatchJobTrigger(  # type: ignore[call-arg]  # cancel_on_kill is ours
            cancel_on_kill=self.cancel_on_kill is not CancelOnKill.NEVER,
            job_id=handle.job_id,
            waiter_delay=int(self.poll_interval) or 1,
            waiter_max_attempts=self.max_retries,
            **self._aws_trigger_args(),
        )


__all__ = [
    "BATCH_STATES",
    "STOP_REASON",
    "TOKEN_TAG",
    "ResumableBatchJobTrigger",
    "ResumableBatchOperator",
]
