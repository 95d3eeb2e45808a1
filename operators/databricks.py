"""Resumable Databricks operators: the provider's SubmitRun and RunNow operators, reattaching after a crash.

Each class is the provider operator with the same parameters, plus the mixin's; the run id is kept
in our record (the provider's own ``durable`` persistence is switched off), our deterministic token
goes out as ``idempotency_token``, and a retry reattaches to the run instead of starting another.

On Airflow >= 3.3 a retry that finds none of our records but the run id the provider's own operator
stored (``durable=True``, the task was switched to ours while a run was in flight) adopts that run:
see :meth:`_ResumableDatabricksRun.adopt_provider_run`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.databricks.exceptions import DatabricksApiError
from airflow.providers.databricks.hooks.databricks import DatabricksHook, RunState
from airflow.providers.databricks.operators.databricks import (
    XCOM_RUN_ID_KEY,
    XCOM_RUN_PAGE_URL_KEY,
    DatabricksJobRunLink,
    DatabricksRunNowOperator,
    DatabricksSubmitRunOperator,
    update_job_for_repair,
)
from airflow.providers.databricks.triggers.databricks import DatabricksExecutionTrigger
from airflow.providers.databricks.utils.databricks import extract_failed_task_errors
from tenacity import RetryError, stop_after_attempt, wait_exponential

from resumable.attempt import Attempt
from resumable.errors import VersionConflict
from resumable.job import JobHandle, JobState, JobStatus
from resumable.mixin import ResumableMixin
from resumable.pacing import wait_retry_after
from resumable.protocol import CancelOnKill
from resumable.record import Phase, Record
from resumable.supervisor_calls import through_supervisor
from resumable.trigger_stop import StopsJobOnAPersonsStop

#: Life-cycle states in which a run has not started its work yet.
WAITING_STATES = frozenset({"PENDING", "QUEUED", "BLOCKED", "WAITING_FOR_RETRY"})
#: Life-cycle states in which a run is working or winding down (TERMINATING is still active).
WORKING_STATES = frozenset({"RUNNING", "TERMINATING"})
#: Result states that mean the run failed (its outcome, not an error of ours).
FAILED_RESULTS = frozenset(
    {
        "FAILED",
        "TIMEDOUT",
        "MAXIMUM_CONCURRENT_RUNS_REACHED",
        "UPSTREAM_FAILED",
        "UPSTREAM_CANCELED",
        "EXCLUDED",
        "DISABLED",
    }
)
SUCCESS_WITH_FAILURES = "SUCCESS_WITH_FAILURES"


def run_status(run: Mapping[str, Any], success_with_failures: str = "fail") -> JobStatus:
    """Map a ``runs/get`` answer onto the protocol's states, keeping Databricks' words for logs.

    A run with a ``result_state`` is terminal whatever its life-cycle state says; one without is
    active, so a life-cycle state Databricks adds later is waited on, never mistaken for an end.
    """
    state = run.get("state") or {}
    life, result = str(state.get("life_cycle_state", "")), str(state.get("result_state") or "")
    raw, message = (f"{life}/{result}" if result else life), str(state.get("state_message") or "")
    if not result:
        if life in ("SKIPPED", "INTERNAL_ERROR"):
            return JobStatus(JobState.FAILED, raw, message)
        if life == "TERMINATING":
            return JobStatus(JobState.STOPPING, raw, message)
        return JobStatus(JobState.PENDING if life in WAITING_STATES else JobState.RUNNING, raw, message)
    if result == "SUCCESS" or (result == SUCCESS_WITH_FAILURES and success_with_failures == "succeed"):
        return JobStatus(JobState.SUCCEEDED, raw, message)
    if result == "CANCELED":
        return JobStatus(JobState.CANCELLED, raw, message)
    if result == SUCCESS_WITH_FAILURES:
        message = message or "some tasks failed (success_with_failures='fail')"
    return JobStatus(JobState.FAILED, raw, message)


def is_not_found(error: BaseException) -> bool:
    """Databricks says "no such run" as HTTP 400 INVALID_PARAMETER_VALUE "... does not exist", or 404."""
    if not isinstance(error, DatabricksApiError):
        return False
    code, text = error.http_status_code, str(error)
    return code == 404 or (
        code == 400 and ("does not exist" in text.lower() or "RESOURCE_DOES_NOT_EXIST" in text)
    )


def is_transient(error: BaseException) -> bool:
    """429s, 5xx and connection failures, including the hook's own "failed N times, giving up"."""
    if isinstance(error, DatabricksApiError):
        return error.http_status_code is not None and (
            error.http_status_code == 429 or error.http_status_code >= 500
        )
    if isinstance(error.__cause__, RetryError):  # the hook retried transient errors only, then gave up
        return True
    return isinstance(error, (ConnectionError, TimeoutError)) or type(error).__module__.startswith(
        ("requests.", "aiohttp.", "urllib3.")
    )


def is_throttled(error: BaseException) -> bool:
    """A 429 ``REQUEST_LIMIT_EXCEEDED``, or the hook giving up on its own retries of 429s."""
    if isinstance(error, DatabricksApiError):
        return error.http_status_code == 429
    cause = error.__cause__
    if isinstance(cause, RetryError):
        last = cause.last_attempt.exception() if cause.last_attempt else None
        response = getattr(last, "response", None)
        return getattr(response, "status_code", None) == 429
    return False


def provider_run_id(value: Any) -> int | None:
    """The Databricks run id in a value the provider's operator stored, or ``None`` if it holds none.

    The provider stores the int ``submit_run`` / ``run_now`` returned; a string of digits is taken too.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and value > 0 else None


def _provider_state_key(cls: type) -> str | None:
    """The task-state key under which the provider operator ``cls`` keeps its run id (provider >= 7.23 on
    Airflow >= 3.3, the ``external_id_key`` of Airflow's ``ResumableJobMixin``), or ``None`` before."""
    if "durable" not in inspect.signature(cls).parameters:
        return None
    key = getattr(cls, "external_id_key", None)
    return key if isinstance(key, str) and key else None


def _provider_kwargs(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Turn the provider's own persistence off where it has one (provider >= 7.23 on Airflow >= 3.3)."""
    if "durable" in inspect.signature(cls).parameters:
        kwargs["durable"] = False
    return kwargs


class _JobRunLink(DatabricksJobRunLink):  # type: ignore[misc]
    """The provider's "See Databricks Job Run" link, empty (not ``None``) before the run is known.

    A try that fails before it knows its run has no ``run_page_url`` XCom; Airflow 3.0 refuses to
    store a ``None`` link and fails the task's finalisation. Same name and XCom key as the provider's.
    """

    @property
    def xcom_key(self) -> str:
        return f"_link_{DatabricksJobRunLink.__name__}"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return super().get_link(operator, ti_key=ti_key) or ""


def _links(provider_operator: Any) -> tuple[Any, ...]:
    return tuple(
        _JobRunLink() if type(link) is DatabricksJobRunLink else link
        for link in provider_operator.operator_extra_links
    )


class _ResumableDatabricksRun(ResumableMixin):
    """What both operators share: status mapping, cancel, XComs, trigger, error classification."""

    job_system = "databricks"
    #: Where the provider's own operator keeps its run id in the task state store (``durable=True``,
    #: Airflow >= 3.3): ``databricks_run_id`` (SubmitRun), ``databricks_run_now_id`` (RunNow); ``None``
    #: where the provider keeps none.
    provider_state_key: str | None = None

    if TYPE_CHECKING:  # attributes the provider operators define
        databricks_conn_id: str
        polling_period_seconds: int
        databricks_retry_limit: int
        databricks_retry_delay: int
        databricks_retry_args: dict[Any, Any] | None
        do_xcom_push: bool
        wait_for_termination: bool
        idempotency_token: str | None
        run_id: int | None
        _hook: DatabricksHook

    success_with_failures: str

    def _get_hook(self, caller: str) -> DatabricksHook:
        """The provider's hook, whose own retries (``databricks_retry_limit`` tries) wait what a
        throttled answer's ``Retry-After`` asks, spread with jitter, where the provider's default
        backoff ignores it; ``databricks_retry_args``, when given, is used as it is."""
        retry_args = self.databricks_retry_args
        if retry_args is None:
            limit, delay = self.databricks_retry_limit, self.databricks_retry_delay
            retry_args = {
                "stop": stop_after_attempt(limit),
                "wait": wait_retry_after(wait_exponential(min=delay, max=2**limit)),
            }
        return DatabricksHook(
            self.databricks_conn_id,
            retry_limit=self.databricks_retry_limit,
            retry_delay=self.databricks_retry_delay,
            retry_args=retry_args,
            caller=caller,
        )

    def _init_run(self, success_with_failures: str) -> None:
        if success_with_failures not in ("fail", "succeed"):
            raise ValueError(
                f"success_with_failures={success_with_failures!r} is not one of 'fail', 'succeed'"
            )
        self.success_with_failures = success_with_failures

    def execute(self, context: Any) -> Any:
        if self.resumable:
            self.adopt_provider_run(context)
        return super().execute(context)

    def adopt_provider_run(self, context: Mapping[str, Any]) -> None:
        """Take over the run the provider's operator stored for this task instance, if ours has none.

        A task switched from the provider's operator (``durable=True``) to this one while a run was
        in flight comes back as a retry that finds no record of ours, only the run id under the
        provider's key. Submitting would start a second run beside it. Instead, the run is written
        into our record as the run of an earlier try (state ``submitted``), before the mixin reads
        the record: the mixin then decides about it exactly as about a run of our own, by the
        decision table of :mod:`resumable.protocol`: reattach while it is active, finish with it if
        it succeeded, ``on_prior_failure`` if it failed or was cancelled; after a person's clear a
        finished run is run again. Our record, once there, wins over the provider's key.

        Nothing happens below Airflow 3.3 (no ``task_state_store``), on a first try (the store starts
        empty for every DAG run: nothing read, as the ``airflow`` backend does), with
        ``resumable=False``, or when our record exists. A value that is no run id, or a run that
        Databricks does not have, is ignored with a warning and the try submits as usual.
        """
        key = self.provider_state_key
        store = context.get("task_state_store")
        ti = context.get("ti")
        if not key or store is None or ti is None or int(ti.try_number) <= 1:
            return
        with through_supervisor():
            value = store.get(key, None)
        if value is None:
            return
        attempt = Attempt.begin(
            context,
            key=self.state_key,
            operator=type(self),
            job_system=self.job_system,
            on_prior_failure=self.on_prior_failure,
        )
        if attempt.read() is not None:
            self.log.info(
                "resumable: the provider's operator stored %r under %s, but this task has a record of its "
                "own under %r, which decides",
                value,
                key,
                self.state_key,
            )
            return
        run_id = provider_run_id(value)
        if run_id is None:
            self.log.warning(
                "resumable: ignoring %r, which the provider's operator stored under %s: it is not a "
                "Databricks run id; submitting as usual",
                value,
                key,
            )
            return
        try:
            run = self._call(lambda: self._hook.get_run(run_id), "read the provider's stored run")
        except Exception as error:
            if not is_not_found(error):
                raise  # nothing submitted: the next try looks again rather than risk a second run
            self.log.warning(
                "resumable: the provider's operator stored run %s under %s, which Databricks does not have "
                "(%s); submitting as usual",
                run_id,
                key,
                error,
            )
            return
        facts = attempt.facts
        # The run of an earlier try of this lineage, as our own record would have it. retries and
        # clear_number stay unknown: whether this try is a retry or follows a clear is then told
        # from try_number, max_tries and retries (resumable.protocol.same_lineage).
        record = Record(
            lineage=facts.lineage,
            owner=max(1, facts.try_number - 1),
            seq=1,
            phase=Phase.SUBMITTED,
            token=f"provider-{key}-{run_id}"[:64],
            operator=attempt.operator,
            handle=JobHandle(self.job_system, str(run_id), url=run.get("run_page_url") or None),
            run_after=facts.run_after,
        )
        try:
            attempt.write(record)
        except VersionConflict:
            self.log.info("resumable: another attempt wrote this task's record meanwhile; it decides")
            return
        self.log.info(
            "resumable: adopted Databricks run %s that the provider's operator stored under %s (%s): "
            "recorded under %r as the run of an earlier try, this try decides about it as about a run of "
            "its own (reattach while it is active, no second run beside it)",
            run_id,
            key,
            run_status(run, self.success_with_failures).describe(),
            self.state_key,
        )

    def _with_token(self, payload: dict[str, Any], token: str) -> dict[str, Any]:
        given = payload.get("idempotency_token")
        if given:
            self.log.warning(
                "resumable: sending the idempotency_token given to the operator (%r) instead of resumable's "
                "%s: Databricks returns the same run for every submission with it, so a clear or a "
                "resubmission after a failure gets the old run back",
                given,
                token,
            )
        else:
            payload["idempotency_token"] = token
        return payload

    def _run_handle(self, run_id: int) -> JobHandle:
        url = self._hook.get_run_page_url(run_id)
        return JobHandle(self.job_system, str(run_id), url=url)

    def get_job_status(self, handle: JobHandle) -> JobStatus:  # type: ignore[override]
        try:
            run = self._hook.get_run(int(handle.job_id))
        except DatabricksApiError as error:
            if is_not_found(error):
                return JobStatus(JobState.NOT_FOUND, "does not exist", str(error))
            raise
        status = run_status(run, self.success_with_failures)
        if status.state is JobState.FAILED and run.get("tasks"):
            state = run["state"]
            errors = extract_failed_task_errors(self._hook, run, RunState(**state))
            if errors:
                details = "; ".join(f"{e['task_key']}: {e['error']}" for e in errors)
                status = JobStatus(status.state, status.raw, f"{status.message} [{details}]".strip())
        return status.created(run.get("start_time"))

    def cancel_job(self, handle: JobHandle) -> None:
        self._hook.cancel_run(int(handle.job_id))

    def is_transient_error(self, error: BaseException) -> bool:
        return is_transient(error) or super().is_transient_error(error)

    def is_throttled(self, error: BaseException) -> bool:
        return is_throttled(error)

    def announce_job(self, context: Mapping[str, Any], handle: JobHandle) -> None:
        self.run_id = int(handle.job_id)
        if self.do_xcom_push:
            context["ti"].xcom_push(key=XCOM_RUN_ID_KEY, value=int(handle.job_id))
            context["ti"].xcom_push(key=XCOM_RUN_PAGE_URL_KEY, value=handle.url)

    def job_result(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> Any:
        self.log.info("View run status, Spark UI, and logs at %s", handle.url)
        return None

    def waits_for_job(self) -> bool:
        return bool(self.wait_for_termination)

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> DatabricksExecutionTrigger:
        return ResumableDatabricksExecutionTrigger(
            cancel_on_kill=self.cancel_on_kill is not CancelOnKill.NEVER,
            run_id=int(handle.job_id),
            databricks_conn_id=self.databricks_conn_id,
            polling_period_seconds=self.polling_period_seconds,
            retry_limit=self.databricks_retry_limit,
            retry_delay=self.databricks_retry_delay,
            retry_args=self.databricks_retry_args,
            run_page_url=handle.url,
        )


class ResumableDatabricksExecutionTrigger(StopsJobOnAPersonsStop, DatabricksExecutionTrigger):
    """``DatabricksExecutionTrigger`` whose run is cancelled when a person stops the deferred task, also
    before Airflow 3.3 (where the provider trigger's ``on_kill`` is never called; measured on 3.2, not
    working on 3.0), unless ``cancel_on_kill`` is False; a triggerer restart or a trigger moved to
    another triggerer keeps it."""

    def __init__(self, *args: Any, cancel_on_kill: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cancel_on_kill = cancel_on_kill

    def stop_worth_retrying(self, error: BaseException) -> bool:
        return is_transient(error)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            **kwargs,
            "cancel_on_kill": self.cancel_on_kill,
        }


class ResumableDatabricksSubmitRunOperator(_ResumableDatabricksRun, DatabricksSubmitRunOperator):  # type: ignore[misc]
    """``DatabricksSubmitRunOperator`` that reattaches to its run after a crash instead of submitting again.

    Takes every parameter of the provider's operator with the same meaning, plus ResumableMixin's
    (``resumable``, ``on_prior_failure`` "resubmit" or "fail", ``cancel_on_kill``, ``state_key``) and
    ``success_with_failures`` ("fail", the default, or "succeed") for runs whose result is
    SUCCESS_WITH_FAILURES. ``polling_period_seconds`` is the first poll interval (it backs off
    to twice that unless ``max_poll_interval`` says otherwise).

    Args:
        success_with_failures: What a run whose result is ``SUCCESS_WITH_FAILURES`` (some of its
            tasks failed, the run counted as a success by Databricks) means for the task: ``"fail"``
            (the default) fails it, ``"succeed"`` accepts it.
        **kwargs: The provider operator's parameters and :class:`~resumable.ResumableMixin`'s.
    """

    operator_extra_links = _links(DatabricksSubmitRunOperator)
    provider_state_key = _provider_state_key(DatabricksSubmitRunOperator)

    def __init__(self, *, success_with_failures: str = "fail", **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", kwargs.get("polling_period_seconds", 30) or 1)
        super().__init__(**_provider_kwargs(DatabricksSubmitRunOperator, kwargs))
        self._init_run(success_with_failures)

    def submit_job(self, context: Any, token: str) -> JobHandle:  # type: ignore[override]
        payload = self._with_token(self._prepare_submit_json(context), token)
        run_id = self.run_id = self._hook.submit_run(payload)
        return self._run_handle(run_id)


class ResumableDatabricksRunNowOperator(_ResumableDatabricksRun, DatabricksRunNowOperator):  # type: ignore[misc]
    """``DatabricksRunNowOperator`` that reattaches to its run after a crash, and can repair it in place.

    Takes every parameter of the provider's operator with the same meaning, plus ResumableMixin's and
    ``success_with_failures``. ``on_prior_failure="repair"`` makes a retry that finds the run failed
    repair only its failed tasks, inside the same run id, and wait for that repair. The provider's
    ``repair_run=True`` repairs a run that fails while this attempt waits, once per run.
    ``cancel_previous_runs`` cancels the job's other runs before a new submission, never when a
    retry repeats the token of a run that may already exist.

    Args:
        success_with_failures: What a run whose result is ``SUCCESS_WITH_FAILURES`` (some of its
            tasks failed, the run counted as a success by Databricks) means for the task: ``"fail"``
            (the default) fails it, ``"succeed"`` accepts it.
        **kwargs: The provider operator's parameters and :class:`~resumable.ResumableMixin`'s.
    """

    operator_extra_links = _links(DatabricksRunNowOperator)
    provider_state_key = _provider_state_key(DatabricksRunNowOperator)

    def __init__(self, *, success_with_failures: str = "fail", **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", kwargs.get("polling_period_seconds", 30) or 1)
        super().__init__(**_provider_kwargs(DatabricksRunNowOperator, kwargs))
        self._init_run(success_with_failures)

    def submit_job(self, context: Any, token: str) -> JobHandle:  # type: ignore[override]
        if self.resubmitting_token:
            payload = self._build_run_now_payload(context)
            if self.cancel_previous_runs:
                self.log.info(
                    "resumable: not cancelling previous runs: this submission repeats token %s, whose run "
                    "may be one of them",
                    token,
                )
        else:
            payload = self._prepare_run_now_json(context)
        self._merged_json = payload
        run_id = self.run_id = self._hook.run_now(self._with_token(payload, token))
        return self._run_handle(run_id)

    def repair_job(self, context: Any, handle: JobHandle) -> JobHandle:
        run_id = int(handle.job_id)
        run = self._hook.get_run(run_id)
        payload = getattr(self, "_merged_json", None) or self._build_run_now_payload(context)
        if self.databricks_repair_reason_new_settings and run.get("job_id") is not None:
            update_job_for_repair(self, self._hook, run["job_id"], RunState(**run["state"]))
        repair: dict[str, Any] = {"run_id": run_id, "rerun_all_failed_tasks": True}
        latest = self._hook.get_latest_repair_id(run_id)
        if latest is not None:
            repair["latest_repair_id"] = latest
        if "job_parameters" in payload:
            repair["job_parameters"] = payload["job_parameters"]
        repair_id = self._hook.repair_run(repair)
        repairs = int(handle.extras.get("repairs", 0)) + 1
        self.log.info("resumable: repair %s of run %s started (repair id %s)", repairs, run_id, repair_id)
        extras = {**handle.extras, "repairs": repairs, "repair_id": repair_id}
        return JobHandle(handle.system, handle.job_id, handle.url, extras)

    def repair_in_attempt(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> bool:
        if not self.repair_run or int(handle.extras.get("repairs", 0)) > 0:
            return False
        reasons = self.databricks_repair_reason_new_settings
        return not reasons or any(reason in status.message for reason in reasons)


__all__ = [
    "ResumableDatabricksRunNowOperator",
    "ResumableDatabricksSubmitRunOperator",
    "is_not_found",
    "provider_run_id",
    "run_status",
]
