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
)
from asgiref.sync import sync_to_async

from resumable.trigger_stop import TRIGGERER_CALLS_ON_KILL, StopsJobOnAPersonsStop


class _StopsJobOnAPersonsStop(StopsJobOnAPersonsStop):
    """For the provider's triggers that never stop their job: ``cancel_on_kill`` says whether a
    person's stop of the deferred task stops it, and :meth:`stop_job` does."""

    serialized_fields: dict[str, Any]

    def __init__(self, *, cancel_on_kill: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cancel_on_kill = cancel_on_kill
        self.serialized_fields["cancel_on_kill"] = cancel_on_kill

    def stop_job(self) -> None:
        raise NotImplementedError

    async def stop_for_a_person(self) -> None:
        # asgiref's thread: the hook may ask the triggerer's supervisor for its connection (see
        # resumable.trigger_stop).
        await sync_to_async(self.stop_job, thread_sensitive=False)()


class ResumableEmrAddStepsTrigger(_StopsJobOnAPersonsStop, EmrAddStepsTrigger):
    """``EmrAddStepsTrigger`` whose steps are cancelled when a person stops the deferred task."""

    def stop_job(self) -> None:
        fields = self.serialized_fields
        self.hook().conn.cancel_steps(ClusterId=fields["job_flow_id"], StepIds=list(fields["step_ids"]))


class ResumableEmrCreateJobFlowTrigger(_StopsJobOnAPersonsStop, EmrCreateJobFlowTrigger):
    """``EmrCreateJobFlowTrigger`` whose cluster is terminated when a person stops the deferred task."""

    def stop_job(self) -> None:
        self.hook().conn.terminate_job_flows(JobFlowIds=[self.serialized_fields["job_flow_id"]])


class ResumableEmrContainerTrigger(StopsJobOnAPersonsStop, EmrContainerTrigger):
    """``EmrContainerTrigger`` whose job run is cancelled (its own ``cancel_on_kill``) when a person
    stops the deferred task, also before Airflow 3.3, where its ``on_kill`` is never called."""


__all__ = [
    "ResumableEmrAddStepsTrigger",
    "ResumableEmrContainerTrigger",
    "ResumableEmrCreateJobFlowTrigger",
    "TRIGGERER_CALLS_ON_KILL",
]
