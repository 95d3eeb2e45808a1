"""Resumable SageMaker training: ``SageMakerTrainingOperator`` that creates one training job per submission.

A training job's name is unique in its account and region, and SageMaker refuses a second job of
one name (``ValidationException``: "... a training job with this name already exists"). The name
is therefore our token: the config's ``TrainingJobName`` with a digest of the token appended
(within SageMaker's 63 characters of ``[a-zA-Z0-9-]``), the same on every try of a lineage. A
retry after a crash between the create and the record repeats the create, is told the job
exists, and reattaches to it: no second training job, whatever the crash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from botocore.exceptions import ClientError

from resumable.job import JobHandle, JobState, JobStatus
from resumable.links import ResumableJobLink
from resumable.operators._aws import ResumableAwsMixin, error_code
from resumable.operators.emr_triggers import StopsAwsJobOnAPersonsStop
from resumable.protocol import CancelOnKill

#: SageMaker's longest training job name.
NAME_LIMIT = 63
#: Hex digits of the token's digest in the name (48 bits: a collision within one base name is
#: out of reach).
DIGEST_LENGTH = 12

#: Training job states. ``InProgress`` covers starting and training (``SecondaryStatus`` says which).
TRAINING_STATES = {
    "InProgress": JobState.RUNNING,
    "Stopping": JobState.STOPPING,
    "Stopped": JobState.CANCELLED,
    "Completed": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
}


def job_name(base: str, token: str) -> str:
    """``<base>-<digest of token>``: SageMaker's characters only, at most 63 of them."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:DIGEST_LENGTH]
    stem = re.sub(r"[^a-zA-Z0-9-]", "-", base)[: NAME_LIMIT - DIGEST_LENGTH - 1].strip("-")
    return f"{stem}-{digest}" if stem else f"job-{digest}"


def _exists(error: ClientError) -> bool:
    message = str(error.response.get("Error", {}).get("Message", "")).lower()
    return error_code(error) == "ResourceInUse" or (
        error_code(error) == "ValidationException" and "already exists" in message
    )


class ResumableSageMakerTrainingTrigger(StopsAwsJobOnAPersonsStop, SageMakerTrigger):
    """``SageMakerTrigger`` for a training job, which also stops the job when a person stops the
    deferred task (the operator's ``cancel_on_kill``); a triggerer restart or a moved trigger keeps it."""

    def stop_job(self) -> None:
        self.hook().conn.stop_training_job(TrainingJobName=self.serialized_fields["job_name"])


class ResumableSageMakerTrainingOperator(ResumableAwsMixin, SageMakerTrainingOperator):  # type: ignore[misc]
    """``SageMakerTrainingOperator`` that creates one training job per submission, whatever happens to
    the worker.

    Takes the provider's parameters with their meaning (``config``, ``wait_for_completion``,
    ``check_interval``, ``max_ingestion_time``, ``deferrable``, ``print_log``, ...). The job is named
    ``<TrainingJobName>-<digest of the token>``: a retry that repeats the create is told the job
    exists and reattaches to it. ``check_if_job_exists`` and ``action_if_job_exists`` (the
    provider's timestamped names) have no effect: the name is ours. The task returns
    ``{"Training": <the job's description>}``, as the provider's does. The wait is bounded by
    ``max_ingestion_time`` when given (the job is then stopped and the attempt fails).
    """

    job_system = "sagemaker-training"
    operator_extra_links = (*SageMakerTrainingOperator.operator_extra_links, ResumableJobLink())  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", kwargs.get("check_interval", 30))
        super().__init__(**kwargs)

    def _job_handle(self, name: str) -> JobHandle:
        return JobHandle(self.job_system, name, self._console(f"jobs/{name}", service="sagemaker"))

    def submit_job(self, context: Mapping[str, Any], token: str) -> JobHandle:  # type: ignore[override]
        self.preprocess_config()
        name = job_name(str(self.config["TrainingJobName"]), token)
        config = {**self.config, "TrainingJobName": name}
        self.hook.check_training_config(config)
        self.log.info("resumable: creating SageMaker training job %s", name)
        try:
            self.hook.conn.create_training_job(**config)
        except ClientError as error:
            if not _exists(error):
                raise
            self.log.info("resumable: training job %s exists (this submission's): reattaching to it", name)
        return self._job_handle(name)

    def get_job_status(self, handle: JobHandle) -> JobStatus:  # type: ignore[override]
        job = self._describe(self.hook.conn.describe_training_job, TrainingJobName=handle.job_id)
        if job is None:
            return JobStatus(JobState.NOT_FOUND, "missing", f"SageMaker has no training job {handle.job_id}")
        raw = str(job.get("TrainingJobStatus", ""))
        state = TRAINING_STATES.get(raw, JobState.RUNNING)
        message = str(job.get("FailureReason", "")) or str(job.get("SecondaryStatus", ""))
        return JobStatus(state, raw, message).created(job.get("CreationTime"))

    def cancel_job(self, handle: JobHandle) -> None:  # type: ignore[override]
        self.hook.conn.stop_training_job(TrainingJobName=handle.job_id)

    def job_result(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> Any:
        return self.serialize_result(handle.job_id)

    def waits_for_job(self) -> bool:
        return bool(self.wait_for_completion)

    def wait_limit(self) -> float | None:
        return float(self.max_ingestion_time) if self.max_ingestion_time else None

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> ResumableSageMakerTrainingTrigger:
        return ResumableSageMakerTrainingTrigger(  # type: ignore[call-arg]  # cancel_on_kill is ours
            cancel_on_kill=self.cancel_on_kill is not CancelOnKill.NEVER,
            job_name=handle.job_id,
            job_type="Training",
            waiter_delay=self.check_interval,
            waiter_max_attempts=self.max_attempts,
            **self._aws_trigger_args(),
        )


__all__ = [
    "TRAINING_STATES",
    "ResumableSageMakerTrainingOperator",
    "ResumableSageMakerTrainingTrigger",
    "job_name",
]
