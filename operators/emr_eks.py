"""Resumable EMR on EKS: ``EmrContainerOperator`` that starts one job run per submission.

The service honours an idempotency token: ours is sent as ``clientToken``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.amazon.aws.operators.emr import EmrContainerOperator
from airflow.providers.amazon.aws.triggers.emr import EmrContainerTrigger

from resumable.job import JobHandle, JobState, JobStatus
from resumable.links import ResumableJobLink
from resumable.operators._aws import (
    ResumableAwsMixin,
    cancel_on_kill_choice,
)
from resumable.operators.emr_triggers import ResumableEmrContainerTrigger

#: EMR on EKS job run states (CANCEL_PENDING is still active: not terminal, as the hook says).
EKS_STATES = {
    "PENDING": JobState.PENDING,
    "SUBMITTED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "CANCEL_PENDING": JobState.STOPPING,
    "COMPLETED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
}


class ResumableEmrContainerOperator(ResumableAwsMixin, EmrContainerOperator):  # type: ignore[misc]
    """``EmrContainerOperator`` (EMR on EKS) that starts one job run per submission and reattaches to it.

    Our token goes out as ``clientToken`` unless ``client_request_token`` is given. ``poll_interval``
    keeps its meaning (it is the mixin's first poll interval too); ``max_polling_attempts`` bounds
    the wait, after which the run is cancelled. ``cancel_on_kill`` as for EMR Serverless.
    """

    job_system = "emr-eks"
    #: Its name until operators/emr.py was split into a module per operator.
    former_names = ("resumable.operators.emr.ResumableEmrContainerOperator",)
    operator_extra_links = (
        # type: ignore[assignment]
        *EmrContainerOperator.operator_extra_links,
        ResumableJobLink(),
    )

    def __init__(self, **kwargs: Any) -> None:
        kwargs["cancel_on_kill"] = cancel_on_kill_choice(kwargs.get("cancel_on_kill", True))
        super().__init__(**kwargs)

    def submit_job(self, context: Any, token: str) -> JobHandle:  # type: ignore[override]
        job_id = self.hook.submit_job(
            self.name,
            self.execution_role_arn,
            self.release_label,
            self.job_driver,
            self._overrides_with_openlineage(context, "EMR on EKS"),
            self.client_request_token or token,
            self.tags,
            self.job_retry_max_attempts,
        )
        self.job_id = job_id
        return JobHandle(
            self.job_system,
            str(job_id),
            self._console(f"virtual-clusters/{self.virtual_cluster_id}/job-runs/{job_id}"),
            {"virtual_cluster_id": self.virtual_cluster_id},
        )

    def get_job_status(self, handle: JobHandle) -> JobStatus:  # type: ignore[override]
        answer = self._describe(
            self.hook.conn.describe_job_run,
            id=handle.job_id,
            virtualClusterId=handle.extras["virtual_cluster_id"],
        )
        if answer is None:
            return JobStatus(JobState.NOT_FOUND, "missing", f"job run {handle.job_id} does not exist")
        run = answer["jobRun"]
        state = str(run["state"])
        message = " ".join(str(run[k]) for k in ("failureReason", "stateDetails") if run.get(k))
        return JobStatus(EKS_STATES.get(state, JobState.RUNNING), state, message).created(
            run.get("createdAt")
        )

    def cancel_job(self, handle: JobHandle) -> None:
        self.hook.conn.cancel_job_run(id=handle.job_id, virtualClusterId=handle.extras["virtual_cluster_id"])

    def wait_limit(self) -> float | None:
        return float(self.max_polling_attempts * self.poll_interval) if self.max_polling_attempts else None

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> EmrContainerTrigger:
        extra: dict[str, Any] = (
            {"waiter_max_attempts": self.max_polling_attempts} if self.max_polling_attempts else {}
        )
        return ResumableEmrContainerTrigger(
            virtual_cluster_id=handle.extras["virtual_cluster_id"],
            job_id=handle.job_id,
            waiter_delay=int(self.poll_interval),
            cancel_on_kill=self._trigger_cancels(),
            **extra,
            **self._aws_trigger_args(),
        )


__all__ = ["EKS_STATES", "ResumableEmrContainerOperator"]
