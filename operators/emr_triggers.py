"""The resumable EMR operators' triggers: the provider's, plus a person's stop stopping the job.

The provider's steps and cluster triggers never stop their job when a person marks the deferred
task failed or success or clears it, and its EMR on EKS trigger does so only on Airflow >= 3.3;
these do also before 3.3, with the operator's ``cancel_on_kill`` rule (a triggerer restart or
redistribution is not a person's stop and keeps the job): see :mod:`resumable.trigger_stop`.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.triggers.emr import (
    EmrAddStepsTrigger,
    EmrContainerTrigger,
    EmrCreateJobFlowTrigger,
    EmrServerlessStartJobTrigger,
)

from resumable.operators.aws_triggers import StopsAwsJob, StopsAwsJobOnAPersonsStop
from resumable.trigger_stop import TRIGGERER_CALLS_ON_KILL


class ResumableEmrAddStepsTrigger(StopsAwsJobOnAPersonsStop, EmrAddStepsTrigger):
    """``EmrAddStepsTrigger`` whose steps are cancelled when a person stops the deferred task."""

    def stop_job(self) -> None:
        fields = self.serialized_fields
        self.hook().conn.cancel_steps(ClusterId=fields["job_flow_id"], StepIds=list(fields["step_ids"]))


class ResumableEmrCreateJobFlowTrigger(StopsAwsJobOnAPersonsStop, EmrCreateJobFlowTrigger):
    """``EmrCreateJobFlowTrigger`` whose cluster is terminated when a person stops the deferred task."""

    def stop_job(self) -> None:
        self.hook().conn.terminate_job_flows(JobFlowIds=[self.serialized_fields["job_flow_id"]])


class ResumableEmrContainerTrigger(StopsAwsJob, EmrContainerTrigger):
    """``EmrContainerTrigger`` whose job run is cancelled (its own ``cancel_on_kill``) when a person
    stops the deferred task, also before Airflow 3.3, where its ``on_kill`` is never called (the
    provider's ``on_kill`` logs a failed cancel and returns; this one's is asked again)."""

    def stop_job(self) -> None:
        self.hook().stop_query(self.job_id)  # type: ignore[attr-defined]


class ResumableEmrServerlessStartJobTrigger(StopsAwsJob, EmrServerlessStartJobTrigger):
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
    "StopsAwsJobOnAPersonsStop",
    "ResumableEmrAddStepsTrigger",
    "ResumableEmrContainerTrigger",
    "ResumableEmrCreateJobFlowTrigger",
    "ResumableEmrServerlessStartJobTrigger",
    "TRIGGERER_CALLS_ON_KILL",
]
