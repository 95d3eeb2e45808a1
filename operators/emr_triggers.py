"""The resumable EMR operators' triggers: the provider's, plus a person's stop stopping the job.

The provider's steps and cluster triggers never stop their job when a person marks the deferred
task failed or success or clears it, and its EMR on EKS trigger does so only on Airflow >= 3.3;
these do also before 3.3, with the operator's ``cancel_on_kill`` rule (a triggerer restart or
redistribution is not a person's stop and keeps the job): see :mod:`resumable.trigger_stop`.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.triggers.emr import (
    EmrAddStepsTrigger,
    EmrContainerTrigger,
    EmrCreateJobFlowTrigger,
    EmrServerlessStartJobTrigger,
)
from asgiref.sync import sync_to_async

from resumable.trigger_stop import TRIGGERER_CALLS_ON_KILL, StopsJobOnAPersonsStop


class _StopsAwsJob(StopsJobOnAPersonsStop):
    """:meth:`stop_job` stops the job, in asgiref's thread (the hook may ask the triggerer's supervisor
    for its connection, see :mod:`resumable.trigger_stop`), and raises when the service did not take it;
    throttling, a 5xx or a lost connection is asked again, an error that says the job cannot be stopped
    (it has ended) is not."""

    def stop_job(self) -> None:
        raise NotImplementedError

    async def stop_for_a_person(self) -> None:
        await sync_to_async(self.stop_job, thread_sensitive=False)()

    def stop_worth_retrying(self, error: BaseException) -> bool:
        from resumable.operators._aws import is_transient

        return is_transient(error)


class StopsAwsJobOnAPersonsStop(_StopsAwsJob):
    """For the provider's triggers that never stop their job: ``cancel_on_kill`` says whether a
    person's stop of the deferred task stops it."""

    serialized_fields: dict[str, Any]

    def __init__(self, *, cancel_on_kill: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cancel_on_kill = cancel_on_kill
        self.serialized_fields["cancel_on_kill"] = cancel_on_kill


class ResumableEmrAddStepsTrigger(StopsAwsJobOnAPersonsStop, EmrAddStepsTrigger):
    """``EmrAddStepsTrigger`` whose steps are cancelled when a person stops the deferred task."""

    def stop_job(self) -> None:
        fields = self.serialized_fields
        self.hook().conn.cancel_steps(ClusterId=fields["job_flow_id"], StepIds=list(fields["step_ids"]))


class ResumableEmrCreateJobFlowTrigger(StopsAwsJobOnAPersonsStop, EmrCreateJobFlowTrigger):
    """``EmrCreateJobFlowTrigger`` whose cluster is terminated when a person stops the deferred task."""

    def stop_job(self) -> None:
        self.hook().conn.terminate_job_flows(JobFlowIds=[self.serialized_fields["job_flow_id"]])


class ResumableEmrContainerTrigger(_StopsAwsJob, EmrContainerTrigger):
    """``EmrContainerTrigger`` whose job run is cancelled (its own ``cancel_on_kill``) when a person
    stops the deferred task, also before Airflow 3.3, where its ``on_kill`` is never called (the
    provider's ``on_kill`` logs a failed cancel and returns; this one's is asked again)."""

    def stop_job(self) -> None:
        self.hook().stop_query(self.job_id)  # type: ignore[attr-defined]


class ResumableEmrServerlessStartJobTrigger(_StopsAwsJob, EmrServerlessStartJobTrigger):
    """``EmrServerlessStartJobTrigger`` whose job run is cancelled (its own ``cancel_on_kill``) when a
    person stops the deferred task, with the stop asked again while the service throttles it, and a
    mapped task instance's state read under the key Airflow gives it."""

    async def safe_to_cancel(self) -> bool:
        # The provider's own stop before Airflow 3.3, after a cancellation of the trigger: the job is
        # stopped by StopsJobOnAPersonsStop instead (which tells a person's stop from a moved trigger).
        self.log.info(
            "resumable: the provider's trigger leaves job %s alone below; whether a person stopped the task "
            "is read from its state next",
            self.job_id,
        )
        return False

    def stop_job(self) -> None:
        self.hook().conn.cancel_job_run(applicationId=self.application_id, jobRunId=self.job_id)


__all__ = [
    "ResumableEmrAddStepsTrigger",
    "ResumableEmrContainerTrigger",
    "ResumableEmrCreateJobFlowTrigger",
    "ResumableEmrServerlessStartJobTrigger",
    "TRIGGERER_CALLS_ON_KILL",
]
