"""An in-process fake job service and a small resumable operator for it, for tests of DAGs and of the mixin.

The service keeps jobs in memory, moves them forward one step per status call (deterministic,
no clock), and counts everything a test asserts: submissions per token, status calls, cancels.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

from airflow.sdk import BaseOperator

from resumable._compat import BaseTrigger, TriggerEvent
from resumable.errors import TransientJobError
from resumable.job import JobHandle, JobState, JobStatus
from resumable.mixin import ResumableMixin
from resumable.protocol import CancelOnKill
from resumable.trigger_stop import StopsJobOnAPersonsStop


class ServiceUnavailable(TransientJobError):
    """What the fake service raises when a test asked for transient failures."""


@dataclass
class FakeJob:
    job_id: str
    token: str
    name: str
    outcome: JobState
    polls_left: int
    state: JobState = JobState.PENDING
    cancel_requested: bool = False
    repairs: int = 0
    #: Status calls this job still answers STOPPING before CANCELLED, once a cancel was asked for.
    stopping_polls_left: int = 0
    #: Status calls this job still answers RUNNING after a cancel was asked for (it has not taken yet).
    cancel_lag_left: int = 0
    #: When the service created it (the machine's clock).
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class FakeJobService:
    """A job service that lives in this process; find it again by name with :meth:`named`.

    ``idempotent=True`` makes a repeated submit with one token return the existing job (like
    Databricks); with ``False`` the operator must discover the job by token (like EMR steps).
    Jobs take ``polls`` status calls to finish with ``outcome`` unless a test scripts otherwise.
    A cancelled job answers STOPPING for ``cancel_polls`` status calls, then CANCELLED (``0``:
    CANCELLED at the next status call), like Databricks TERMINATING or EMR CANCELLING. Before that,
    a cancelled job answers RUNNING for ``cancel_lag`` status calls: Databricks cancels
    asynchronously ("the run may still be running when this request completes").
    """

    name: str = "default"
    idempotent: bool = True
    polls: int = 3
    outcome: JobState = JobState.SUCCEEDED
    cancel_polls: int = 0
    cancel_lag: int = 0
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    submissions: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    cancelled: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    #: Ids of the jobs created, in order.
    created: list[str] = field(default_factory=list)
    #: Outcomes for the next jobs created, in order; ``outcome`` once it is used up.
    outcomes: list[JobState] = field(default_factory=list)
    _hooks: dict[int, Callable[[], None]] = field(default_factory=dict)
    _submit_hooks: dict[int, Callable[[], None]] = field(default_factory=dict)
    _fail_next: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1001))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    _registry: ClassVar[dict[str, FakeJobService]] = {}

    def __post_init__(self) -> None:
        FakeJobService._registry[self.name] = self

    @classmethod
    def named(cls, name: str) -> FakeJobService:
        try:
            return cls._registry[name]
        except KeyError:
            raise LookupError(f"no FakeJobService named {name!r} exists in this process") from None

    # ---- what tests script -------------------------------------------------------------------

    def fail_next_calls(self, count: int) -> None:
        """Make the next ``count`` status, find or cancel calls raise :class:`ServiceUnavailable`."""
        self._fail_next = count

    def when_status_called(self, count: int, action: Callable[[], None]) -> None:
        """Run ``action`` right after the ``count``-th status call (to stop a worker mid-poll)."""
        self._hooks[count] = action

    def when_submit_called(self, count: int, action: Callable[[], None]) -> None:
        """Run ``action`` once the ``count``-th submit call has created (or found) its job, before it
        answers (a slow control plane: the job exists, the caller does not know its id yet)."""
        self._submit_hooks[count] = action

    def clear_hooks(self) -> None:
        """Forget every action set with :meth:`when_status_called` or :meth:`when_submit_called`."""
        self._hooks.clear()
        self._submit_hooks.clear()

    def finish(self, job_id: str, outcome: JobState) -> None:
        with self._lock:
            self.jobs[job_id].state = outcome

    def forget(self, job_id: str) -> None:
        """Make the service answer "no such job" for ``job_id`` (expired, deleted)."""
        with self._lock:
            del self.jobs[job_id]

    # ---- what tests assert -------------------------------------------------------------------

    @property
    def total_submissions(self) -> int:
        """Jobs created; a repeat with a known token on an idempotent service creates none."""
        return len(self.created)

    # ---- the API -----------------------------------------------------------------------------

    def _maybe_fail(self, call: str) -> None:
        self.calls[call] += 1
        if self._fail_next > 0:
            self._fail_next -= 1
            raise ServiceUnavailable(f"fake service unavailable during {call}")

    def submit(self, token: str, name: str) -> str:
        job_id = self._submit(token, name)
        hook = self._submit_hooks.pop(self.calls["submit"], None)
        if hook is not None:
            hook()
        return job_id

    def _submit(self, token: str, name: str) -> str:
        with self._lock:
            self.calls["submit"] += 1
            self.submissions[token] += 1
            if self.idempotent:
                for job in self.jobs.values():
                    if job.token == token:
                        return job.job_id
            job_id = str(next(self._ids))
            outcome = self.outcomes.pop(0) if self.outcomes else self.outcome
            self.jobs[job_id] = FakeJob(job_id, token, name, outcome, self.polls)
            self.created.append(job_id)
            return job_id

    def status(self, job_id: str) -> JobState:
        state = self._status(job_id)
        hook = self._hooks.pop(self.calls["status"], None)
        if hook is not None:
            hook()
        return state

    def _status(self, job_id: str) -> JobState:
        with self._lock:
            self._maybe_fail("status")
            job = self.jobs.get(job_id)
            if job is None:
                return JobState.NOT_FOUND
            if job.state.is_active:
                if job.cancel_requested and job.cancel_lag_left > 0:
                    job.cancel_lag_left -= 1
                    job.state = JobState.RUNNING
                elif job.cancel_requested and job.stopping_polls_left > 0:
                    job.stopping_polls_left -= 1
                    job.state = JobState.STOPPING
                elif job.cancel_requested:
                    job.state = JobState.CANCELLED
                elif job.polls_left <= 0:
                    job.state = job.outcome
                else:
                    job.polls_left -= 1
                    job.state = JobState.RUNNING
            return job.state

    def created_at(self, job_id: str) -> datetime | None:
        """When the service created ``job_id`` (``None``: no such job)."""
        with self._lock:
            job = self.jobs.get(job_id)
            return job.created_at if job is not None else None

    def find(self, token: str) -> str | None:
        with self._lock:
            self._maybe_fail("find")
            return next((j.job_id for j in self.jobs.values() if j.token == token), None)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            self._maybe_fail("cancel")
            self.cancelled.append(job_id)
            job = self.jobs.get(job_id)
            if job is not None and job.state.is_active and not job.cancel_requested:
                job.cancel_requested = True
                job.stopping_polls_left = self.cancel_polls
                job.cancel_lag_left = self.cancel_lag

    def repair(self, job_id: str) -> None:
        with self._lock:
            self.calls["repair"] += 1
            job = self.jobs[job_id]
            if job.state.is_active:
                raise ValueError(f"job {job_id} is still active and cannot be repaired")
            self.repaired.append(job_id)
            job.repairs += 1
            job.outcome, job.polls_left, job.state = JobState.SUCCEEDED, self.polls, JobState.PENDING

    def was_cancelled(self, job_id: str) -> bool:
        return job_id in self.cancelled


class _WatchesFakeJob(BaseTrigger):  # type: ignore[misc,valid-type]
    """Waits in the triggerer until a fake job is terminal."""

    service: str
    job_id: str
    poll_interval: float

    async def run(self) -> AsyncIterator[Any]:
        service = FakeJobService.named(self.service)
        while True:
            try:
                state = service.status(self.job_id)
            except ServiceUnavailable:
                state = JobState.RUNNING
            if not state.is_active:
                yield TriggerEvent({"job_id": self.job_id, "state": state.value})
                return
            await asyncio.sleep(self.poll_interval)


class FakeJobTrigger(StopsJobOnAPersonsStop, _WatchesFakeJob):
    """Waits in the triggerer until a fake job is terminal; a person's stop of the deferred task
    cancels the job (unless ``cancel_on_kill`` is False), as the resumable operators' triggers do."""

    def __init__(self, service: str, job_id: str, poll_interval: float, cancel_on_kill: bool = True) -> None:
        super().__init__()
        self.service, self.job_id, self.poll_interval = service, job_id, poll_interval
        self.cancel_on_kill = cancel_on_kill

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "service": self.service,
                "job_id": self.job_id,
                "poll_interval": self.poll_interval,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    async def stop_for_a_person(self) -> None:
        await asyncio.to_thread(FakeJobService.named(self.service).cancel, self.job_id)


class FakeJobOperator(ResumableMixin, BaseOperator):
    """A complete resumable operator for :class:`FakeJobService`: the smallest real use of the contract."""

    job_system = "fake"
    template_fields = ("job_name",)

    def __init__(
        self, *, service: str = "default", job_name: str = "job", deferrable: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.service, self.job_name, self.deferrable = service, job_name, deferrable

    @property
    def api(self) -> FakeJobService:
        return FakeJobService.named(self.service)

    def submit_job(self, context: Mapping[str, Any], token: str) -> JobHandle:
        job_id = self.api.submit(token, self.job_name)
        return JobHandle(self.job_system, job_id, url=f"fake://{self.service}/jobs/{job_id}")

    def get_job_status(self, handle: JobHandle) -> JobStatus:
        state = self.api.status(handle.job_id)
        return JobStatus(state, raw=state.value).created(self.api.created_at(handle.job_id))

    def cancel_job(self, handle: JobHandle) -> None:
        self.api.cancel(handle.job_id)

    def submit_is_idempotent(self) -> bool:
        return self.api.idempotent

    def find_job(self, context: Mapping[str, Any], token: str) -> JobHandle | None:
        if self.api.idempotent:
            return None  # a repeated submit with the same token finds the job itself
        job_id = self.api.find(token)
        return (
            None
            if job_id is None
            else JobHandle(self.job_system, job_id, f"fake://{self.service}/jobs/{job_id}")
        )

    def repair_job(self, context: Mapping[str, Any], handle: JobHandle) -> JobHandle:
        self.api.repair(handle.job_id)
        return handle

    def job_trigger(self, context: Mapping[str, Any], handle: JobHandle) -> FakeJobTrigger:
        return FakeJobTrigger(
            self.service,
            handle.job_id,
            self.poll_interval,
            cancel_on_kill=self.cancel_on_kill is not CancelOnKill.NEVER,
        )

    def job_result(self, context: Mapping[str, Any], handle: JobHandle, status: JobStatus) -> Any:
        return {"job_id": handle.job_id, "state": status.state.value}
