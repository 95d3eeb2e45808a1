"""Resumable EMR operators: steps, EMR Serverless, EMR on EKS and cluster creation, surviving a crash.

Each class is the amazon provider's operator with the same parameters, plus ResumableMixin's. Where
the service honours an idempotency token (Serverless, EKS) ours is sent as ``clientToken``; where it
does not (steps, clusters) the token is written into the job (step name, cluster tag) and a retry
finds the job by it instead of creating another.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.providers.amazon.aws.links.emr import EmrClusterLink
from airflow.providers.amazon.aws.operators.emr import (
    EmrAddStepsOperator,
    EmrContainerOperator,
    EmrCreateJobFlowOperator,
    EmrServerlessStartJobOperator,
)
from airflow.providers.amazon.aws.triggers.emr import (
    EmrContainerTrigger,
    EmrServerlessStartJobTrigger,
)
from airflow.providers.amazon.aws.utils.waiter import WAITER_POLICY_NAME_MAPPING, WaitPolicy
from airflow.providers.common.compat.openlineage.utils import spark as openlineage_spark
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from resumable.errors import ResumableError
from resumable.job import JobHandle, JobState, JobStatus
from resumable.links import JOB_URL_XCOM_KEY, ResumableJobLink
from resumable.mixin import ResumableMixin
from resumable.operators.emr_triggers import (
    ResumableEmrAddStepsTrigger,
    ResumableEmrContainerTrigger,
    ResumableEmrCreateJobFlowTrigger,
    ResumableEmrServerlessStartJobTrigger,
)
from resumable.protocol import CancelOnKill

#: The tag a resumable cluster carries, whose value is the submission's token.
TOKEN_TAG = "resumable-token"

#: Of the transient codes, those that mean the caller is over a rate limit.
THROTTLED_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    }
)
#: Error codes worth another try: throttling, and the services' 5xx-like failures.
TRANSIENT_CODES = THROTTLED_CODES | frozenset(
    {
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalServerException",
        "InternalFailure",
    }
)
NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "ValidationException", "InvalidRequestException"})

#: Step states, ours rather than the hook's (a CANCEL_PENDING step is still active).
STEP_STATES = {
    "PENDING": JobState.PENDING,
    "CANCEL_PENDING": JobState.STOPPING,
    "RUNNING": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    "CANCELLED": JobState.CANCELLED,
    "FAILED": JobState.FAILED,
    "INTERRUPTED": JobState.FAILED,
}
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
#: Cluster states in which a cluster takes new steps.
CLUSTER_ACCEPTS_STEPS = frozenset({"STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"})
ALL_CLUSTER_STATES = [
    "STARTING",
    "BOOTSTRAPPING",
    "RUNNING",
    "WAITING",
    "TERMINATING",
    "TERMINATED",
    "TERMINATED_WITH_ERRORS",
]


def error_code(error: BaseException) -> str:
    return str(error.response.get("Error", {}).get("Code", "")) if isinstance(error, ClientError) else ""


def is_transient(error: BaseException) -> bool:
    """Throttling, 5xx and connection failures: worth another try."""
    if isinstance(error, ClientError):
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return error_code(error) in TRANSIENT_CODES or status == 429 or status >= 500
    return isinstance(error, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError))


def is_throttled(error: BaseException) -> bool:
    """The AWS ways of saying "slow down": a throttling error code or HTTP 429."""
    if not isinstance(error, ClientError):
        return False
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return error_code(error) in THROTTLED_CODES or status == 429


def is_not_found(error: BaseException) -> bool:
    """The services' ways of saying "no such job": ResourceNotFound, Validation or InvalidRequest."""
    return error_code(error) in NOT_FOUND_CODES


def _cancel_on_kill(value: Any) -> Any:
    """The provider's boolean ``cancel_on_kill`` in our terms: True cancels on a person's stop only."""
    if value is True:
        return "user_stop"
    if value is False:
        return "never"
    return value


class _ResumableEmr(ResumableMixin):
    """What the EMR operators share: error classification, console links, the wait budget."""

    if TYPE_CHECKING:  # provided by the amazon provider's AwsBaseOperator
        hook: Any
        aws_conn_id: str | None
        region_name: str | None
        verify: Any
        botocore_config: dict[str, Any] | None
        do_xcom_push: bool
        wait_for_completion: bool
        waiter_delay: int
        waiter_max_attempts: int
        task_id: str

    def is_transient_error(self, error: BaseException) -> bool:
        return is_transient(error) or super().is_transient_error(error)

    def is_throttled(self, error: BaseException) -> bool:
        return is_throttled(error)

    def _console(self, fragment: str) -> str:
        region = self.hook.conn_region_name
        domain = BaseAwsLink.get_aws_domain(self.hook.conn_partition) or "aws.amazon.com"
        return f"https://console.{domain}/emr/home?region={region}#/{fragment}"

    def _overrides_with_openlineage(self, context: Any, where: str) -> Any:
        """``configuration_overrides`` with the OpenLineage parent job and transport information
        injected where the provider's operator injects them (``openlineage_inject_*`` options)."""
        overrides = getattr(self, "configuration_overrides", None)
        if getattr(self, "openlineage_inject_parent_job_info", False):
            self.log.info("Injecting OpenLineage parent job information into %s configuration.", where)
            overrides = openlineage_spark.inject_parent_job_information_into_emr_serverless_properties(
                overrides, context
            )
        if getattr(self, "openlineage_inject_transport_info", False):
            self.log.info("Injecting OpenLineage transport information into %s configuration.", where)
            overrides = openlineage_spark.inject_transport_information_into_emr_serverless_properties(
                overrides, context
            )
        return overrides

    def _describe(self, call: Any, **kwargs: Any) -> dict[str, Any] | None:
        """One describe call; None when the service says the job does not exist."""
        try:
            return dict(call(**kwargs))
        except ClientError as error:
            if is_not_found(error):
                return None
            raise

    def announce_job(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        if self.do_xcom_push and handle.url:
            context["ti"].xcom_push(key=JOB_URL_XCOM_KEY, value=handle.url)

    def job_result(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> Any:
        return handle.job_id

    def waits_for_job(self) -> bool:
        return bool(self.wait_for_completion)

    def wait_limit(self) -> float | None:
        """The provider's wait budget: ``waiter_delay * waiter_max_attempts`` seconds."""
        return float(self.waiter_delay * self.waiter_max_attempts)

    def _trigger_cancels(self) -> bool:
        """Whether the trigger stops the job when a person stops the deferred task (only a person's
        action reaches a trigger's on_kill; a triggerer restart keeps the job)."""
        return self.cancel_on_kill is not CancelOnKill.NEVER

    def _aws_trigger_args(self) -> dict[str, Any]:
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "botocore_config": self.botocore_config,
        }


# ---- steps ------------------------------------------------------------------------------------


class ResumableEmrAddStepsOperator(_ResumableEmr, EmrAddStepsOperator):  # type: ignore[misc]
    """``EmrAddStepsOperator`` that adds its steps once, whatever happens to the worker.

    The token is appended to each step's ``Name`` (``"<name> [<token>]"``); after a crash between
    adding the steps and recording their ids, the retry finds them with ``list_steps``. The handle
    holds every step id of the task; the task succeeds when all of them complete. As in the
    provider, the task waits only with ``wait_for_completion=True`` or ``deferrable=True``; a wait
    is bounded by ``waiter_delay * waiter_max_attempts`` seconds, after which the steps are cancelled.
    """

    def submit_is_idempotent(self) -> bool:
        return False  # no token in the API: the job is found again by the token in its name or tag

    job_system = "emr-steps"
    operator_extra_links = (
        # type: ignore[assignment]
        *EmrAddStepsOperator.operator_extra_links,
        ResumableJobLink(),
    )

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", kwargs.get("waiter_delay", 30))
        super().__init__(**kwargs)

    def _cluster_id(self) -> str:
        cluster_id = self.job_flow_id or self.hook.get_cluster_id_by_name(
            str(self.job_flow_name), self.cluster_states
        )
        if not cluster_id:
            raise ResumableError(
                f"No EMR cluster named {self.job_flow_name!r} is in states {self.cluster_states}; nothing "
                "was submitted. Start the cluster or correct job_flow_name / cluster_states."
            )
        return str(cluster_id)

    def _steps(self, context: Any) -> list[dict[str, Any]]:
        steps = self.steps
        if isinstance(steps, str):
            steps = ast.literal_eval(steps)
        if self.openlineage_inject_parent_job_info:
            steps = self._inject_openlineage_parent_job_information(steps, context)
        return [dict(step) for step in steps]

    def _job_handle(self, cluster_id: str, step_ids: list[str]) -> JobHandle:
        url = self._console(f"clusterDetails/{cluster_id}")
        return JobHandle(
            self.job_system, ",".join(step_ids), url, {"cluster_id": cluster_id, "step_ids": step_ids}
        )

    def submit_job(self, context: Any, token: str) -> JobHandle:  # type: ignore[override]
        cluster_id = self._cluster_id()
        cluster = self.hook.conn.describe_cluster(ClusterId=cluster_id)["Cluster"]
        state = cluster["Status"]["State"]
        if state not in CLUSTER_ACCEPTS_STEPS:
            raise ResumableError(
                f"EMR cluster {cluster_id} is {state} and cannot take steps; nothing was submitted. Start a "
                "cluster (or point job_flow_id at a running one) and clear the task."
            )
        steps = self._steps(context)
        for step in steps:
            step["Name"] = f"{step.get('Name', self.task_id)} [{token}]"
        step_ids = self.hook.add_job_flow_steps(
            job_flow_id=cluster_id, steps=steps, execution_role_arn=self.execution_role_arn
        )
        return self._job_handle(cluster_id, list(step_ids))

    def find_job(self, context: Mapping[str, Any], token: str) -> JobHandle | None:
        cluster_id = self._cluster_id()
        marker = f"[{token}]"
        found = [
            step
            for page in self.hook.conn.get_paginator("list_steps").paginate(ClusterId=cluster_id)
            for step in page["Steps"]
            if str(step.get("Name", "")).endswith(marker)
        ]
        if not found:
            return None
        found.reverse()  # list_steps is newest first; the task's steps are the oldest ones
        wanted = len(self._steps(context))
        ours, extra = found[:wanted], found[wanted:]
        if extra:
            extra_ids = [
                s["Id"] for s in extra if STEP_STATES.get(s["Status"]["State"], JobState.FAILED).is_active
            ]
            self.log.warning(
                "resumable: cluster %s has %s steps with token %s, %s expected: keeping the first %s and "
                "cancelling the active duplicates %s",
                cluster_id,
                len(found),
                token,
                wanted,
                wanted,
                extra_ids,
            )
            if extra_ids:
                self.hook.conn.cancel_steps(ClusterId=cluster_id, StepIds=extra_ids)
        return self._job_handle(cluster_id, [s["Id"] for s in ours])

    def _step_states(self, handle: JobHandle) -> list[dict[str, Any]] | None:
        cluster_id, step_ids = handle.extras["cluster_id"], list(handle.extras["step_ids"])
        steps: list[dict[str, Any]] = []
        for i in range(0, len(step_ids), 10):  # list_steps takes at most 10 StepIds
            answer = self._describe(
                self.hook.conn.list_steps, ClusterId=cluster_id, StepIds=step_ids[i : i + 10]
            )
            if answer is None:
                return None
            steps.extend(answer["Steps"])
        return steps if len(steps) == len(step_ids) else None

    def get_job_status(self, handle: JobHandle) -> JobStatus:  # type: ignore[override]
        steps = self._step_states(handle)
        if steps is None:
            return JobStatus(
                JobState.NOT_FOUND, "missing", "the cluster or some of its steps no longer exist"
            )
        return self._steps_status(steps).created(
            steps[0]["Status"].get("Timeline", {}).get("CreationDateTime")
        )

    def _steps_status(self, steps: list[dict[str, Any]]) -> JobStatus:
        states = [STEP_STATES.get(s["Status"]["State"], JobState.RUNNING) for s in steps]
        raw = ",".join(s["Status"]["State"] for s in steps)
        if any(state.is_active for state in states):
            state = next(s for s in (JobState.RUNNING, JobState.STOPPING, JobState.PENDING) if s in states)
            return JobStatus(state, raw)
        failures = [
            f"{s['Id']} ({s.get('Name', '')}): {s['Status'].get('FailureDetails', {}).get('Message', '')}"
            for s in steps
            if STEP_STATES.get(s["Status"]["State"]) is JobState.FAILED
        ]
        if failures:
            return JobStatus(JobState.FAILED, raw, "; ".join(failures))
        if JobState.CANCELLED in states:
            return JobStatus(JobState.CANCELLED, raw)
        return JobStatus(JobState.SUCCEEDED, raw)

    def cancel_job(self, handle: JobHandle) -> None:
        steps = self._step_states(handle) or []
        active = [s["Id"] for s in steps if STEP_STATES.get(s["Status"]["State"], JobState.RUNNING).is_active]
        if active:
            self.hook.conn.cancel_steps(ClusterId=handle.extras["cluster_id"], StepIds=active)

    def announce_job(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        super().announce_job(context, handle)
        if self.do_xcom_push:
            context["ti"].xcom_push(key="job_flow_id", value=handle.extras["cluster_id"])
        EmrClusterLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            job_flow_id=handle.extras["cluster_id"],
        )

    def job_result(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> Any:
        return list(handle.extras["step_ids"])

    def waits_for_job(self) -> bool:
        return bool(self.wait_for_completion or self.deferrable)

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> ResumableEmrAddStepsTrigger:
        return ResumableEmrAddStepsTrigger(
            cancel_on_kill=self._trigger_cancels(),
            job_flow_id=handle.extras["cluster_id"],
            step_ids=list(handle.extras["step_ids"]),
            waiter_delay=self.waiter_delay,
            waiter_max_attempts=self.waiter_max_attempts,
            **self._aws_trigger_args(),
        )


# ---- EMR Serverless ---------------------------------------------------------------------------


class ResumableEmrServerlessStartJobOperator(_ResumableEmr, EmrServerlessStartJobOperator):  # type: ignore[misc]
    """``EmrServerlessStartJobOperator`` that starts one job run per submission and reattaches to it.

    Our token goes out as ``clientToken`` (the provider picks a random one per try) and, unless
    ``name`` is given, names the run deterministically. ``client_request_token``, when given, is
    sent instead (every submission of the task then returns the same run). ``cancel_on_kill=True``
    (the provider's default) means "cancel on a person's stop", False never cancels; the mixin's
    "user_stop" / "always" / "never" are accepted too. The wait is bounded by
    ``waiter_delay * waiter_max_attempts`` seconds, after which the run is cancelled, as in the provider.
    """

    job_system = "emr-serverless"
    operator_extra_links = (
        # type: ignore[assignment]
        *EmrServerlessStartJobOperator.operator_extra_links,
        ResumableJobLink(),
    )

    def __init__(self, **kwargs: Any) -> None:
        self._given_token = kwargs.get("client_request_token") or None
        kwargs["cancel_on_kill"] = _cancel_on_kill(kwargs.get("cancel_on_kill", True))
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


# ---- EMR on EKS -------------------------------------------------------------------------------


class ResumableEmrContainerOperator(_ResumableEmr, EmrContainerOperator):  # type: ignore[misc]
    """``EmrContainerOperator`` (EMR on EKS) that starts one job run per submission and reattaches to it.

    Our token goes out as ``clientToken`` unless ``client_request_token`` is given. ``poll_interval``
    keeps its meaning (it is the mixin's first poll interval too); ``max_polling_attempts`` bounds
    the wait, after which the run is cancelled. ``cancel_on_kill`` as for EMR Serverless.
    """

    job_system = "emr-eks"
    operator_extra_links = (
        # type: ignore[assignment]
        *EmrContainerOperator.operator_extra_links,
        ResumableJobLink(),
    )

    def __init__(self, **kwargs: Any) -> None:
        kwargs["cancel_on_kill"] = _cancel_on_kill(kwargs.get("cancel_on_kill", True))
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


# ---- cluster creation -------------------------------------------------------------------------


class ResumableEmrCreateJobFlowOperator(_ResumableEmr, EmrCreateJobFlowOperator):  # type: ignore[misc]
    """``EmrCreateJobFlowOperator`` that creates one cluster per submission, found again after a crash.

    The token is added to the cluster's tags (``resumable-token``); a retry finds the cluster the
    crashed attempt created, by that tag, and keeps waiting per ``wait_policy`` /
    ``wait_for_completion`` as the provider does: no second cluster, no orphan. A person's stop
    terminates the cluster; a worker's SIGTERM does not. Waiting is bounded by
    ``waiter_delay * waiter_max_attempts`` seconds, after which the cluster is terminated when
    ``terminate_job_flow_on_failure`` (the default) says so.
    """

    def submit_is_idempotent(self) -> bool:
        return False  # no token in the API: the job is found again by the token in its name or tag

    job_system = "emr-cluster"
    operator_extra_links = (
        # type: ignore[assignment]
        *EmrCreateJobFlowOperator.operator_extra_links,
        ResumableJobLink(),
    )

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", kwargs.get("waiter_delay") or 60)
        super().__init__(**kwargs)

    def _overrides(self) -> dict[str, Any]:
        overrides = self.job_flow_overrides
        if isinstance(overrides, str):
            overrides = ast.literal_eval(overrides)
        return dict(overrides)

    def _job_handle(self, cluster_id: str) -> JobHandle:
        return JobHandle(self.job_system, cluster_id, self._console(f"clusterDetails/{cluster_id}"))

    def submit_job(self, context: Any, token: str) -> JobHandle:  # type: ignore[override]
        overrides = self._overrides()
        tags = [t for t in overrides.get("Tags", []) if t.get("Key") != TOKEN_TAG]
        overrides["Tags"] = [*tags, {"Key": TOKEN_TAG, "Value": token}]
        response = self.hook.create_job_flow(overrides)
        cluster_id = str(response["JobFlowId"])
        self._job_flow_id = cluster_id
        return self._job_handle(cluster_id)

    def find_job(self, context: Mapping[str, Any], token: str) -> JobHandle | None:
        run = context.get("dag_run")
        times = [getattr(run, name, None) for name in ("queued_at", "start_date", "run_after")]
        known = [t for t in times if t is not None]
        created_after = (min(known) - timedelta(hours=1)) if known else None
        listing: dict[str, Any] = {"ClusterStates": ALL_CLUSTER_STATES}
        if created_after is not None:
            listing["CreatedAfter"] = created_after
        for cluster_id in self._cluster_ids(listing):
            tags = self.hook.conn.describe_cluster(ClusterId=cluster_id)["Cluster"].get("Tags", [])
            if any(t.get("Key") == TOKEN_TAG and t.get("Value") == token for t in tags):
                return self._job_handle(cluster_id)
        return None

    def _cluster_ids(self, listing: dict[str, Any]) -> Iterable[str]:
        for page in self.hook.conn.get_paginator("list_clusters").paginate(**listing):
            for cluster in page["Clusters"]:
                yield str(cluster["Id"])

    def _success_states(self) -> frozenset[str]:
        if self.wait_policy is WaitPolicy.WAIT_FOR_STEPS_COMPLETION:
            return frozenset({"TERMINATED"})
        return frozenset({"WAITING", "RUNNING", "TERMINATED"})

    def get_job_status(self, handle: JobHandle) -> JobStatus:  # type: ignore[override]
        answer = self._describe(self.hook.conn.describe_cluster, ClusterId=handle.job_id)
        if answer is None:
            return JobStatus(JobState.NOT_FOUND, "missing", f"cluster {handle.job_id} does not exist")
        status = answer["Cluster"]["Status"]
        return self._cluster_status(status).created(status.get("Timeline", {}).get("CreationDateTime"))

    def _cluster_status(self, status: dict[str, Any]) -> JobStatus:
        state, reason = str(status["State"]), status.get("StateChangeReason", {})
        message = str(reason.get("Message", ""))
        if state == "TERMINATED_WITH_ERRORS":
            return JobStatus(JobState.FAILED, state, message)
        if state == "TERMINATED" and reason.get("Code") == "USER_REQUEST":
            return JobStatus(JobState.CANCELLED, state, message)
        if state in self._success_states():
            return JobStatus(JobState.SUCCEEDED, state, message)
        if state == "TERMINATING":
            return JobStatus(JobState.STOPPING, state, message)
        return JobStatus(
            JobState.PENDING if state in ("STARTING", "BOOTSTRAPPING") else JobState.RUNNING, state
        )

    def cancel_job(self, handle: JobHandle) -> None:
        self.hook.conn.terminate_job_flows(JobFlowIds=[handle.job_id])

    def announce_job(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        super().announce_job(context, handle)
        self._job_flow_id = handle.job_id
        EmrClusterLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            job_flow_id=handle.job_id,
        )

    @property
    def cancel_at_wait_limit(self) -> bool:  # type: ignore[override]
        return bool(self.terminate_job_flow_on_failure)

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> ResumableEmrCreateJobFlowTrigger:
        return ResumableEmrCreateJobFlowTrigger(
            cancel_on_kill=self._trigger_cancels(),
            job_flow_id=handle.job_id,
            waiter_delay=self.waiter_delay,
            waiter_max_attempts=self.waiter_max_attempts,
            waiter_name=WAITER_POLICY_NAME_MAPPING[self.wait_policy or WaitPolicy.WAIT_FOR_COMPLETION],
            **self._aws_trigger_args(),
        )


__all__ = [
    "ResumableEmrAddStepsOperator",
    "ResumableEmrContainerOperator",
    "ResumableEmrCreateJobFlowOperator",
    "ResumableEmrServerlessStartJobOperator",
]
