"""Resumable dbt Cloud: ``DbtCloudRunJobOperator`` that triggers one job run per submission and
reattaches to it after a crash.

dbt Cloud's trigger endpoint takes no idempotency key: a repeated trigger is a second run (queued
behind the first: dbt Cloud runs one run of a job at a time, so a duplicate costs a second full
build after the first). Our token rides at the end of the run's ``cause`` (``... [rsm-...]``; the
provider's ``trigger_reason`` is kept before it, shortened to fit dbt Cloud's 255 characters), and a
retry after a crash between the trigger and the record finds the run by listing the job's runs,
newest first, back to the DAG run's ``run_after``, instead of triggering another.

The operator is the provider's (its parameters, XComs ``job_run_id`` and ``job_run_url``, the
"Monitor Job Run" link, its hook and trigger), on :class:`~resumable.ResumableMixin`: the provider's
operator does not implement Airflow 3.3's job contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudHook, DbtCloudJobRunStatus
from airflow.providers.dbt.cloud.operators.dbt import DbtCloudRunJobOperator, DbtCloudRunJobOperatorLink
from airflow.providers.dbt.cloud.triggers.dbt import DbtCloudRunJobTrigger

from resumable.job import JobHandle, JobState, JobStatus, keep_the_first
from resumable.links import ResumableJobLink
from resumable.mixin import ResumableMixin
from resumable.protocol import CancelOnKill
from resumable.trigger_stop import StopsJobOnAPersonsStop

#: dbt Cloud's limit on a run's ``cause``.
CAUSE_LIMIT = 255
#: Runs one page of the runs list holds (the API's largest page).
PAGE = 100
#: How far before the DAG run's ``run_after`` discovery still looks (clocks differ).
CLOCK_SLACK = timedelta(hours=1)
#: Seconds a cancel's request waits for its answer where ``hook_params`` set no ``timeout_seconds``:
#: dbt Cloud answers a cancel at once (the run stops later), so a longer wait is a stalled connection.
CANCEL_TIMEOUT = 30

DBT_CLOUD_STATES = {
    DbtCloudJobRunStatus.QUEUED.value: JobState.PENDING,
    DbtCloudJobRunStatus.STARTING.value: JobState.PENDING,
    DbtCloudJobRunStatus.RUNNING.value: JobState.RUNNING,
    DbtCloudJobRunStatus.SUCCESS.value: JobState.SUCCEEDED,
    DbtCloudJobRunStatus.ERROR.value: JobState.FAILED,
    DbtCloudJobRunStatus.CANCELLED.value: JobState.CANCELLED,
}


def cause_with_token(reason: str, token: str) -> str:
    """``reason`` with `` [token]`` at its end, ``reason`` shortened to keep the whole within 255."""
    tail = f" [{token}]"
    room = CAUSE_LIMIT - len(tail)
    if room < 1:
        raise ValueError(f"the token {token!r} leaves no room in dbt Cloud's {CAUSE_LIMIT}-character cause")
    if len(reason) > room:
        reason = reason[: room - 1] + "…"
    return reason + tail


def carries_token(run: Mapping[str, Any], token: str) -> bool:
    cause = str((run.get("trigger") or {}).get("cause") or "")
    return cause.endswith(f"[{token}]")


def http_status(error: BaseException) -> int | None:
    """The HTTP status of an error of the provider's hook: ``HttpHook`` raises ``AirflowException`` with
    ``"<status>:<reason>"``, and its retries a ``requests`` error with the response."""
    response = getattr(error, "response", None)
    if getattr(response, "status_code", None) is not None:
        return int(response.status_code)  # type: ignore[union-attr]
    head = str(error).split(":", 1)[0].strip()
    return int(head) if head.isdigit() and len(head) == 3 else None


def is_transient(error: BaseException) -> bool:
    status = http_status(error)
    if status is not None:
        return status == 429 or status >= 500
    return isinstance(error, (ConnectionError, TimeoutError)) or type(error).__module__.startswith(
        ("requests.", "aiohttp.", "urllib3.")
    )


class TimedDbtCloudHook(DbtCloudHook):  # type: ignore[misc]
    """The provider's hook, whose requests keep its ``timeout_seconds``.

    The provider's ``get_conn`` drops the request options its calls pass (``timeout_seconds`` among
    them), so a request of its sync calls waits for its answer without end, whatever
    ``timeout_seconds`` says (only its async calls keep it). This keeps them for the request."""

    def get_conn(self, headers: Any = None, extra_options: Mapping[str, Any] | None = None) -> Any:
        session = super().get_conn(headers, extra_options)
        self.merged_extra = {**self.merged_extra, **(extra_options or {})}
        return session


def cancel_run(conn_id: str, hook_params: Mapping[str, Any], run_id: int, account_id: int | None) -> None:
    """Ask dbt Cloud to cancel the run, through the provider's hook made with ``hook_params``.

    The request waits ``timeout_seconds`` of ``hook_params`` for its answer, or
    :data:`CANCEL_TIMEOUT` where none is set (the provider's hook waits without end, see
    :class:`TimedDbtCloudHook`): a cancel whose answer never comes fails with ``requests``' timeout
    error, a transient one (a person's stop of a deferred task asks again within ``[resumable]
    stop_follow_up_seconds``), instead of holding a trigger or a ``clear --cancel-job`` forever."""
    params = {**hook_params, "timeout_seconds": hook_params.get("timeout_seconds") or CANCEL_TIMEOUT}
    TimedDbtCloudHook(conn_id, **params).cancel_job_run(run_id=run_id, account_id=account_id)


def _created(run: Mapping[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(run.get("created_at")).replace("Z", "+00:00"))
    except ValueError:
        return None


class _MonitorJobRunLink(DbtCloudRunJobOperatorLink):  # type: ignore[misc]
    """The provider's "Monitor Job Run" link, empty (not ``None``) before the run is known: a try that
    fails before it knows its run has no ``job_run_url`` XCom, and Airflow 3.0 refuses to store a
    ``None`` link and fails the task's finalisation. Same name and XCom key as the provider's."""

    @property
    def xcom_key(self) -> str:
        return f"_link_{DbtCloudRunJobOperatorLink.__name__}"

    def get_link(self, operator: Any, *, ti_key: Any = None) -> str:
        return super().get_link(operator, ti_key=ti_key) or ""


class ResumableDbtCloudRunJobTrigger(StopsJobOnAPersonsStop, DbtCloudRunJobTrigger):
    """``DbtCloudRunJobTrigger`` whose run is cancelled when a person stops the deferred task (unless
    ``cancel_on_kill`` is False); a triggerer restart or a moved trigger keeps it."""

    def __init__(self, *args: Any, cancel_on_kill: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cancel_on_kill = cancel_on_kill

    async def stop_for_a_person(self) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(cancel_run, thread_sensitive=False)(
            self.conn_id, self.hook_params or {}, int(self.run_id), self.account_id
        )

    def stop_worth_retrying(self, error: BaseException) -> bool:
        return is_transient(error)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            **kwargs,
            "cancel_on_kill": self.cancel_on_kill,
        }


class ResumableDbtCloudRunJobOperator(ResumableMixin, DbtCloudRunJobOperator):  # type: ignore[misc]
    """``DbtCloudRunJobOperator`` that triggers one dbt Cloud job run per submission, whatever happens
    to the worker.

    Takes the provider's parameters with their meaning (``job_id`` or ``project_name``,
    ``environment_name`` and ``job_name``; ``account_id``, ``trigger_reason``, ``steps_override``,
    ``schema_override``, ``additional_run_config``, ``wait_for_termination``, ``timeout``,
    ``check_interval``, ``deferrable``, ``hook_params``), plus the mixin's. ``check_interval`` is the
    first poll interval. ``timeout`` bounds the wait for the run, as the provider's does: when it is
    spent the task fails and the run is left to finish (``execution_timeout`` cancels it).
    ``reuse_existing_run=True`` takes a run of the job that is already in progress (not ours) instead
    of triggering one, as the provider does. ``retry_from_failure`` is refused: dbt Cloud's rerun
    endpoint takes no cause, so a rerun could not be found again after a crash; use
    ``on_prior_failure`` (a retry triggers a new run by default).
    """

    job_system = "dbt_cloud"
    #: The provider's ``timeout`` fails the task and leaves the run be.
    cancel_at_wait_limit = False
    operator_extra_links = (_MonitorJobRunLink(), ResumableJobLink())  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("retry_from_failure"):
            raise ValueError(
                "retry_from_failure=True is not supported by ResumableDbtCloudRunJobOperator: dbt Cloud's "
                "rerun endpoint takes no cause, so a rerun could not be found again after a crash and "
                "would run twice. Remove it; a retry triggers a new run (on_prior_failure='resubmit'), "
                "or fails without one (on_prior_failure='fail')."
            )
        kwargs.setdefault("poll_interval", kwargs.get("check_interval", 60) or 1)
        super().__init__(**kwargs)

    # ---- the mixin's contract -------------------------------------------------------------------

    def submit_is_idempotent(self) -> bool:
        return False

    def _reason(self) -> str:
        return self.trigger_reason or (
            f"Triggered via Apache Airflow by task {self.task_id!r} in the {self.dag_id} DAG."
        )

    def submit_job(self, context: Mapping[str, Any], token: str) -> JobHandle:
        self.job_id = self._resolve_job_id()
        if self.reuse_existing_run:
            running = self.hook.get_job_runs(
                account_id=self.account_id,
                payload={
                    "job_definition_id": self.job_id,
                    "status__in": str(list(DbtCloudJobRunStatus.NON_TERMINAL_STATUSES.value)),
                    "order_by": "-created_at",
                },
            ).json()["data"]
            if running:
                self.log.info(
                    "resumable: reuse_existing_run: taking run %s of job %s, in progress, instead of "
                    "triggering one",
                    running[0]["id"],
                    self.job_id,
                )
                return self._handle_of(running[0])
        answer = self.hook.trigger_job_run(
            account_id=self.account_id,
            job_id=self.job_id,
            cause=cause_with_token(self._reason(), token),
            steps_override=self.steps_override,
            schema_override=self.schema_override,
            additional_run_config=self.additional_run_config,
        )
        return self._handle_of(answer.json()["data"])

    def _handle_of(self, run: Mapping[str, Any]) -> JobHandle:
        self.run_id = int(run["id"])
        return JobHandle(
            self.job_system,
            str(run["id"]),
            url=run.get("href"),
            extras={"account_id": self.account_id, "job_id": self.job_id},
        )

    def find_job(self, context: Mapping[str, Any], token: str) -> JobHandle | None:
        """The run triggered with ``token``: the job's runs, newest first, page by page, back to an hour
        before the DAG run's ``run_after`` (no run of this DAG run's can be older)."""
        self.job_id = self._resolve_job_id()
        since = getattr(context.get("dag_run"), "run_after", None)
        horizon = since - CLOCK_SLACK if isinstance(since, datetime) else None
        found: list[Mapping[str, Any]] = []
        offset = 0
        while True:
            page = self.hook.get_job_runs(
                account_id=self.account_id,
                payload={
                    "job_definition_id": self.job_id,
                    "order_by": "-id",
                    "include_related": ["trigger"],
                    "limit": PAGE,
                    "offset": offset,
                },
            ).json()
            runs = page.get("data") or []
            found += [run for run in runs if carries_token(run, token)]
            created = [_created(run) for run in runs]
            oldest = min((c for c in created if c is not None), default=None)
            if len(runs) < PAGE or (horizon and oldest and oldest < horizon):
                break
            offset += len(runs)
        found.sort(key=lambda run: int(run["id"]))
        states = [(str(run["id"]), self._state_of(run["status"]).is_active) for run in found]

        def cancel(active: list[str]) -> None:
            for run_id in active:
                cancel_run(self.dbt_cloud_conn_id, self.hook_params, int(run_id), self.account_id)

        first = keep_the_first(self.log, f"dbt Cloud job {self.job_id}", token, states, cancel)
        return None if first is None else self._handle_of(next(r for r in found if str(r["id"]) == first))

    @staticmethod
    def _state_of(status: Any) -> JobState:
        # a status dbt Cloud adds later is waited on, never taken for an end
        return DBT_CLOUD_STATES.get(int(status), JobState.RUNNING)

    def get_job_status(self, handle: JobHandle) -> JobStatus:
        try:
            run = self.hook.get_job_run(run_id=int(handle.job_id), account_id=self.account_id).json()["data"]
        except Exception as error:
            if http_status(error) == 404:
                return JobStatus(JobState.NOT_FOUND, "missing", f"dbt Cloud has no run {handle.job_id}")
            raise
        raw = str(run.get("status_humanized") or run.get("status"))
        message = str(run.get("status_message") or "")
        return JobStatus(self._state_of(run["status"]), raw, message).created(_created(run))

    def cancel_job(self, handle: JobHandle) -> None:
        cancel_run(self.dbt_cloud_conn_id, self.hook_params, int(handle.job_id), self.account_id)

    def job_result(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> Any:
        if status.state is JobState.FAILED:
            self.hook.log_job_run_failure_details(run_id=int(handle.job_id), account_id=self.account_id)
        return int(handle.job_id)  # the provider's return value, the run id

    def announce_job(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        super().announce_job(context, handle)  # our "Job page" link
        self.run_id = int(handle.job_id)
        context["ti"].xcom_push(key="job_run_url", value=handle.url)
        context["ti"].xcom_push(key="job_run_id", value=self.run_id)

    def waits_for_job(self) -> bool:
        return bool(self.wait_for_termination)

    def wait_limit(self) -> float | None:
        return float(self.timeout) if self.timeout else None

    def is_transient_error(self, error: BaseException) -> bool:
        return super().is_transient_error(error) or is_transient(error)

    def is_throttled(self, error: BaseException) -> bool:
        return http_status(error) == 429

    def trigger_gave_up(self, event: Any) -> str | None:
        message = str(event.get("message", "")) if isinstance(event, dict) else ""
        if "within the configured timeout" in message:  # the provider trigger's words for `timeout`
            return f"the trigger stopped waiting ({message})"
        return super().trigger_gave_up(event)

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> ResumableDbtCloudRunJobTrigger:
        import time

        return ResumableDbtCloudRunJobTrigger(
            cancel_on_kill=self.cancel_on_kill is not CancelOnKill.NEVER,
            conn_id=self.dbt_cloud_conn_id,
            run_id=int(handle.job_id),
            end_time=time.time() + self.timeout,
            account_id=self.account_id,
            poll_interval=self.check_interval,
            hook_params=self.hook_params,
        )


__all__ = [
    "CAUSE_LIMIT",
    "DBT_CLOUD_STATES",
    "ResumableDbtCloudRunJobOperator",
    "ResumableDbtCloudRunJobTrigger",
    "cause_with_token",
]
