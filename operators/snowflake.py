"""Resumable Snowflake SQL API: ``SnowflakeSqlApiOperator`` that executes its SQL once per submission
and reattaches to the execution after a crash.

The SQL API runs a request asynchronously and answers with a statement handle. Its idempotency key
is the request's ``requestId`` (a UUID): a request repeated with the same ``requestId`` and
``retry=true`` executes nothing and answers with the first execution's handle. The provider's hook
draws a new random ``requestId`` for every request and never sends ``retry=true``, so a retry after a
crash between the request and the record executes the SQL again: DML and COPY applied twice. Ours
sends a ``requestId`` derived from our token (the same on every try of a submission) with
``retry=true``, through the provider's own ``execute_query`` (only the request's identity differs).
A request of several statements is one execution: its handle is the job.

The operator is the provider's, made resumable through Airflow 3.3's job contract
(:mod:`resumable.adapter`): its hook, its ``query_ids`` XCom and its output check are kept; its own
``durable`` is off (one record, ours). The snowflake provider release that implements the contract
needs Python 3.11 or later.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import requests
from airflow.providers.snowflake.hooks.sql_api import SnowflakeSqlApiHook
from airflow.providers.snowflake.operators.snowflake import SnowflakeSqlApiOperator
from airflow.providers.snowflake.triggers.snowflake_trigger import SnowflakeSqlApiTrigger
from asgiref.sync import sync_to_async

from resumable.adapter import ContractOperator, JobContract
from resumable.job import JobState, JobStatus
from resumable.links import ResumableJobLink
from resumable.protocol import CancelOnKill
from resumable.trigger_stop import StopsJobOnAPersonsStop

#: The namespace of the ``requestId`` derived from a token (a UUID, as the SQL API requires).
REQUEST_ID_NAMESPACE = uuid.UUID("6d1f4c8e-7a52-4f0b-9b0e-3c2a5e8d9f10")
#: The error code of a statement that was cancelled.
CANCELLED_CODE = "000604"
#: Seconds a cancel's request waits for its answer where ``http_request_kwargs`` set no ``timeout``:
#: Snowflake answers a cancel at once (the statement stops later), so a longer wait is a stalled
#: connection. The provider's hook asks again on a timeout (five tries in all, by default).
CANCEL_TIMEOUT = 30


def request_id_for(token: str) -> str:
    """The ``requestId`` a submission with ``token`` is sent with: the same on every try."""
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, token))


class TokenRequestHook(SnowflakeSqlApiHook):  # type: ignore[misc]
    """The provider's hook, whose statement request carries :attr:`request_id` with ``retry=true``
    (the SQL API's idempotent retry) instead of a random ``requestId``, and whose cancel requests wait
    :data:`CANCEL_TIMEOUT` for their answer where ``http_request_kwargs`` set no ``timeout`` (the
    provider's wait without end: a cancel whose answer never came held a trigger or a ``clear
    --cancel-job`` forever); every other call as shipped."""

    request_id: str | None = None

    def _make_api_call_with_retries(
        self,
        method: str,
        url: str,
        headers: dict[str, Any],
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        if self.request_id and method.upper() == "POST" and url.endswith("/api/v2/statements"):
            params = {**(params or {}), "requestId": self.request_id, "retry": "true"}
        if method.upper() == "POST" and url.endswith("/cancel") and "timeout" not in self.http_request_kwargs:
            given = self.http_request_kwargs  # read by the provider's call, for this request only
            self.http_request_kwargs = {**given, "timeout": CANCEL_TIMEOUT}
            try:
                return super()._make_api_call_with_retries(method, url, headers, params, json)
            finally:
                self.http_request_kwargs = given
        return super()._make_api_call_with_retries(method, url, headers, params, json)


def handles_of(job_id: str) -> list[str]:
    """The statement handles a job id holds (the provider's ``query_ids``)."""
    return [handle for handle in job_id.split(",") if handle]


def _submit(op: Any, context: Mapping[str, Any], token: str) -> str:
    hook = op._hook
    hook.request_id = request_id_for(token)
    try:
        return ",".join(op._provider("submit_job")(context))
    finally:
        hook.request_id = None


def _status(op: Any, job_id: str) -> JobStatus:
    states, messages = [], []
    for handle in handles_of(job_id):
        try:
            answer = op._hook.get_sql_api_query_status(handle)
        except requests.exceptions.HTTPError as error:
            if error.response is not None and error.response.status_code == 404:
                return JobStatus(JobState.NOT_FOUND, "not_found", f"Snowflake has no statement {handle}")
            raise
        states.append(str(answer.get("status")))
        if answer.get("status") == "error":
            messages.append(str(answer.get("message", "")))
    if "error" in states:
        message = "; ".join(messages)
        state = JobState.CANCELLED if f"Code: {CANCELLED_CODE}" in message else JobState.FAILED
        return JobStatus(state, "error", message)
    if "running" in states:
        return JobStatus(JobState.RUNNING, "running")
    return JobStatus(JobState.SUCCEEDED, "success")


def _cancel(op: Any, job_id: str) -> None:
    op._hook.cancel_queries(handles_of(job_id))


def _announce(op: Any, context: Mapping[str, Any], job_id: str) -> None:
    op.query_ids = handles_of(job_id)
    op._hook.query_ids = op.query_ids  # what the provider's lineage reads
    if op.do_xcom_push:
        context["ti"].xcom_push(key="query_ids", value=op.query_ids)


def _result(op: Any, context: Mapping[str, Any], job_id: str) -> None:
    op._hook.check_query_output(handles_of(job_id))  # the provider logs each statement's result
    return None  # the provider's execute returns nothing


SNOWFLAKE_STATEMENTS = JobContract(
    system="snowflake",
    submit=_submit,
    idempotent=True,
    cancel=_cancel,
    status=_status,
    announce=_announce,
    result=_result,
    provider_off={"durable": False},
)


class ResumableSnowflakeSqlApiTrigger(StopsJobOnAPersonsStop, SnowflakeSqlApiTrigger):
    """``SnowflakeSqlApiTrigger`` whose statements are cancelled when a person stops the deferred task
    (the operator's ``cancel_on_kill``); a triggerer restart or a moved trigger keeps them. A cancel
    Snowflake refuses is asked again (the provider's own logs and drops it)."""

    async def stop_for_a_person(self) -> None:
        hook = TokenRequestHook(self.snowflake_conn_id, self.token_life_time, self.token_renewal_delta)
        await sync_to_async(hook.cancel_queries, thread_sensitive=False)(list(self.query_ids))

    def stop_worth_retrying(self, error: BaseException) -> bool:
        return is_transient(error)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs


def is_transient(error: BaseException) -> bool:
    """What the SQL API asks to retry (429, 503, 504) and a lost connection."""
    if isinstance(error, requests.exceptions.HTTPError) and error.response is not None:
        return error.response.status_code in (429, 500, 502, 503, 504)
    return isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.Timeout))


class ResumableSnowflakeSqlApiOperator(ContractOperator, SnowflakeSqlApiOperator):  # type: ignore[misc]
    """``SnowflakeSqlApiOperator`` that executes its SQL once per submission, whatever happens to the
    worker.

    Takes the provider's parameters with their meaning (``sql``, ``statement_count``,
    ``snowflake_conn_id``, ``warehouse``, ``database``, ``role``, ``schema``, ``bindings``,
    ``timeout``, ``poll_interval``, ``deferrable``, ``snowflake_api_retry_args``, ...), plus the
    mixin's. ``cancel_on_kill`` takes the provider's booleans: True cancels the statements on a
    person's stop (``"user_stop"``, not on a worker's SIGTERM), False never cancels them.
    ``poll_interval`` (5 s, as the provider's) is the time between status reads. ``timeout`` is
    Snowflake's statement timeout, as the provider's.
    """

    job_contract = SNOWFLAKE_STATEMENTS
    operator_extra_links = (*SnowflakeSqlApiOperator.operator_extra_links, ResumableJobLink())  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        given = kwargs.get("cancel_on_kill")
        if isinstance(given, bool):
            kwargs["cancel_on_kill"] = CancelOnKill.USER_STOP.value if given else CancelOnKill.NEVER.value
        kwargs.setdefault("poll_interval", 5.0)
        super().__init__(**kwargs)

    @cached_property
    def _hook(self) -> TokenRequestHook:
        return TokenRequestHook(
            snowflake_conn_id=self.snowflake_conn_id,
            token_life_time=self.token_life_time,
            token_renewal_delta=self.token_renewal_delta,
            deferrable=self.deferrable,
            api_retry_args=self.snowflake_api_retry_args,
            **self.hook_params,
        )

    def waits_for_job(self) -> bool:
        return True  # the provider's operator always waits for its statements

    def is_transient_error(self, error: BaseException) -> bool:
        return super().is_transient_error(error) or is_transient(error)

    def is_throttled(self, error: BaseException) -> bool:
        response = getattr(error, "response", None)
        return getattr(response, "status_code", None) == 429

    def job_trigger(self, context: Mapping[str, Any], handle: Any) -> ResumableSnowflakeSqlApiTrigger:
        return ResumableSnowflakeSqlApiTrigger(
            cancel_on_kill=self.cancel_on_kill is not CancelOnKill.NEVER,
            poll_interval=self.poll_interval,
            query_ids=handles_of(handle.job_id),
            snowflake_conn_id=self.snowflake_conn_id,
            token_life_time=self.token_life_time,
            token_renewal_delta=self.token_renewal_delta,
        )


__all__ = [
    "SNOWFLAKE_STATEMENTS",
    "ResumableSnowflakeSqlApiOperator",
    "ResumableSnowflakeSqlApiTrigger",
    "TokenRequestHook",
    "request_id_for",
]
