"""What a throttled call waits: the service's ``Retry-After``, found wherever the hook put the answer."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import aiohttp
import httpx
import pytest
import requests
from botocore.exceptions import ClientError
from tenacity import Future, RetryCallState, RetryError, wait_fixed
from yarl import URL

from resumable.pacing import RETRY_AFTER_CAP, paced, parse_retry_after, retry_after_of, wait_retry_after

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1", 1.0),
        (" 2.5 ", 2.5),
        (b"3", 3.0),
        (7, 7.0),
        ("-4", 0.0),  # a wait in the past is no wait
        ("86400", RETRY_AFTER_CAP),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
    ],
)
def test_retry_after_values_in_seconds_or_as_a_date(value: object, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "Sun, 06 Dec 2026 12:00:30"])
def test_what_is_not_a_retry_after_is_none(value: object) -> None:
    assert parse_retry_after(value, now=NOW) is None


def _requests_error(status: int, headers: dict[str, str]) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    return requests.HTTPError(response=response)


def _gave_up(last: BaseException) -> Exception:
    """What the Databricks hook raises once its own retries are spent: ``... from RetryError``."""
    future = Future(attempt_number=3)
    future.set_exception(last)
    try:
        try:
            raise RetryError(future)
        except RetryError as retry_error:
            raise RuntimeError("API requests to Databricks failed 3 times. Giving up.") from retry_error
    except RuntimeError as error:
        return error


def test_retry_after_is_found_on_the_response_and_through_the_hooks_wrapping() -> None:
    direct = _requests_error(429, {"Retry-After": "2"})
    assert retry_after_of(direct) == 2.0
    assert retry_after_of(_gave_up(direct)) == 2.0
    assert retry_after_of(_gave_up(_requests_error(429, {}))) is None
    assert retry_after_of(RuntimeError("no answer at all")) is None


def test_retry_after_of_httpx_aiohttp_and_botocore_errors() -> None:
    request = httpx.Request("GET", "https://example.invalid/api/2.2/jobs/runs/get")
    answer = httpx.Response(429, headers={"retry-after": "3"}, request=request)
    assert retry_after_of(httpx.HTTPStatusError("429", request=request, response=answer)) == 3.0

    info = aiohttp.RequestInfo(url=URL("https://example.invalid"), method="GET", headers={})  # type: ignore[arg-type]
    limited = aiohttp.ClientResponseError(info, (), status=429, headers={"Retry-After": "4"})  # type: ignore[arg-type]
    assert retry_after_of(limited) == 4.0

    throttled = ClientError(
        {
            "Error": {"Code": "TooManyRequestsException"},
            "ResponseMetadata": {"HTTPStatusCode": 429, "HTTPHeaders": {"retry-after": "5"}},
        },
        "GetJobRun",
    )
    assert retry_after_of(throttled) == 5.0
    unsaid = ClientError({"Error": {"Code": "ThrottlingException"}, "ResponseMetadata": {}}, "GetJobRun")
    assert retry_after_of(unsaid) is None


def test_a_paced_wait_is_at_least_what_was_asked_and_at_most_twice_it() -> None:
    rng = random.Random(7)
    waits = [paced(2.0, rng) for _ in range(1000)]
    assert min(waits) >= 2.0 and max(waits) <= 4.0
    assert max(waits) - min(waits) > 1.5, "the callers throttled together must be spread apart"


def _failed_state(error: BaseException) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.set_exception((type(error), error, None))
    return state


def test_the_tenacity_wait_honours_retry_after_and_falls_back_without_it() -> None:
    wait = wait_retry_after(wait_fixed(9))
    assert 1.0 <= wait(_failed_state(_requests_error(429, {"Retry-After": "1"}))) <= 2.0
    assert wait(_failed_state(_requests_error(503, {}))) == 9
    # An operator's own reading of its system's answers takes the place of the default one.
    assert (
        wait_retry_after(wait_fixed(9), asked=lambda error: None)(
            _failed_state(_requests_error(429, {"Retry-After": "1"}))
        )
        == 9
    )
