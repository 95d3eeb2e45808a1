"""Which errors the operators take for throttling (retried for ``throttled_retry_seconds``)."""

from __future__ import annotations

import requests
from airflow.providers.databricks.hooks.databricks_base import DatabricksApiError
from botocore.exceptions import ClientError
from tenacity import RetryError

from resumable.operators.databricks import is_throttled as databricks_throttled
from resumable.operators.emr import is_throttled as aws_throttled


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetJobRun")


def test_aws_throttling_codes_and_429_are_throttling_other_transient_errors_are_not() -> None:
    assert aws_throttled(client_error("ThrottlingException", 400))
    assert aws_throttled(client_error("TooManyRequestsException", 429))
    assert not aws_throttled(client_error("ServiceUnavailableException", 503))
    assert not aws_throttled(client_error("ValidationException", 400))


def test_databricks_429_is_throttling_also_when_the_hook_gave_up_on_it() -> None:
    assert databricks_throttled(DatabricksApiError("limit", http_status_code=429))
    assert not databricks_throttled(DatabricksApiError("busy", http_status_code=503))

    def gave_up_after(status: int) -> Exception:
        response = requests.Response()
        response.status_code = status
        from tenacity import Future

        last = Future(attempt_number=3)
        last.set_exception(requests.HTTPError(response=response))
        error = RuntimeError("API requests to Databricks failed 3 times. Giving up.")
        error.__cause__ = RetryError(last)
        return error

    assert databricks_throttled(gave_up_after(429))
    assert not databricks_throttled(gave_up_after(503))
