"""A small model of Airflow around one resumable task, driving the real ResumableMixin.

:class:`World` is one task instance of one DAG run, the way Airflow sees it (try number,
``max_tries``, retries, the DAG run's ``clear_number`` and ``run_after``, and the state Airflow
reports), a :class:`FakeJobService` that runs the jobs, and the real :class:`FakeJobOperator`,
built afresh for every attempt as a worker would. Each public method is one step: an attempt that
runs (undisturbed, dying at a fault point, evicted, stopped by a person, timed out, frozen as a
zombie...) or something that happens between attempts (a clear, a service outage, an expired job,
a corrupt record...). After every step :meth:`World.check` holds the code to the guarantees of
``docs/concepts.md`` ("The guarantee") and raises :class:`GuaranteeViolated` naming the broken one.

Attempts run synchronously in the calling thread. A disruption happens inside a call to the
service (after its k-th status call, or while a submit's answer is held): the model changes the
task's state in Airflow first, then calls ``on_kill`` as Airflow's SIGTERM handler would, or
raises ``AirflowTaskTimeout`` as Airflow's execution_timeout alarm would. Only the zombie's
successor runs in a second thread, so that the frozen zombie can be thawed in the middle of it;
the two never run at the same time.

Nothing here imports Hypothesis: ``machine.py`` drives a World with random sequences, and
``test_found_interleavings.py`` replays the sequences it found, by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import itertools
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import tenacity
from airflow.exceptions import TaskDeferred
from sqlalchemy.exc import OperationalError

from resumable import follow_up, protocol, stopping, trigger_stop
from resumable._compat import AirflowTaskTimeout
from resumable.errors import InjectedFault, RecordError, ResumableError, StateBackendError
from resumable.job import JobState
from resumable.probe import AirflowTaskStateProbe
from resumable.record import Phase, Record
from resumable.state import MemoryBackend, SqlBackend, StateBackend, TaskScope
from resumable.state.airflow import AirflowStoreBackend
from resumable.testing.fake import FakeJob, FakeJobOperator, FakeJobService, ServiceUnavailable
from resumable.trigger_stop import TRIGGERER_CALLS_ON_KILL

KEY = "resumable.job"
TASK_ID = "job"
POLL_INTERVAL = 0.001
#: Task-instance states in which a newer try takes over (the kill rules' "superseded").
SUPERSEDED = frozenset({"up_for_retry", "queued", "scheduled", "up_for_reschedule", "deferred"})
#: Where an attempt can be disrupted: while a submit's answer is held, or after its k-th status call.
WHERES: tuple[str | int, ...] = ("submit", 1, 2, 3)
FAULT_POINTS = ("before_intent", "after_intent", "after_submit", "after_handle", "while_polling")
CORRUPTIONS = {
    "not_json": "{not json",
    "unknown_version": {"v": 99, "phase": "submitted"},
    "no_handle": {"v": 1, "lineage": 1, "owner": 1, "seq": 1, "phase": "done", "token": "t", "operator": "x"},
}

#: The guarantees, as ``docs/concepts.md`` ("The guarantee") numbers them.
GUARANTEES = {
    0: "an attempt ends with one of the library's own errors, never a crash",
    1: "at most one active job per task instance and lineage, ever",
    2: "no job is cancelled unless its owner timed out or a person stopped, cleared or failed the task",
    3: "a clear of a finished task runs the job again; a retry never does while the job can be used",
    4: "no job is left running with no attempt that will ever look at it",
    5: "success only for a job that succeeded; a cancel request is not an outcome",
    6: "every record written can be read back",
}
_names = itertools.count(1)


class GuaranteeViolated(AssertionError):
    """The code broke one of the guarantees; ``kinds`` names each violation found in the step."""

    def __init__(self, violations: list[Violation]) -> None:
        self.kinds = sorted({v.kind for v in violations})
        super().__init__("\n".join(str(v) for v in violations))


@dataclass(frozen=True)
class Violation:
    kind: str
    guarantee: int
    message: str

    def __str__(self) -> str:
        return (
            f"guarantee {self.guarantee} ({GUARANTEES[self.guarantee]}) broken [{self.kind}]: {self.message}"
        )


class ModelTi:
    """``context["ti"]`` as one attempt sees it: its try number and ``max_tries`` are fixed for its life."""

    def __init__(
        self, dag_id: str, run_id: str, try_number: int, max_tries: int, task: Any, world: World | None = None
    ) -> None:
        self.dag_id, self.run_id, self.task_id, self.map_index = dag_id, run_id, TASK_ID, -1
        self.try_number, self.max_tries, self.task = try_number, max_tries, task
        self.world = world

    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> None:
        """Operators push links here; the model keeps nothing."""

    def get_task_states(self, **query: Any) -> dict[str, dict[str, Any]]:
        """The Execution API's answer (``GET /task-instances/states``): the task instance's state under
        its run_id, or nothing when its DAG run was deleted. The real probe reads it."""
        assert self.world is not None
        state = self.world.ti.state
        if state == "deleted":
            return {}
        return {self.run_id: {TASK_ID: None if state == "none" else state}}


@dataclass
class ModelDagRun:
    dag_id: str
    run_id: str
    run_after: datetime
    clear_number: int
    start_date: datetime


@dataclass
class TaskInstance:
    """What Airflow's metadata database says about the one task instance."""

    retries: int
    try_number: int = 0
    max_tries: int = 0
    state: str = "none"  # "none" = scheduled with no state yet (new, or cleared when finished)
    clear_number: int = 0
    run_after: datetime = datetime(2025, 1, 1, tzinfo=timezone.utc)
    #: When the DAG run started; a clear of the finished run starts it again (real time, as the
    #: records' timestamps are).
    start_date: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    #: How many times the DAG run was deleted and created again under the same run_id.
    generation: int = 0
    #: How many times Airflow gave the task instance a new id while a try ran (a clear of the running
    #: task does, ``prepare_db_for_next_try``): the API server refuses the calls of the try it replaced.
    ti_ids: int = 0

    def __post_init__(self) -> None:
        self.max_tries = self.retries

    @property
    def schedulable(self) -> bool:
        return self.state in ("none", "up_for_retry")

    @property
    def finished(self) -> bool:
        return self.state in ("success", "failed")

    def eligible_to_retry(self) -> bool:
        """Airflow's ``TaskInstance.is_eligible_to_retry``."""
        if self.state == "restarting":
            return True
        return bool(self.retries) and self.try_number <= self.max_tries


@dataclass
class Attempt:
    """One try of the task: its own operator object and context, as a worker process has."""

    try_number: int
    lineage: int
    generation: int
    op: FakeJobOperator
    context: dict[str, Any]
    #: The task instance's id this try runs under (:attr:`TaskInstance.ti_ids` when it started).
    ti_id: int = 0
    #: Set when this attempt's own execution_timeout fired or its wait limit was spent.
    timed_out: bool = False
    wait_limit_spent: bool = False
    #: A stop that may cancel came to this try (a person's, or its own spent time while it owned the job).
    stop_may_cancel: bool = False
    result: Any = None
    error: BaseException | None = None
    #: The deferral this try ended its process with (``TaskDeferred``): its trigger and kwargs.
    deferred: Any = None


@dataclass
class JobFacts:
    generation: int
    lineage: int
    by_try: int | None
    #: The DAG run's clear counter when the job was created: a clear that repeats an old max_tries
    #: (retries lowered) still starts a new lineage.
    clear_number: int = 0


def effective_state(job: FakeJob) -> JobState:
    """What the job is now, as the service would answer at its next status call."""
    if not job.state.is_active:
        return job.state
    if job.cancel_requested and job.cancel_lag_left > 0:
        return JobState.RUNNING  # the cancel has not taken yet
    if job.cancel_requested:
        return JobState.STOPPING if job.stopping_polls_left > 0 else JobState.CANCELLED
    return job.state


def is_running(job: FakeJob) -> bool:
    """Active, and nobody asked the service to stop it."""
    return job.state.is_active and not job.cancel_requested


class ModelTaskStateStore:
    """``context["task_state_store"]`` of one attempt (``attempt=None``: a person's, through the REST
    API). Like Airflow's API server, it refuses the calls of a try that was replaced (a newer try, or
    a re-created DAG run); a new DAG run starts with no values."""

    def __init__(self, world: World, attempt: Attempt | None) -> None:
        self.world, self.attempt = world, attempt

    def _refuse_replaced(self) -> None:
        a, ti = self.attempt, self.world.ti
        if a is not None and (a.generation != ti.generation or a.try_number != ti.try_number):
            raise StateBackendError(f"the API server refuses try {a.try_number}: it was replaced (model)")
        if a is not None and a.ti_id != ti.ti_ids:
            raise StateBackendError(
                f"the API server refuses try {a.try_number}: its task instance has a new id"
            )
        if a is not None and ti.state == "deleted":
            raise StateBackendError(f"the API server has no task instance of try {a.try_number} (model)")

    def get(self, key: str, default: Any = None) -> Any:
        self._refuse_replaced()
        return copy.deepcopy(self.world.values.get(key, default))

    def set(self, key: str, value: Any, retention: Any = None) -> None:
        self._refuse_replaced()
        json.dumps(value)
        self.world.values[key] = copy.deepcopy(value)

    def delete(self, key: str) -> None:
        self._refuse_replaced()
        self.world.values.pop(key, None)


@dataclass
class ModelService(FakeJobService):
    """The fake service, telling the world about every job created and every cancel."""

    world: Any = None

    def _submit(self, token: str, name: str) -> str:
        job_id = super()._submit(token, name)
        if self.world is not None:
            self.world.job_submitted(job_id)
        return job_id

    def find(self, token: str) -> str | None:
        try:
            return super().find(token)
        except ServiceUnavailable:
            if self.world is not None:
                self.world.outage_in_step = True
            raise

    def cancel(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        was_running = job is not None and is_running(job)
        try:
            super().cancel(job_id)
        except ServiceUnavailable:
            if self.world is not None:
                self.world.refused.add(job_id)
                self.world.outage_in_step = True
            raise
        if self.world is not None and was_running:
            self.world.job_cancelled(job_id)


@dataclass
class StateFaults:
    """Failures of the state store armed for the n-th get or put from now."""

    get_in: int = 0
    put_in: int = 0
    put_lost_ack: bool = False

    def fires(self, op: str) -> bool:
        attr = f"{op}_in"
        left = getattr(self, attr)
        if left <= 0:
            return False
        setattr(self, attr, left - 1)
        return left == 1


F = TypeVar("F", bound=Callable[..., Any])


def step(fn: F) -> F:
    """One step of the world: afterwards every armed disruption is disarmed and the guarantees checked."""

    @functools.wraps(fn)
    def wrapper(self: World, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        finally:
            self._end_step()
            self.steps += 1
            self.check()

    return wrapper  # type: ignore[return-value]


class World:
    """One task instance in Airflow, its job service and its state backend; see the module docstring."""

    def __init__(
        self,
        backend: str = "memory",
        *,
        sql_url: str | None = None,
        retries: int = 1,
        cancel_on_kill: str = "user_stop",
        on_prior_failure: str = "resubmit",
        idempotent: bool = True,
        polls: int = 2,
        cancel_polls: int = 0,
        cancel_lag: int = 0,
        deferrable: bool = False,
        ignore: frozenset[str] = frozenset(),
    ) -> None:
        if backend not in ("memory", "sql", "airflow"):
            raise ValueError(f"backend must be memory, sql or airflow, not {backend!r}")
        if backend == "sql" and not sql_url:
            raise ValueError("the sql backend needs sql_url")
        n = next(_names)
        self.backend_name, self.sql_url = backend, (sql_url if backend == "sql" else None)
        self.cancel_on_kill, self.on_prior_failure = cancel_on_kill, on_prior_failure
        self.deferrable = deferrable
        #: The deferred try waiting for its trigger (the try that deferred, with its trigger and kwargs).
        self.deferral: Attempt | None = None
        self._trigger_of: Attempt | None = None
        #: The trigger of a deferred try that a person cleared, until Airflow stops it.
        self.cleared_trigger: Attempt | None = None
        self.ignore = ignore
        self.dag_id, self.run_id = f"model_{os.getpid()}_{n}", "manual__2025-01-01"
        self.scope = TaskScope(self.dag_id, self.run_id, TASK_ID)
        self.ti = TaskInstance(retries=retries)
        self.svc = self._make_service(
            name=f"model-{os.getpid()}-{n}",
            idempotent=idempotent,
            polls=polls,
            cancel_polls=cancel_polls,
            cancel_lag=cancel_lag,
        )
        self.svc.world = self
        #: The kill rules' question "what is the task instance's state in Airflow now": the real probe,
        #: reading the model's answer to the Execution API's call (``ModelTi.get_task_states``).
        self.probe = AirflowTaskStateProbe()
        self.facts: dict[str, JobFacts] = {}
        #: Jobs whose success must not be reported again: finished before a clear or a re-created run.
        self.stale: set[str] = set()
        #: What forgotten (expired, deleted) jobs were when the service forgot them.
        self.forgotten: dict[str, JobState] = {}
        #: Jobs the service refused to cancel (an outage longer than the code's retries): kept, not orphaned.
        self.refused: set[str] = set()
        #: The service refused a find or cancel call in this step (an outage longer than the retries).
        self.outage_in_step = False
        #: Jobs whose cancel was rightly asked for: a later try may carry it out.
        self.stop_asked: set[str] = set()
        #: Tokens a person stopped while their submit's answer was held: every job of such a token may be
        #: cancelled, also one that a later repeated submit with the token creates (a stop means no job runs).
        self.stopped_tokens: set[str] = set()
        #: Jobs made before a person deleted the record, or cleared the running task with
        #: cancel_on_kill='never': reusing them and running the job again are both the person's choice.
        self.either_ok: set[str] = set()
        self.record_corrupt = False
        #: A person's stop (or a final execution_timeout) happened in this step: no job may be left running.
        self.stop_expected: str | None = None
        self.violations: list[Violation] = []
        self.steps = 0
        self._local = threading.local()
        self._faults = StateFaults()
        self._saved_env: dict[str, str | None] = {}
        self._patches: list[tuple[Any, str, Any]] = []
        #: Follow-ups of known jobs still to run (after the step: their process outlives the task).
        self._follow_ups: list[Callable[[], Any]] = []
        self._open()

    # ---- set-up and tear-down ----------------------------------------------------------------

    def _open(self) -> None:
        env = {"AIRFLOW__RESUMABLE__STATE_BACKEND": self.backend_name}
        if self.sql_url:
            env["AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN"] = self.sql_url
        for name, value in env.items():
            self._saved_env[name] = os.environ.get(name)
            os.environ[name] = value
        backends: dict[str, type[StateBackend]] = {
            "sql": SqlBackend,
            "memory": MemoryBackend,
            "airflow": AirflowStoreBackend,
        }
        backend_cls = backends[self.backend_name]
        #: The airflow backend's task state store: the values of the task instance, by key.
        self.values: dict[str, Any] = {}
        self._store: StateBackend
        if self.backend_name == "airflow":
            self._store = AirflowStoreBackend(ModelTaskStateStore(self, None), self.scope)
        else:
            self._store = SqlBackend(self.sql_url) if self.sql_url else MemoryBackend()
        self._get: Callable[..., Any] = backend_cls.get
        self._put: Callable[..., Any] = backend_cls.put
        world = self

        def get(backend: Any, scope: TaskScope, key: str) -> Any:
            return world._flaky_get(backend, scope, key)

        def put(backend: Any, scope: TaskScope, key: str, value: Any, expected: int | None) -> int:
            return world._flaky_put(backend, scope, key, value, expected)

        self._patch(backend_cls, "get", get)
        self._patch(backend_cls, "put", put)
        # The follow-up of a stop during a submit is a process of its own in Airflow (it outlives the
        # killed task); here it runs at once, in this process, against the world's service.
        self._patch(follow_up, "start", self._follow_up)
        # Status calls retried on transient errors back off with up to a second of jitter each;
        # the model skips the sleeps (the retries themselves still happen).
        # So does a stopping attempt's pause between reads of a record it is refused (Airflow's store
        # refuses every replaced try: 0.4 s a stop, most of an airflow-backend run's time).
        self._patch(stopping, "OWNER_READ_PAUSE", 0.0)
        # The world's steps follow each other within milliseconds, on one clock: a job a cleared lineage
        # created is created well before the new lineage's intent in Airflow (the try died, the task
        # failed, a person cleared it), here a moment before; and there is no skew to allow for.
        self._patch(protocol, "CLOCK_SKEW_SECONDS", 0.0)
        # A trigger asks a stop the service did not take again after a pause (seconds); here at once.
        self._patch(trigger_stop, "STOP_RETRY_FIRST_WAIT", 0.0)
        # A trigger asks the Execution API for its task instance's state: the model answers.
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        def task_states(**query: Any) -> dict[str, dict[str, Any]]:
            return ModelTi(self.dag_id, self.run_id, 0, 0, None, self).get_task_states(**query)

        self._patch(RuntimeTaskInstance, "get_task_states", staticmethod(task_states))
        for module in [m for name, m in sys.modules.items() if name.startswith("resumable") and m]:
            if getattr(module, "wait_exponential_jitter", None) is tenacity.wait_exponential_jitter:
                self._patch(module, "wait_exponential_jitter", lambda **_: tenacity.wait_none())

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        self._patches.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, value)

    def close(self) -> None:
        """Undo the patches and the environment, forget the service."""
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)
        self._patches.clear()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._clear_fault_env()
        FakeJobService._registry.pop(self.svc.name, None)

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _flaky_get(self, backend: Any, scope: TaskScope, key: str) -> Any:
        if scope == self.scope and self._faults.fires("get"):
            raise self._store_error("read")
        return self._get(backend, scope, key)

    def _flaky_put(self, backend: Any, scope: TaskScope, key: str, value: Any, expected: int | None) -> int:
        if scope == self.scope and key == KEY:
            self._check_written(value)
        if scope == self.scope and self._faults.fires("put"):
            if not self._faults.put_lost_ack:
                raise self._store_error("write")
            self._put(backend, scope, key, value, expected)
            raise self._store_error("write (committed, answer lost)")
        return self._put(backend, scope, key, value, expected)

    def _check_written(self, value: Any) -> None:
        """Every record the code writes must be readable by the next attempt."""
        try:
            Record.from_json(value, where=KEY, clear_hint="-")
        except RecordError as error:
            actor = self._actor()
            who = f"try {actor.try_number}" if actor else "the code"
            self._violation("unreadable-record", 6, f"{who} wrote a record that cannot be read back: {error}")

    def _store_error(self, what: str) -> Exception:
        if self.backend_name == "sql":
            return OperationalError(f"{what} (model)", None, ConnectionError("server closed the connection"))
        return StateBackendError(f"the state store failed to {what} (model)")

    # ---- who is acting -------------------------------------------------------------------------

    @contextmanager
    def _acting(self, attempt: Attempt) -> Iterator[None]:
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append(attempt)
        try:
            yield
        finally:
            stack.pop()

    def _actor(self) -> Attempt | None:
        stack = self._local.__dict__.get("stack") or []
        return stack[-1] if stack else self._trigger_of

    def _trigger_on_kill(self, deferred: Attempt) -> None:
        """Airflow's triggerer stops the trigger: on 3.3 it calls the trigger's ``on_kill`` (the model
        does so also when the trigger moves, which a trigger must survive all the same); before 3.3 it
        cancels the trigger's task while it watches the job. What the trigger then does (in threads of
        its own) is the deferred try's doing."""
        trigger = deferred.deferred.trigger

        async def watch() -> None:
            async for _ in trigger.run():
                return

        async def cancel() -> None:
            task = asyncio.ensure_future(watch())
            await asyncio.sleep(0)  # it starts watching the job
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self._trigger_of = deferred
        try:
            asyncio.run(trigger.on_kill() if TRIGGERER_CALLS_ON_KILL else cancel())
        except ServiceUnavailable:
            pass  # the triggerer logs it; the service refused the cancel (the model counts it as refused)
        finally:
            self._trigger_of = None

    # ---- attempts --------------------------------------------------------------------------------

    def _start_attempt(self, *, resume: bool = False) -> Attempt:
        """Airflow starts the next try: a new process, a new operator object, try_number + 1
        (``resume``: the same try again, after its trigger fired)."""
        ti = self.ti
        ti.try_number += 0 if resume else 1
        ti.state = "running"
        op = self._make_operator(ti)
        op.task_state_probe = self.probe
        store = ModelTaskStateStore(self, None)
        context = {
            "ti": ModelTi(self.dag_id, self.run_id, ti.try_number, ti.max_tries, op, self),
            "dag_run": ModelDagRun(self.dag_id, self.run_id, ti.run_after, ti.clear_number, ti.start_date),
            "run_id": self.run_id,
            **({"task_state_store": store} if self.backend_name == "airflow" else {}),
        }
        store.attempt = Attempt(ti.try_number, ti.max_tries, ti.generation, op, context, ti_id=ti.ti_ids)
        return store.attempt

    def _expected_error(self, error: BaseException) -> bool:
        """Whether an attempt may end with ``error``: one of the library's own errors (the fake's
        outage is one), or a lost connection to the state store."""
        return isinstance(error, (ResumableError, ConnectionError, OperationalError))

    def _make_service(self, **options: Any) -> ModelService:
        """The job service of this world (a subclass may model another system behind the same API)."""
        return ModelService(**options)

    def _make_operator(self, ti: TaskInstance) -> Any:
        """The operator object of a new attempt, built afresh as a worker does."""
        return FakeJobOperator(
            task_id=TASK_ID,
            service=self.svc.name,
            poll_interval=POLL_INTERVAL,
            cancel_on_kill=self.cancel_on_kill,
            on_prior_failure=self.on_prior_failure,
            retries=ti.retries,
            deferrable=self.deferrable,
        )

    def _run(self, a: Attempt, call: Callable[[], Any] | None = None) -> None:
        """``execute`` as Airflow's task runner calls it (or ``call``: ``execute_complete`` when a
        trigger fired; on execution_timeout it calls on_kill), then Airflow records how the try ended."""
        with self._acting(a):
            try:
                a.result = call() if call is not None else a.op.execute(a.context)
            except TaskDeferred as deferred:
                a.deferred = deferred
            except AirflowTaskTimeout as timeout:
                a.error = timeout
                self._on_kill(a)
            except Exception as error:  # noqa: BLE001 - any error fails the try, as in Airflow
                a.error = error
                if not self._expected_error(error):
                    self._violation(
                        "unexpected-error",
                        0,
                        f"try {a.try_number} crashed with {type(error).__name__}: {error}",
                    )
        if a.result is not None:
            self._check_success(a)
        self._attempt_ended(a)

    def _follow_up(self, op: Any, attempt: Any, token: str | None, handle: Any = None) -> int:
        if handle is not None:
            # It looks at the known job seconds later, once the killed task's own cancel had its chance:
            # at the end of the step.
            self._follow_ups.append(
                lambda: follow_up.follow(
                    op, attempt, None, 60.0, handle=handle, sleep=lambda _: None, max_rounds=12
                )
            )
            return 0
        follow_up.follow(op, attempt, token, budget=60.0, sleep=lambda _: None, max_rounds=12)
        return 0

    def _on_kill(self, a: Attempt) -> None:
        with self._acting(a):
            try:
                a.op.on_kill()
            except Exception as error:  # noqa: BLE001 - Airflow logs it; the try ends anyway
                a.error = a.error or error

    def _attempt_ended(self, a: Attempt) -> None:
        ti = self.ti
        if a.stop_may_cancel:
            self.stop_asked |= {j.job_id for j in self.running_jobs()}
        if a.generation != ti.generation or a.try_number != ti.try_number:
            return  # a replaced try: Airflow no longer listens to it
        if ti.state == "running" and a.deferred is not None:
            ti.state, self.deferral = "deferred", a
            a.deferred.trigger.task_instance = a.context["ti"]  # as the triggerer gives it
            return
        if ti.state == "running":
            if a.error is None:
                ti.state = "success"
            else:
                ti.state = "up_for_retry" if ti.eligible_to_retry() else "failed"
        elif ti.state == "restarting":
            ti.state = "up_for_retry"
        if a.timed_out and ti.state == "failed" and self.cancel_on_kill != "never":
            self.stop_expected = f"try {a.try_number} ended by its execution_timeout with no retry left"

    def _at(self, where: str | int, action: Callable[[], None]) -> None:
        """Run ``action`` inside the service: while the next submit's answer is held, or after the
        ``where``-th status call from now."""
        if where == "submit":
            self.svc.when_submit_called(self.svc.calls["submit"] + 1, action)
        else:
            self.svc.when_status_called(self.svc.calls["status"] + int(where), action)

    def _end_step(self) -> None:
        self.svc.clear_hooks()
        self._clear_fault_env()
        follow_ups, self._follow_ups = self._follow_ups, []
        for run in follow_ups:
            run()

    @staticmethod
    def _clear_fault_env() -> None:
        for name in ("RESUMABLE_FAULT_POINT", "RESUMABLE_FAULT_MODE", "RESUMABLE_FAULT_TRY"):
            os.environ.pop(name, None)

    # ---- the steps -------------------------------------------------------------------------------

    @step
    def attempt_runs(self) -> None:
        """The next try runs undisturbed."""
        self._run(self._start_attempt())

    @step
    def attempt_dies_at(self, point: str) -> None:
        """The worker dies at a fault point (no on_kill, no cleanup)."""
        a = self._start_attempt()
        os.environ.update(
            RESUMABLE_FAULT_POINT=point, RESUMABLE_FAULT_MODE="raise", RESUMABLE_FAULT_TRY=str(a.try_number)
        )
        self._run(a)

    @step
    def evicted(self, where: str | int) -> None:
        """SIGTERM from an eviction or a worker restart: the task is still running in Airflow."""
        a = self._start_attempt()
        self._at(where, lambda: self._on_kill(a))
        self._run(a)

    @step
    def person_stops(self, action: str, where: str | int) -> None:
        """A person marks the running task failed or success, or clears it; Airflow then sends SIGTERM."""
        a = self._start_attempt()

        self._at(where, lambda: self._stopped(a, action))
        self._run(a)

    def _stopped(self, a: Attempt, action: str) -> None:
        """A person's ``action`` on the running try ``a`` (or its eviction), then Airflow's SIGTERM."""
        # A clear before ``execute`` began, on Airflow's store: the try is refused its record from the
        # start (its task instance has a new id), so it cannot know a job an earlier try left running.
        # The next try finds that job and reattaches, as after any clear that found a job running (the
        # decision table): the clear does not rerun it, and nothing is left unlooked at.
        out_of_reach = action == "clear" and self.backend_name == "airflow" and a.op._attempt is None
        if action == "clear":
            self._clear_running(out_of_reach=out_of_reach)
        elif action != "evicted":
            self.ti.state = {"mark_failed": "failed", "mark_success": "success"}[action]
        in_flight = a.op._stopping.submitting
        if action != "evicted":
            a.stop_may_cancel = self._may_not_cancel(a) is None
            if in_flight and a.stop_may_cancel and self.cancel_on_kill != "never":
                self.stopped_tokens.add(in_flight)
            if self.cancel_on_kill != "never" and not out_of_reach:
                self.stop_expected = f"a person's {action} of try {a.try_number}"
        self._on_kill(a)

    @step
    def stopped_while_the_submit_answer_is_held(self, action: str) -> None:
        """A slow control plane holds the submit's answer past Airflow's kill grace: a person marks the
        task failed or success or clears it, or the worker is evicted; Airflow sends SIGTERM, then
        SIGKILLs the process before the answer (the job's id) arrives."""
        a = self._start_attempt()

        def stop_then_kill() -> None:
            self._stopped(a, action)
            raise InjectedFault("SIGKILL before the submit's answer arrived (model)")

        self._at("submit", stop_then_kill)
        self._run(a)

    @step
    def reset_to_no_state_while_running(self, where: str | int, seen: str = "none") -> None:
        """The scheduler resets the running task instance to no state (a restarted scheduler adopting
        what an executor it lost was running) while the old supervisor runs on: the task instance gets
        a new id, so the old try's calls are refused. The supervisor's next heartbeat is refused and it
        stops its task (SIGTERM, ``on_kill``), which finds the task instance in state ``seen``: no
        state, or already ``queued`` for the next try (measured on 3.3). No person asked: the job is
        kept for the next try."""
        a = self._start_attempt()

        def reset() -> None:
            self.ti.state = seen
            self.ti.ti_ids += 1
            self._on_kill(a)
            self.ti.state = "none"

        self._at(where, reset)
        self._run(a)

    @step
    def stopped_before_execute(self, action: str) -> None:
        """A person's mark failed, mark success or clear, or an eviction, reaches the try's process
        before ``execute`` begins (Airflow's SIGTERM handler is installed before the templates are
        rendered, and on 3.3 it calls ``on_kill`` and lets the task go on); then ``execute`` runs."""
        a = self._start_attempt()
        self._stopped(a, action)
        self._run(a)

    # ---- a deferred task: its trigger, the triggerer, and people -------------------------------------

    def _resume(self, event: Any, *, wait_limit_spent: bool = False) -> None:
        """The trigger fired: Airflow runs ``execute_complete`` for the deferred try, in a new process."""
        deferred, self.deferral = self.deferral, None
        assert deferred is not None and deferred.deferred is not None
        a = self._start_attempt(resume=True)
        a.wait_limit_spent = wait_limit_spent
        kwargs = deferred.deferred.kwargs or {}
        self._run(a, lambda: a.op.execute_complete(a.context, event=event, **kwargs))

    @step
    def trigger_fires(self, event: str) -> None:
        """The deferred try's trigger ends with an event: the job's ``outcome`` (it watched the job to
        its end), an ``error`` (a status call failed past the client's retries: the provider's triggers
        send ``{"status": "error"}`` or ``"failure"`` with the error's message), or ``max_attempts``
        (its wait reached its limit: ``Waiter ... failed: Max attempts reached``). Only the last may
        cancel a job that still runs."""
        assert self.deferral is not None
        job_id = self.deferral.deferred.trigger.job_id
        if event == "outcome":
            with self._acting(self.deferral):
                state = JobState.RUNNING
                for _ in range(50):  # the trigger polls until the job has ended
                    try:
                        state = self.svc.status(job_id)
                    except ServiceUnavailable:
                        continue
                    if not state.is_active:
                        break
            self._resume({"job_id": job_id, "state": state.value})
        elif event == "error":
            message = "An error occurred (InternalServerError) when calling the GetJobRun operation"
            self._resume({"status": "error", "message": message})
        else:
            message = "Waiter job_run_complete failed: Max attempts reached"
            self._resume({"status": "failure", "message": message}, wait_limit_spent=True)

    @step
    def trigger_moves(self) -> None:
        """The triggerer that runs the trigger stops (a restart, a lost heartbeat): Airflow cancels the
        trigger (on 3.3 through its ``on_kill``) and another triggerer runs it again. The task is still
        deferred: nobody asked to stop the job."""
        assert self.deferral is not None
        self._trigger_on_kill(self.deferral)

    @step
    def cleared_trigger_stopped(self) -> None:
        """Airflow stops the trigger of a deferred task that a person cleared, once no task instance
        waits for it: before the next try ran, while it runs, once it deferred again or after it ended
        (on 3.3 through the trigger's ``on_kill``; measured: sometimes while the task has no state or
        runs, sometimes once it is deferred again)."""
        cleared, self.cleared_trigger = self.cleared_trigger, None
        assert cleared is not None
        self._trigger_on_kill(cleared)

    @step
    def person_stops_deferred(self, action: str) -> None:
        """A person marks the deferred task failed or success (Airflow 3.3's triggerer then calls the
        trigger's ``on_kill``), or clears it (Airflow resets the task instance, its ``next_method`` and
        ``next_kwargs``, but not its trigger: the next try starts as ``execute``; the trigger is stopped
        later, :meth:`cleared_trigger_stopped`)."""
        deferred = self.deferral
        assert deferred is not None
        if action == "clear":
            self.deferral, self.cleared_trigger = None, deferred
            ti = self.ti
            ti.max_tries = ti.try_number + ti.retries
            ti.state, ti.clear_number, ti.ti_ids = "none", ti.clear_number + 1, ti.ti_ids + 1
            # The person asked for a rerun: the trigger may stop the job, whenever Airflow stops it.
            self.stop_asked |= {j.job_id for j in self.running_jobs()}
            return
        self.deferral = None
        self.ti.state = {"mark_failed": "failed", "mark_success": "success"}[action]
        deferred.stop_may_cancel = True
        if self.cancel_on_kill != "never":
            self.stop_expected = f"a person's {action} of deferred try {deferred.try_number}"
        self._trigger_on_kill(deferred)
        self.stop_asked |= {j.job_id for j in self.running_jobs()}

    @step
    def execution_timeout(self, where: str | int) -> None:
        """The try's execution_timeout fires: Airflow raises AirflowTaskTimeout in it, then calls on_kill."""
        a = self._start_attempt()

        def alarm() -> None:
            a.timed_out = a.stop_may_cancel = True
            raise AirflowTaskTimeout("execution_timeout (model)")

        self._at(where, alarm)
        self._run(a)

    @step
    def wait_limit_spent(self) -> None:
        """The operator's wait limit is spent by the time the try starts polling."""
        a = self._start_attempt()
        a.wait_limit_spent = a.stop_may_cancel = True
        a.op.wait_limit = lambda: -1.0  # type: ignore[method-assign]
        self._run(a)

    @step
    def zombie(self, freeze_at: int, successor: str, thaw: str) -> None:
        """A try freezes after its ``freeze_at``-th status call (a stalled VM); Airflow stops hearing
        from it and fails the try. ``successor``: ``none``, or the next try runs and ``finishes``,
        or is paused ``at_observe`` (its first status call, before it takes the job over) or
        ``while_polling`` (its second) while the zombie thaws; with no retry left, a person clears
        the failed task first. ``thaw``: the zombie is put down
        (``sigterm``), its own execution_timeout fires (``timeout``), or it just ``resumes``."""
        a = self._start_attempt()
        runner: Paused | None = None

        def frozen() -> None:
            nonlocal runner
            self.ti.state = "up_for_retry" if self.ti.eligible_to_retry() else "failed"
            if successor != "none" and self.ti.state == "failed":
                self._clear_finished()  # no retry left: a person clears the failed task
            if successor != "none":
                pause_at = {"finishes": None, "at_observe": 1, "while_polling": 2}[successor]
                runner = Paused(self, self._start_attempt(), pause_at)
            if thaw == "timeout":
                a.timed_out = True
                raise AirflowTaskTimeout("execution_timeout of the zombie (model)")
            if thaw == "sigterm":
                self._on_kill(a)

        self._at(freeze_at, frozen)
        self._run(a)
        if runner is not None:
            runner.finish()

    @step
    def service_errors(self, count: int) -> None:
        """The service answers the next ``count`` status, find and cancel calls with 503."""
        self.svc.fail_next_calls(count)

    @step
    def state_store_fails(self, op: str, nth: int, lost_ack: bool = False) -> None:
        """The ``nth`` state ``get`` or ``put`` from now fails; ``lost_ack``: a put commits, then the
        answer is lost."""
        setattr(self._faults, f"{op}_in", nth)
        if op == "put":
            self._faults.put_lost_ack = lost_ack

    @step
    def next_job_fails(self) -> None:
        """The next job the service creates ends FAILED."""
        self.svc.outcomes.append(JobState.FAILED)

    @step
    def person_clears_finished_task(self) -> None:
        """A person clears the failed or succeeded task: a new lineage (max_tries = try + retries)."""
        self._clear_finished()

    def _clear_finished(self) -> None:
        ti = self.ti
        assert ti.finished, ti.state
        self.stale |= {j for j in self.svc.created if self._finished(j)}
        ti.max_tries = ti.try_number + ti.retries
        ti.state = "none"
        ti.clear_number += 1
        ti.start_date = datetime.now(timezone.utc)  # the finished DAG run is queued and starts again

    def _clear_running(self, out_of_reach: bool = False) -> None:
        """A person clears the running task: it is told to stop and the next try runs it again. Airflow
        gives the task instance a new id at once: the cleared try's store calls are refused.
        ``out_of_reach``: the cleared try never read the record, so the jobs may be reused or rerun."""
        self.ti.state = "restarting"
        self.ti.ti_ids += 1
        self.ti.clear_number += 1
        if self.cancel_on_kill != "never" and not out_of_reach:
            self.stale |= set(self.svc.created)
        else:
            self.either_ok |= set(self.svc.created)

    @step
    def retries_changed(self, retries: int) -> None:
        """A new version of the DAG changes the task's retries."""
        self.ti.retries = retries

    @step
    def dag_run_recreated(self, same_run_after: bool = False, record_kept: bool = True) -> None:
        """The DAG run is deleted and triggered again with the same run_id (a new run_after), or
        backfilled (``same_run_after``: only its start date tells it from the deleted one).
        ``record_kept=False``: the record went with the run (Airflow's task state store does that;
        the sql backend's retention purge too)."""
        assert self.ti.finished and not self.running_jobs(), "only a finished run with no running job"
        if not record_kept or self.backend_name == "airflow":  # Airflow's store deletes it with the run
            self._store.delete(self.scope, KEY)
            self.record_corrupt = False
        self.stale |= set(self.svc.created)
        old = self.ti
        run_after = old.run_after if same_run_after else old.run_after + timedelta(days=1)
        self.ti = TaskInstance(retries=old.retries, run_after=run_after, generation=old.generation + 1)

    @step
    def dag_run_deleted_while_running(self, where: str | int) -> None:
        """A person marks the DAG run failed and deletes it while a try runs (Airflow deletes only a
        queued or ended DAG run): the task instance goes with it (on the airflow backend its records
        too), the supervisor's heartbeat is refused and Airflow stops the try, whose questions about
        its task instance get no answer naming it. Later the run_id is triggered again."""
        a = self._start_attempt()

        def delete() -> None:
            self.ti.state = "deleted"
            if self.backend_name == "airflow":  # Airflow's store deletes the records with the run
                self.values.clear()
                self.record_corrupt = False
            self.stale |= set(self.svc.created)
            a.stop_may_cancel = True
            if self.cancel_on_kill != "never":
                self.stop_expected = f"a person deleted the DAG run while try {a.try_number} ran"
            self._on_kill(a)

        self._at(where, delete)
        self._run(a)
        if self.ti.state == "deleted":
            old = self.ti
            self.ti = TaskInstance(
                retries=old.retries,
                run_after=old.run_after + timedelta(days=1),
                generation=old.generation + 1,
            )

    @step
    def job_expires(self) -> None:
        """The service forgets the newest job it still knows (expired, or deleted by a person)."""
        job_id = (
            self.svc.created[-1]
            if self.svc.created[-1] in self.svc.jobs
            else max(self.svc.jobs, key=self.svc.created.index)  # the newest (Glue's run ids are not numbers)
        )
        self.forgotten[job_id] = effective_state(self.svc.jobs[job_id])
        self.svc.forget(job_id)

    @step
    def record_corrupted(self, kind: str) -> None:
        """The record is damaged (a bad restore, a hand edit, another library version)."""
        found = self._get(self._store, self.scope, KEY)
        self._put(self._store, self.scope, KEY, CORRUPTIONS[kind], found.version if found else None)
        self.record_corrupt = True

    @step
    def person_deletes_corrupt_record(self) -> None:
        """A person follows the error's advice: looks at the job (cancels it if it runs), then deletes
        the record."""
        for job in self.running_jobs():
            while True:  # a person tries again until the service answers
                try:
                    self.svc.cancel(job.job_id)
                    break
                except ServiceUnavailable:
                    continue
        self._store.delete(self.scope, KEY)
        self.record_corrupt = False
        # The record was the task's memory of its jobs: deleting it is a person's choice to start
        # over, so a job that finished before may run again (never beside a running one).
        self.stale |= set(self.svc.created)
        # "Deleting the record makes the next attempt submit a new job": the person's choice.
        self.either_ok |= set(self.svc.created)

    # ---- what the world knows -------------------------------------------------------------------

    @property
    def may_corrupt(self) -> bool:
        """Whether a damaged record can be there: Airflow's store holds nothing a try did not write
        (a new DAG run starts empty), so on it the first try of a run has nothing to read."""
        return self.backend_name != "airflow" or self.ti.try_number >= 1

    @property
    def has_jobs(self) -> bool:
        return bool(self.svc.jobs)

    def running_jobs(self) -> list[FakeJob]:
        return [
            j
            for j in self.svc.jobs.values()
            if is_running(j) and self.facts[j.job_id].generation == self.ti.generation
        ]

    def _finished(self, job_id: str) -> bool:
        job = self.svc.jobs.get(job_id)
        return job is None or effective_state(job).is_terminal

    def record(self) -> Record | str | None:
        """The record as stored now: a Record, ``"unreadable: ..."``, or None."""
        found = self._get(self._store, self.scope, KEY)
        if found is None:
            return None
        try:
            return Record.from_json(found.value, where=KEY, clear_hint="-")
        except RecordError as error:
            return f"unreadable: {error}"

    # ---- what happens inside the service ---------------------------------------------------------

    def job_submitted(self, job_id: str) -> None:
        """A submit call reached the service: check guarantees 1 and 3 the moment a job is created."""
        if job_id in self.facts:
            return  # a repeated submit with a known token: the service handed back its job
        actor = self._actor()
        lineage = actor.lineage if actor else self.ti.max_tries
        generation = self.ti.generation
        self.facts[job_id] = JobFacts(
            generation, lineage, actor.try_number if actor else None, self.ti.clear_number
        )
        who = f"try {actor.try_number} (lineage {lineage})" if actor else "someone"
        if self.record_corrupt:
            self._violation(
                "submit-on-unreadable-record", 1, f"{who} submitted job {job_id} past an unreadable record"
            )
        for other_id, other in self.svc.jobs.items():
            facts = self.facts[other_id]
            if other_id == job_id or facts.generation != generation or other_id in self.either_ok:
                continue
            state = effective_state(other)
            if is_running(other):
                self._violation(
                    "second-job",
                    1,
                    f"{who} submitted job {job_id} while job {other_id} (lineage {facts.lineage}) "
                    f"was still {state.value}",
                )
            elif state.is_active and facts.lineage == lineage:
                self._violation(
                    "second-job-while-stopping",
                    1,
                    f"{who} submitted job {job_id} while job {other_id} of the same lineage was still "
                    f"{state.value} (cancel requested, not stopped yet)",
                )
            elif (
                state is JobState.SUCCEEDED
                and facts.lineage == lineage
                and facts.clear_number == self.ti.clear_number  # a clear since then means rerun
                and other_id not in self.stale
                and other.token not in self.stopped_tokens  # a person stopped its token: not to be used
            ):
                self._violation(
                    "rerun-of-usable-job",
                    3,
                    f"{who} submitted job {job_id} although job {other_id} of the same lineage succeeded "
                    "and no one cleared the task",
                )

    def job_cancelled(self, job_id: str) -> None:
        """A running job was cancelled: check guarantee 2 against who did it and why."""
        actor = self._actor()
        if actor is None or job_id in self.stop_asked:
            return  # a person did it by hand, or a try carries out a cancel rightly asked for earlier
        job = self.svc.jobs.get(job_id)
        if job is not None and job.token in self.stopped_tokens:
            return  # a job of a token a person stopped before its id was known
        why_not = self._may_not_cancel(actor)
        if why_not:
            self._violation(
                "cancel-not-allowed", 2, f"try {actor.try_number} cancelled job {job_id}: {why_not}"
            )

    def _may_not_cancel(self, a: Attempt) -> str | None:
        ti = self.ti
        if a.generation != ti.generation or ti.try_number > a.try_number:
            if a.generation == ti.generation and ti.state in ("failed", "success") and self._still_owns(a):
                # The task ended for good and no later try ever took the job over: the replaced try
                # is the only one that can stop it (guarantee 4), as a person or a final failure asks.
                return None
            return f"try {ti.try_number} replaced it (the task is {ti.state} in Airflow)"
        if ti.state == "deferred":
            return "the task is still deferred in Airflow (its trigger moved or restarted): nobody asked"
        if ti.state in SUPERSEDED:
            return f"it is a replaced try: the task is {ti.state} in Airflow and a retry takes over"
        if a.timed_out or a.wait_limit_spent or self.cancel_on_kill == "always":
            return None
        if ti.state == "running":
            return "the task is still running in Airflow and this try's time was not spent: nobody asked"
        if ti.state == "none":
            return "the task has no state in Airflow (reset for a new try, or cleared after it had failed)"
        return None  # failed, success, restarting: a person (or a final failure) stopped the task

    def _still_owns(self, a: Attempt) -> bool:
        """Whether the stored record still names ``a``'s try as the owner of its job."""
        found = self._get(self._store, self.scope, KEY)
        value = found.value if found is not None else None
        return isinstance(value, dict) and value.get("owner") == a.try_number

    def _check_success(self, a: Attempt) -> None:
        job_id = str(a.result["job_id"])
        job = self.svc.jobs.get(job_id)
        state = effective_state(job) if job is not None else self.forgotten.get(job_id)
        if state is not JobState.SUCCEEDED:
            self._violation(
                "success-of-unsucceeded-job",
                5,
                f"try {a.try_number} reported success for job {job_id}, which is {state}",
            )
        accepted = a.generation == self.ti.generation and a.try_number == self.ti.try_number
        if job_id in self.stale and accepted and self.ti.state == "running":
            self._violation(
                "clear-did-not-rerun",
                3,
                f"try {a.try_number} (lineage {a.lineage}) finished with job {job_id}, which had "
                "finished before the task was cleared or its DAG run re-created",
            )

    # ---- the guarantees after every step -------------------------------------------------------

    def check(self) -> None:
        """Hold the code to the guarantees now; raise :class:`GuaranteeViolated` if any is broken."""
        record = self.record()
        self._check_running_jobs(record)
        self._check_record(record)
        self.stop_expected, self.outage_in_step = None, False
        found, self.violations = self.violations, []
        if found:
            raise GuaranteeViolated(found)

    def _check_running_jobs(self, record: Record | str | None) -> None:
        if self.cancel_on_kill == "never":
            return  # the author said so: kept jobs are the author's to reconcile
        for job in self.running_jobs():
            if job.job_id in self.refused:
                continue  # the service refused the cancel: out of the code's hands
            # A record that cannot be read (``str``) leaves no job the code could stop: the attempt's
            # error names the record, and a person looks at the job (as for an orphan below).
            if self.stop_expected and not self.outage_in_step and not isinstance(record, str):
                self._violation(
                    "stop-not-applied", 4, f"job {job.job_id} still runs after {self.stop_expected}"
                )
            if isinstance(record, Record) and record.phase is not Phase.DONE:
                if record.handle is not None and record.handle.job_id == job.job_id:
                    continue
                if record.phase is Phase.SUBMITTING and record.token == job.token:
                    continue
            if isinstance(record, str):
                continue  # the attempt's error names the record; a person looks at the job
            self._violation(
                "orphan",
                4,
                f"job {job.job_id} is running and no attempt will look at it: the record "
                + (
                    "is gone"
                    if record is None
                    else f"is {record.phase.value} with job {record.handle.job_id if record.handle else '-'}"
                ),
            )

    def _check_record(self, record: Record | str | None) -> None:
        if isinstance(record, str):
            if not self.record_corrupt:
                self._violation("unreadable-record", 6, f"the record written by the code is {record}")
            return
        if record is None:
            return
        if self.sql_url:
            from resumable.records import SqlSource

            try:
                [e.summary() for e in SqlSource(self.sql_url).entries(self.dag_id, self.run_id, TASK_ID, -1)]
            except Exception as error:  # noqa: BLE001 - any failure means `resumable state` cannot read it
                self._violation("unreadable-record", 6, f"`resumable state` cannot read the record: {error}")
        if record.phase is Phase.DONE and record.last_status is not None and record.handle is not None:
            job = self.svc.jobs.get(record.handle.job_id)
            if job is None:
                return
            recorded, actual = record.last_status.state, effective_state(job)
            if recorded is not actual:
                self._violation(
                    "outcome-not-the-jobs",
                    5,
                    f"the record says job {job.job_id} ended {recorded.value}, but the job is {actual.value}",
                )

    def _violation(self, kind: str, guarantee: int, message: str) -> None:
        if kind not in self.ignore:
            self.violations.append(Violation(kind, guarantee, message))


class Paused:
    """Runs a try in a second thread until its ``pause_at``-th status call (or to its end) and holds it
    there; :meth:`finish` lets it go on and waits for it. Only one of the two threads runs at a time."""

    def __init__(self, world: World, attempt: Attempt, pause_at: int | None) -> None:
        self._paused, self._go = threading.Event(), threading.Event()
        if pause_at is not None:
            world._at(pause_at, self._pause)
        self._thread = threading.Thread(target=world._run, args=(attempt,), name="successor", daemon=True)
        self._thread.start()
        while not self._paused.wait(0.002) and self._thread.is_alive():
            pass

    def _pause(self) -> None:
        if threading.current_thread() is not self._thread:
            return  # the successor ended before this call; the zombie made it
        self._paused.set()
        self._go.wait()

    def finish(self) -> None:
        self._go.set()
        self._thread.join(timeout=120)
        if self._thread.is_alive():
            raise RuntimeError("the successor try did not finish")
