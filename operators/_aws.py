"""What the resumable AWS operators share: how an AWS error is classified (throttled, transient, not
found), the provider's ``cancel_on_kill`` in our terms, and a base class with the console link, the
wait budget and the trigger arguments every AWS operator of the amazon provider takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.providers.common.compat.openlineage.utils import spark as openlineage_spark
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from resumable.job import JobHandle, JobStatus
from resumable.mixin import ResumableMixin
from resumable.protocol import CancelOnKill

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
        "InternalServiceException",  # Glue
        "OperationTimeoutException",  # Glue
        "InternalFailure",
    }
)
NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "ValidationException", "InvalidRequestException"})


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


def cancel_on_kill_choice(value: Any) -> Any:
    """The provider's boolean ``cancel_on_kill`` in our terms: True cancels on a person's stop only."""
    if value is True:
        return "user_stop"
    if value is False:
        return "never"
    return value


class ResumableAwsMixin(ResumableMixin):
    """What the resumable AWS operators share: error classification, console links, the wait budget
    (``waiter_delay * waiter_max_attempts``), the arguments of the provider's triggers."""

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

    def _console(self, fragment: str, service: str = "emr") -> str:
        """The AWS console's page ``fragment`` of ``service``, in the hook's region and partition."""
        region = self.hook.conn_region_name
        domain = BaseAwsLink.get_aws_domain(self.hook.conn_partition) or "aws.amazon.com"
        return f"https://console.{domain}/{service}/home?region={region}#/{fragment}"

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
