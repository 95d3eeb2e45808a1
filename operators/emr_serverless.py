"""Resumable EMR Serverless: ``EmrServerlessStartJobOperator`` that starts one job run per submission.

The service honours an idempotency token: ours is sent as ``clientToken``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator
from airflow.providers.amazon.aws.triggers.emr import EmrServerlessStartJobTrigger
from botocore.exceptions import ClientError

from resumable.job import JobHandle, JobState, JobStatus
from resumable.links import ResumableJobLink
from resumable.operators._aws import (
    ResumableAwsMixin,
    cancel_on_kill_choice,
    error_code,
)
from resumable.operators.emr_triggers import ResumableEmrServerlessStartJobTrigger

#: EMR Serverless job run states (QUEUED is waiting, CANCELLING still active: not failed, as the hook says).
SERVERLESS_STATES = {
    "SUBMITTED": JobState.PENDING,
    "PENDING": JobState.PENDING,
    "SCHEDULED": JobState.PENDING,
    "QUEUED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "CANCELLING": JobState.STOPPING,
    "SUCCESS": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
}


class ResumableEmrServerlessStartJobOperator(ResumableAwsMixin, EmrServerlessStartJobOperator):  # type: ignore[misc]
    """``EmrServerlessStartJobOperator`` that starts one job run per submission and reattaches to it.

    Our token goes out as ``clientToken`` (the provider picks a random one per try) and, unless
    ``name`` is given, names the run deterministically. ``client_request_token``, when given, is
    sent instead (every submission of the task then returns the same run). ``cancel_on_kill=True``
    (the provider's default) means "cancel on a person's stop", False never cancels; the mixin's
    "user_stop" / "always" / "never" are accepted too. The wait is bounded by
    ``waiter_delay * waiter_max_attempts`` seconds, after which the run is cancelled, as in the provider.
    """

    job_system = "emr-serverless"
    #: Its name until operators/emr.py was split into a module per operator.
    former_names = ("resumable.operators.emr.ResumableEmrServerlessStartJobOperator",)
    operator_extra_links = (
        # type: ignore[assignment]
        *EmrServerlessStartJobOperator.operator_extra_links,
        ResumableJobLink(),
    )

    def __init__(self, **kwargs: Any) -> None:
        self._given_token = kwargs.get("client_request_token") or None
        kwargs["cancel_on_kill"] = cancel_on_kill_choice(kwargs.get("cancel_on_kill", True))
        kwargs.setdefault("poll_interval", kwargs.get("waiter_delay") or 60)
        super().__init__(**kwargs)

    def _ensure_application_started(self) -> None:
        app = self.hook.conn.get_application(applicationId=self.application_id)["application"]
        if app["state"] in ("CREATED", "STARTED"):
            return
        self.log.info("Application %s is %s; starting it", self.application_id, app["state"])
        self.hook.conn.start_application(applicationId=self.application_id)
        self.hook.get_waiter("serverless_app_started").wait(
            applicationId=self.application_id,
            WaiterConfig={"Delay": self.waiter_delay, "MaxAttempts": self.waiter_max_attempts},
        )

    def submit_job(self, context: Any, token: str) -> JobHandle:  # type: ignore[override]
        self._ensure_application_started()
        config = dict(self.config)
        name = self.name or config.pop("name", None) or f"{self.task_id}-{token}"
        args: dict[str, Any] = {
            "clientToken": self._given_token or token,
            "applicationId": self.application_id,
            "executionRoleArn": self.execution_role_arn,
            "jobDriver": self.job_driver,
            "name": name,
            **config,
        }
        overrides = self._overrides_with_openlineage(context, "EMR Serverless")
        if overrides is not None:
            args["configurationOverrides"] = overrides
        job_run_id = self.hook.conn.start_job_run(**args)["jobRunId"]
        self.job_id = job_run_id
        return self._job_run_handle(job_run_id)

    def _job_run_handle(self, job_run_id: str) -> JobHandle:
        return JobHandle(
            self.job_system,
            job_run_id,
            self._console(f"serverless-applications/{self.application_id}/job-runs/{job_run_id}"),
            {"application_id": self.application_id},
        )

    def find_job(self, context: Mapping[str, Any], token: str) -> JobHandle | None:
        """The run named after ``token`` (the name a submission gets unless ``name`` is given): found by
        listing the application's runs, so a stop need not wait for a slow StartJobRun's answer."""
        if self.name or self.config.get("name"):
            return None  # the name is the author's: only a repeated submit with the token finds the run
        name = f"{self.task_id}-{token}"
        try:
            pages = self.hook.conn.get_paginator("list_job_runs").paginate(applicationId=self.application_id)
            for page in pages:
                for run in page.get("jobRuns", []):
                    if run.get("name") == name:
                        return self._job_run_handle(str(run["id"]))
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":  # an application with no runs yet
                return None
            raise
        return None

    def get_job_status(self, handle: JobHandle) -> JobStatus:  # type: ignore[override]
        answer = self._describe(
            self.hook.conn.get_job_run, applicationId=handle.extras["application_id"], jobRunId=handle.job_id
        )
        if answer is None:
            return JobStatus(JobState.NOT_FOUND, "missing", f"job run {handle.job_id} does not exist")
        run = answer["jobRun"]
        state = str(run["state"])
        return JobStatus(
            SERVERLESS_STATES.get(state, JobState.RUNNING), state, str(run.get("stateDetails", ""))
        ).created(run.get("createdAt"))

    def cancel_job(self, handle: JobHandle) -> None:
        self.hook.conn.cancel_job_run(applicationId=handle.extras["application_id"], jobRunId=handle.job_id)

    def announce_job(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        """Our job link, and the provider's: the dashboard, driver logs, S3 and CloudWatch logs links."""
        super().announce_job(context, handle)
        self.job_id = handle.job_id
        self.persist_links(context)  # type: ignore[arg-type]

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> EmrServerlessStartJobTrigger:
        return ResumableEmrServerlessStartJobTrigger(
            application_id=handle.extras["application_id"],
            job_id=handle.job_id,
            waiter_delay=self.waiter_delay,
            waiter_max_attempts=self.waiter_max_attempts,
            cancel_on_kill=self._trigger_cancels(),
            **self._aws_trigger_args(),
        )


__all__ = ["SERVERLESS_STATES", "ResumableEmrServerlessStartJobOperator"]
