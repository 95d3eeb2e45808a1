"""Resumable SageMaker training and processing: ``SageMakerTrainingOperator`` and
``SageMakerProcessingOperator`` that create one job per submission.

A training or processing job's name is unique in its account and region, and SageMaker refuses a
second job of one name (``ValidationException``: "... a training job with this name already
exists"; ``ResourceInUse`` is read the same way). The name is therefore our token: the config's
``TrainingJobName`` or ``ProcessingJobName`` with a digest of the token appended (within
SageMaker's 63 characters of ``[a-zA-Z0-9-]``), the same on every try of a lineage. A retry after
a crash between the create and the record repeats the create, is told the job exists, and
reattaches to it: no second job, whatever the crash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerProcessingOperator,
    SageMakerTrainingOperator,
    serialize,
)
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from botocore.exceptions import ClientError

from resumable._compat import BaseOperatorMeta
from resumable.job import JobHandle, JobState, JobStatus
from resumable.links import ResumableJobLink
from resumable.operators._aws import ResumableAwsMixin, error_code
from resumable.operators.aws_triggers import StopsAwsJobOnAPersonsStop
from resumable.protocol import CancelOnKill

#: SageMaker's longest training job name.
NAME_LIMIT = 63
#: Hex digits of the token's digest in the name (48 bits: a collision within one base name is
#: out of reach).
DIGEST_LENGTH = 12

#: Training and processing job states. ``InProgress`` covers starting and running (a training job's
#: ``SecondaryStatus`` says which).
SAGEMAKER_STATES = {
    "InProgress": JobState.RUNNING,
    "Stopping": JobState.STOPPING,
    "Stopped": JobState.CANCELLED,
    "Completed": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
}
#: Its name before processing jobs used it too.
TRAINING_STATES = SAGEMAKER_STATES


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


class _StopsSageMakerJob(StopsAwsJobOnAPersonsStop):
    """A ``SageMakerTrigger`` that also stops its job when a person stops the deferred task (the
    operator's ``cancel_on_kill``); a triggerer restart or a moved trigger keeps it."""

    serialized_fields: dict[str, Any]
    hook: Any
    #: The SageMaker call that stops this trigger's kind of job, and its name argument.
    stop_call: str
    name_field: str

    def stop_job(self) -> None:
        getattr(self.hook().conn, self.stop_call)(**{self.name_field: self.serialized_fields["job_name"]})


class ResumableSageMakerTrainingTrigger(_StopsSageMakerJob, SageMakerTrigger):
    """``SageMakerTrigger`` for a training job, which also stops the job when a person stops the
    deferred task (the operator's ``cancel_on_kill``); a triggerer restart or a moved trigger keeps it."""

    stop_call, name_field = "stop_training_job", "TrainingJobName"


class ResumableSageMakerProcessingTrigger(_StopsSageMakerJob, SageMakerTrigger):
    """``SageMakerTrigger`` for a processing job, which also stops the job when a person stops the
    deferred task (the operator's ``cancel_on_kill``); a triggerer restart or a moved trigger keeps it."""

    stop_call, name_field = "stop_processing_job", "ProcessingJobName"


class _ResumableSageMakerJob(ResumableAwsMixin):
    """What the SageMaker job operators share: the job's unique name is the token (see :func:`job_name`),
    a repeated create is told the job exists and reattaches, a stop is SageMaker's stop call."""

    if TYPE_CHECKING:  # provided by the provider's SageMakerBaseOperator
        config: dict[str, Any]
        check_interval: int
        max_attempts: int
        max_ingestion_time: int | None

        def preprocess_config(self) -> None: ...

    #: ``Training`` or ``Processing``: the job's kind in SageMaker's words (its API's names follow).
    kind: str
    trigger_class: type[_StopsSageMakerJob]

    @BaseOperatorMeta._apply_defaults  # type: ignore[arg-type,type-var,misc]  # a mixin's __init__
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", kwargs.get("check_interval", 30))
        super().__init__(**kwargs)

    def _api(self, verb: str) -> Any:
        """SageMaker's ``<verb>_<kind>_job`` call on the hook's client."""
        return getattr(self.hook.conn, f"{verb}_{self.kind.lower()}_job")

    @property
    def _name_field(self) -> str:
        return f"{self.kind}JobName"

    def _job_handle(self, name: str) -> JobHandle:
        return JobHandle(self.job_system, name, self._console(f"jobs/{name}", service="sagemaker"))

    def _check_config(self, config: dict[str, Any]) -> None:
        """The provider's own checks of the config before it creates the job."""

    def submit_job(self, context: Mapping[str, Any], token: str) -> JobHandle:  # type: ignore[override]
        self.preprocess_config()
        name = job_name(str(self.config[self._name_field]), token)
        config = {**self.config, self._name_field: name}
        self._check_config(config)
        self.log.info("resumable: creating SageMaker %s job %s", self.kind.lower(), name)
        try:
            self._api("create")(**config)
        except ClientError as error:
            if not _exists(error):
                raise
            self.log.info(
                "resumable: %s job %s exists (this submission's): reattaching to it", self.kind, name
            )
        return self._job_handle(name)

    def get_job_status(self, handle: JobHandle) -> JobStatus:  # type: ignore[override]
        job = self._describe(self._api("describe"), **{self._name_field: handle.job_id})
        if job is None:
            message = f"SageMaker has no {self.kind.lower()} job {handle.job_id}"
            return JobStatus(JobState.NOT_FOUND, "missing", message)
        raw = str(job.get(f"{self.kind}JobStatus", ""))
        state = SAGEMAKER_STATES.get(raw, JobState.RUNNING)
        message = str(job.get("FailureReason", "")) or str(job.get("SecondaryStatus", ""))
        return JobStatus(state, raw, message).created(job.get("CreationTime"))

    def cancel_job(self, handle: JobHandle) -> None:  # type: ignore[override]
        self._api("stop")(**{self._name_field: handle.job_id})

    def waits_for_job(self) -> bool:
        return bool(self.wait_for_completion)

    def wait_limit(self) -> float | None:
        return float(self.max_ingestion_time) if self.max_ingestion_time else None

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> Any:
        return self.trigger_class(  # type: ignore[call-arg]  # cancel_on_kill is ours
            cancel_on_kill=self.cancel_on_kill is not CancelOnKill.NEVER,
            job_name=handle.job_id,
            job_type=self.kind,
            waiter_delay=self.check_interval,
            waiter_max_attempts=self.max_attempts,
            **self._aws_trigger_args(),
        )


class ResumableSageMakerTrainingOperator(_ResumableSageMakerJob, SageMakerTrainingOperator):  # type: ignore[misc]
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
    kind = "Training"
    trigger_class = ResumableSageMakerTrainingTrigger
    operator_extra_links = (*SageMakerTrainingOperator.operator_extra_links, ResumableJobLink())  # type: ignore[assignment]

    def _check_config(self, config: dict[str, Any]) -> None:
        self.hook.check_training_config(config)

    def job_result(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> Any:
        return self.serialize_result(handle.job_id)


class ResumableSageMakerProcessingOperator(_ResumableSageMakerJob, SageMakerProcessingOperator):  # type: ignore[misc]
    """``SageMakerProcessingOperator`` that creates one processing job per submission, whatever happens
    to the worker.

    Takes the provider's parameters with their meaning (``config``, ``wait_for_completion``,
    ``check_interval``, ``max_ingestion_time``, ``deferrable``, ``output_files_to_xcom``, ...). The job
    is named ``<ProcessingJobName>-<digest of the token>``: a retry that repeats the create is told
    the job exists and reattaches to it. ``action_if_job_exists`` (the provider's timestamped names)
    has no effect: the name is ours. The task returns ``{"Processing": <the job's description>}``,
    with ``OutputFiles`` when ``output_files_to_xcom`` is given, as the provider's does. The wait is
    bounded by ``max_ingestion_time`` when given (the job is then stopped and the attempt fails).
    """

    job_system = "sagemaker-processing"
    kind = "Processing"
    trigger_class = ResumableSageMakerProcessingTrigger
    operator_extra_links = (*SageMakerProcessingOperator.operator_extra_links, ResumableJobLink())  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.output_files_to_xcom and not self.wait_for_completion:
            raise ValueError(
                "output_files_to_xcom requires wait_for_completion=True: the output files cannot be read "
                "before the job completes."
            )

    def job_result(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> Any:
        self.serialized_job = serialize(self.hook.describe_processing_job(handle.job_id))
        return {"Processing": self.serialized_job, **self._read_output_files()}


__all__ = [
    "SAGEMAKER_STATES",
    "TRAINING_STATES",
    "ResumableSageMakerProcessingOperator",
    "ResumableSageMakerProcessingTrigger",
    "ResumableSageMakerTrainingOperator",
    "ResumableSageMakerTrainingTrigger",
    "job_name",
]
