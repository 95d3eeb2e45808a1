"""A loopback Databricks Jobs API 2.2 emulator: a real HTTP server the provider's real hook talks to.

Runs move through the life-cycle states the real service uses, on a clock the test controls;
idempotency tokens, asynchronous cancel, repair, "does not exist" answers, throttling and
latency behave like the service; everything a test asserts on is counted.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from resumable.testing._base import LoopbackEmulator

#: Result states the real Jobs API uses (``HANG`` is ours: the task never ends).
RESULT_STATES = frozenset(
    {
        "SUCCESS",
        "FAILED",
        "TIMEDOUT",
        "CANCELED",
        "MAXIMUM_CONCURRENT_RUNS_REACHED",
        "EXCLUDED",
        "SUCCESS_WITH_FAILURES",
        "UPSTREAM_FAILED",
        "UPSTREAM_CANCELED",
        "DISABLED",
    }
)
HANG = "HANG"
#: Emulated seconds a cancelled run spends TERMINATING before it is TERMINATED/CANCELED, unless
#: :attr:`DatabricksEmulator.cancel_seconds` says otherwise.
CANCEL_SECONDS = 2.0
#: What the service answers (with HTTP 429) to a request over its rate limit.
_THROTTLED_BODY = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Too many requests. Please retry."}


@dataclass(frozen=True)
class TaskScript:
    """How one task of a run behaves: seconds PENDING, seconds RUNNING, then its result."""

    result: str = "SUCCESS"
    duration: float = 10.0
    pending: float = 1.0
    #: The result the task ends with when a repair reruns it.
    rerun_result: str = "SUCCESS"

    def __post_init__(self) -> None:
        for value in (self.result, self.rerun_result):
            if value not in RESULT_STATES and value != HANG:
                raise ValueError(f"{value!r} is not a Databricks result state (nor {HANG!r})")


#: The outcomes every emulator of the kit takes (``JobScript.outcome`` for AWS), as Databricks results.
OUTCOMES = {"succeed": "SUCCESS", "fail": "FAILED", "hang": HANG}


@dataclass(frozen=True)
class RunScript:
    """How a run behaves. Single-task runs end with ``result``; multi-task runs with their tasks' results
    (any failed task fails the run) unless ``result="SUCCESS_WITH_FAILURES"`` is given explicitly.

    ``outcome`` ("succeed", "fail" or "hang", as for :class:`resumable.testing.aws.JobScript`) sets
    ``result`` in the words every emulator of the kit shares; ``result`` takes any Databricks
    result state (``TIMEDOUT``, ``CANCELED``, ...).
    """

    result: str = "SUCCESS"
    duration: float = 10.0
    pending: float = 1.0
    tasks: Mapping[str, TaskScript] = field(default_factory=dict)
    outcome: str | None = None

    def __post_init__(self) -> None:
        if self.outcome is not None:
            if self.outcome not in OUTCOMES:
                raise ValueError(f"outcome must be 'succeed', 'fail' or 'hang', not {self.outcome!r}")
            object.__setattr__(self, "result", OUTCOMES[self.outcome])
        elif self.result not in RESULT_STATES and self.result != HANG:
            raise ValueError(f"{self.result!r} is not a Databricks result state (nor {HANG!r})")

    def task(self, key: str, single: bool) -> TaskScript:
        if key in self.tasks:
            return self.tasks[key]
        result = self.result if single and self.result != "SUCCESS_WITH_FAILURES" else "SUCCESS"
        return TaskScript(result=result, duration=self.duration, pending=self.pending)


@dataclass
class _Task:
    key: str
    run_id: int
    script: TaskScript
    start: float
    result: str
    attempt: int = 0

    def state(
        self, now: float, cancel_at: float | None, cancel_seconds: float = CANCEL_SECONDS
    ) -> tuple[str, str | None]:
        end = None if self.result == HANG else self.start + self.script.pending + self.script.duration
        if cancel_at is not None and (end is None or cancel_at < end) and now >= cancel_at:
            if now < cancel_at + cancel_seconds:
                return "TERMINATING", None
            return "TERMINATED", "CANCELED"
        if now < self.start + self.script.pending:
            return "PENDING", None
        if end is None or now < end:
            return "RUNNING", None
        return "TERMINATED", self.result

    def running_seconds(
        self, now: float, cancel_at: float | None, cancel_seconds: float = CANCEL_SECONDS
    ) -> float:
        begin = self.start + self.script.pending
        end = (
            now if self.result == HANG else min(now, self.start + self.script.pending + self.script.duration)
        )
        if cancel_at is not None:
            end = min(end, cancel_at + cancel_seconds)
        return max(0.0, end - begin)


@dataclass
class _Run:
    run_id: int
    job_id: int | None
    run_name: str
    token: str | None
    script: RunScript
    created: float
    created_ms: int
    tasks: list[_Task]
    cancel_at: float | None = None
    #: Emulated seconds this run spends TERMINATING after its cancel.
    cancel_seconds: float = CANCEL_SECONDS
    repairs: list[dict[str, Any]] = field(default_factory=list)
    past_seconds: float = 0.0


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class DatabricksEmulator(LoopbackEmulator):
    """The Jobs API 2.2 calls ``DatabricksHook`` makes, served on 127.0.0.1 at a free port.

    Use it as a context manager (or :meth:`start` / :meth:`stop`); :meth:`use_as` makes it an
    Airflow connection. The clock runs at ``speed`` emulated seconds per real second, or only
    when :meth:`advance` is called with ``manual_clock=True``.

    ``rate_limit_per_second`` turns on the request-rate limit of :meth:`rate_limit` from the start:
    every request under ``/api/2.x/jobs/`` takes a token, and one over the limit is answered 429
    ``REQUEST_LIMIT_EXCEEDED`` with ``Retry-After: 1`` and counted in :attr:`throttled`.
    """

    server_name = "databricks-emulator"
    default_conn_id = "databricks_default"

    def __init__(
        self,
        *,
        speed: float = 1.0,
        manual_clock: bool = False,
        token: str = "emulator-token",
        default_script: RunScript | None = None,
        not_found_status: int = 400,
        rate_limit_per_second: float | None = None,
    ) -> None:
        super().__init__(speed=speed, manual_clock=manual_clock)
        self.token = token
        self.default_script = default_script or RunScript()
        self.not_found_status = not_found_status
        #: Real seconds every API call waits before it is answered.
        self.latency = 0.0
        self._random = random.Random(0)
        self.reset()
        if rate_limit_per_second is not None:
            self.rate_limit(rate_limit_per_second)

    # ---- life ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every run, job, script, fault and counter.

        Like :attr:`latency`, the rate limit set by :meth:`rate_limit` is part of how the service is
        configured, not of what happened, so it stays; its bucket is refilled, as after a quiet spell.
        """
        with self._lock:
            self._restart_clock()
            self._limit.refill()
            self._runs: dict[int, _Run] = {}
            self._jobs: dict[int, dict[str, Any]] = {}
            self._by_token: dict[str, int] = {}
            self._queue: list[RunScript] = []
            self._ids = itertools.count(1001)
            self._task_ids = itertools.count(50001)
            self._job_ids = itertools.count(11)
            self._repair_ids = itertools.count(700001)
            self._fail_next: list[tuple[int, str | None]] = []
            self._fail_rate: tuple[float, int, str | None] = (0.0, 503, None)
            self._outage: tuple[float, int, str] = (0.0, 500, "runs/get")
            #: Submit and run-now requests per idempotency token (``None`` for none), repeats included.
            self.submissions: Counter[str | None] = Counter()
            #: Calls per ``"METHOD path"``, e.g. ``"GET runs/get"``.
            self.calls: Counter[str] = Counter()
            #: Calls refused with 429 by the rate limit (:meth:`rate_limit`), per ``"METHOD path"``; they
            #: are counted in :attr:`calls` too. Injected 429 faults are not counted here.
            self.throttled: Counter[str] = Counter()
            #: Run ids that runs/cancel (or cancel-all) was called for.
            self.cancels: list[int] = []
            #: Run ids repaired, one entry per repair.
            self.repairs: list[int] = []
            #: Seconds a submit or run-now holds its answer after creating the run: a test can kill
            #: the caller in that window, when the job exists and the caller has not seen its id.
            self.submit_delay: float = 0.0
            #: Emulated seconds a run cancelled from now on stays TERMINATING (its cancel takes that
            #: many polls to show) before it is TERMINATED/CANCELED.
            self.cancel_seconds: float = CANCEL_SECONDS
            #: Emulated seconds a run cancelled from now on still answers RUNNING before it is TERMINATING:
            #: Databricks cancels asynchronously ("the run may still be running when this request
            #: completes"), and a slow control plane takes its time.
            self.cancel_lag: float = 0.0
            #: Wall-clock times (``time.time()``) of the ``runs/get`` calls per run id.
            self.polls: dict[int, list[float]] = {}

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._live_server().port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connection(self) -> dict[str, Any]:
        """The Airflow connection (as a dict) that points the Databricks hook at this emulator."""
        return {
            "conn_type": "databricks",
            "host": self.host,
            "port": self.port,
            "schema": "http",
            "password": self.token,
        }

    # ---- clock and scripts ---------------------------------------------------------------------

    def script_next(self, *scripts: RunScript, replace: bool = False) -> None:
        """The next runs created behave like these, in order; then :attr:`default_script`.

        ``replace=True`` first drops scripts queued earlier and not used yet.
        """
        with self._lock:
            if replace:
                self._queue.clear()
            self._queue.extend(scripts)

    def create_job(
        self, name: str, tasks: list[dict[str, Any]] | None = None, script: RunScript | None = None
    ) -> int:
        """Create a job for run-now (found by name with jobs/list); returns its job id."""
        with self._lock:
            job_id = next(self._job_ids)
            settings = {"name": name, "tasks": tasks or [{"task_key": "main"}]}
            self._jobs[job_id] = {"job_id": job_id, "settings": settings, "script": script}
            return job_id

    # ---- faults --------------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503, path: str | None = None) -> None:
        """The next ``n`` API calls (whose path ends with ``path``, if given) answer ``status``."""
        with self._lock:
            self._fail_next = [(status, path)] * n

    def outage(self, seconds: float, status: int = 500, path: str = "runs/get") -> None:
        """For the next ``seconds`` (real time), calls whose path ends with ``path`` answer ``status``:
        a blip longer than the hook's own retries."""
        with self._lock:
            self._outage = (time.monotonic() + seconds, status, path)

    def fail_rate(self, rate: float, status: int = 503, path: str | None = None) -> None:
        """Answer ``status`` to a seeded-random fraction ``rate`` of calls (matching ``path``)."""
        with self._lock:
            self._fail_rate = (rate, status, path)

    # ---- what tests assert ---------------------------------------------------------------------

    @property
    def runs(self) -> list[int]:
        """Ids of the runs created, in order."""
        with self._lock:
            return list(self._runs)

    @property
    def runs_created(self) -> int:
        """How many runs were created (a repeated token does not create one)."""
        return len(self.runs)

    def run(self, run_id: int) -> dict[str, Any]:
        """The run as ``runs/get?include_history=true`` returns it."""
        with self._lock:
            return self._run_json(self._get_run(run_id), history=True)

    def compute_seconds(self, run_name: str | None = None, run_id: int | None = None) -> float:
        """Emulated seconds the tasks of all runs (or those named ``run_name``, or run ``run_id``)
        spent RUNNING or TERMINATING."""
        with self._lock:
            now = self.now()
            return sum(
                run.past_seconds
                + sum(t.running_seconds(now, run.cancel_at, run.cancel_seconds) for t in run.tasks)
                for run in self._runs.values()
                if (run_name is None or run.run_name == run_name) and (run_id is None or run.run_id == run_id)
            )

    def runs_named(self, run_name: str) -> list[dict[str, Any]]:
        """The runs called ``run_name``, oldest first, as ``runs/get`` returns them."""
        with self._lock:
            return [self._run_json(r, history=False) for r in self._runs.values() if r.run_name == run_name]

    def stats(self) -> dict[str, Any]:
        """Every counter, JSON-ready (also served at ``GET /emulator/stats``)."""
        with self._lock:
            return {
                "runs_created": self.runs_created,
                "runs": self.runs,
                "submissions": {str(k): v for k, v in self.submissions.items()},
                "calls": dict(self.calls),
                "throttled": sum(self.throttled.values()),
                "cancels": list(self.cancels),
                "repairs": list(self.repairs),
                "compute_seconds": round(self.compute_seconds(), 3),
            }

    # ---- the API ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: dict[str, Any], auth: str | None) -> tuple[int, Any]:
        """Answer one request; returns (HTTP status, JSON body)."""
        if path == "/emulator/stats":
            return 200, self.stats()
        parts = path.strip("/").split("/")
        if len(parts) < 4 or parts[0] != "api" or parts[1] not in ("2.1", "2.2") or parts[2] != "jobs":
            return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for {method} {path}"}
        name = "/".join(parts[3:])
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.calls[f"{method} {name}"] += 1
            if not self._limit.take():
                self.throttled[f"{method} {name}"] += 1
                return 429, dict(_THROTTLED_BODY)
            if auth != f"Bearer {self.token}":
                return 401, {"error_code": "UNAUTHENTICATED", "message": "Invalid access token."}
            injected = self._injected_failure(name)
            if injected is not None:
                return injected
            route = _ROUTES.get((method, name))
            if route is None:
                return 404, {
                    "error_code": "ENDPOINT_NOT_FOUND",
                    "message": f"No API found for {method} {name}",
                }
            try:
                answer = route(self, params)
            except _ApiError as error:
                return error.status, {"error_code": error.code, "message": error.message}
        if name in ("runs/submit", "run-now") and self.submit_delay:
            time.sleep(self.submit_delay)  # the run exists; the caller does not know its id yet
        return 200, answer

    def _injected_failure(self, name: str) -> tuple[int, Any] | None:
        status: int | None = None
        until, outage_status, outage_path = self._outage
        if time.monotonic() < until and name.endswith(outage_path):
            status = outage_status
        elif self._fail_next and (
            self._fail_next[0][1] is None or name.endswith(self._fail_next[0][1] or "")
        ):
            status = self._fail_next.pop(0)[0]
        else:
            rate, rate_status, rate_path = self._fail_rate
            if rate and (rate_path is None or name.endswith(rate_path)) and self._random.random() < rate:
                status = rate_status
        if status is None:
            return None
        if status == 429:
            return 429, dict(_THROTTLED_BODY)
        return status, {
            "error_code": "TEMPORARILY_UNAVAILABLE",
            "message": "The service is temporarily unavailable.",
        }

    def _get_run(self, run_id: Any) -> _Run:
        try:
            return self._runs[int(run_id)]
        except (KeyError, TypeError, ValueError):
            if self.not_found_status == 404:
                raise _ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Run {run_id} does not exist.") from None
            raise _ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.") from None

    def _create(
        self, body: dict[str, Any], job_id: int | None, task_keys: list[str], script: RunScript | None
    ) -> dict[str, Any]:
        token = body.get("idempotency_token")
        if token is not None and (not isinstance(token, str) or len(token) > 64):
            raise _ApiError(
                400, "INVALID_PARAMETER_VALUE", "idempotency_token must be at most 64 characters."
            )
        self.submissions[token] += 1
        if token and token in self._by_token:
            return {"run_id": self._by_token[token]}
        script = self._queue.pop(0) if self._queue else (script or self.default_script)
        now = self.now()
        run_id = next(self._ids)
        single = len(task_keys) == 1
        tasks = [
            _Task(key, next(self._task_ids), script.task(key, single), now, script.task(key, single).result)
            for key in task_keys
        ]
        self._runs[run_id] = _Run(
            run_id,
            job_id,
            str(body.get("run_name") or "Untitled"),
            token,
            script,
            now,
            int(time.time() * 1000),
            tasks,
        )
        if token:
            self._by_token[token] = run_id
        return {"run_id": run_id}

    def _submit(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("tasks"):
            keys = [str(t.get("task_key") or f"task_{i}") for i, t in enumerate(body["tasks"])]
        elif any(key.endswith("_task") for key in body):
            keys = ["task"]
        else:
            raise _ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                "One of tasks or a task type such as notebook_task is required.",
            )
        return self._create(body, None, keys, None)

    def _run_now(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._jobs.get(int(body.get("job_id", -1)))
        if job is None:
            raise _ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {body.get('job_id')} does not exist.")
        keys = [str(t["task_key"]) for t in job["settings"]["tasks"]]
        created = self._create(
            {**body, "run_name": job["settings"]["name"]}, job["job_id"], keys, job["script"]
        )
        number = sum(1 for r in self._runs.values() if r.job_id == job["job_id"])
        return {**created, "number_in_job": number}

    def _state(self, run: _Run) -> tuple[str, str | None, str]:
        now = self.now()
        states = [t.state(now, run.cancel_at, run.cancel_seconds) for t in run.tasks]
        lives = {life for life, _ in states}
        if lives != {"TERMINATED"}:
            if "TERMINATING" in lives:
                return "TERMINATING", None, "Run cancellation requested."
            if "RUNNING" in lives:
                return "RUNNING", None, "In run"
            return "PENDING", None, "Waiting for cluster"
        results = [result for _, result in states]
        if "CANCELED" in results:
            return "TERMINATED", "CANCELED", "Run cancelled."
        if run.script.result == "SUCCESS_WITH_FAILURES" and not run.repairs:
            return "TERMINATED", "SUCCESS_WITH_FAILURES", "Some tasks failed."
        failed = [r for r in results if r != "SUCCESS"]
        if not failed:
            return "TERMINATED", "SUCCESS", ""
        result = failed[0] if len(run.tasks) == 1 else "FAILED"
        return (
            "TERMINATED",
            result,
            f"Task {run.tasks[results.index(failed[0])].key} failed with result {failed[0]}.",
        )

    def _task_json(self, run: _Run, task: _Task) -> dict[str, Any]:
        life, result = task.state(self.now(), run.cancel_at, run.cancel_seconds)
        state: dict[str, Any] = {"life_cycle_state": life, "state_message": ""}
        if result:
            state["result_state"] = result
        return {"run_id": task.run_id, "task_key": task.key, "attempt_number": task.attempt, "state": state}

    def _run_json(self, run: _Run, history: bool) -> dict[str, Any]:
        life, result, message = self._state(run)
        state: dict[str, Any] = {
            "life_cycle_state": life,
            "state_message": message,
            "user_cancelled_or_timedout": False,
        }
        if result:
            state["result_state"] = result
        data: dict[str, Any] = {
            "run_id": run.run_id,
            "job_id": run.job_id if run.job_id is not None else run.run_id,
            "run_name": run.run_name,
            "number_in_job": run.run_id,
            "run_page_url": f"{self.url}/#job/{run.job_id or run.run_id}/run/{run.run_id}",
            "start_time": run.created_ms,
            "state": state,
            "status": {"state": life if life != "TERMINATED" else "TERMINATED"},
            "tasks": [self._task_json(run, t) for t in run.tasks],
        }
        if result:
            data["end_time"] = run.created_ms + int((self.now() - run.created) * 1000)
        if history:
            original = {"type": "ORIGINAL", "start_time": run.created_ms, "state": state}
            data["repair_history"] = [original, *run.repairs]
        return data

    def _get(self, params: dict[str, Any]) -> dict[str, Any]:
        history = str(params.get("include_history", "")).lower() == "true"
        run = self._get_run(params.get("run_id"))
        self.polls.setdefault(run.run_id, []).append(time.time())
        return self._run_json(run, history)

    def _output(self, params: dict[str, Any]) -> dict[str, Any]:
        wanted = int(params.get("run_id", -1))
        for run in self._runs.values():
            for task in run.tasks:
                if task.run_id == wanted or (run.run_id == wanted and len(run.tasks) == 1):
                    task_json = self._task_json(run, task)
                    result = task_json["state"].get("result_state")
                    out: dict[str, Any] = {"metadata": task_json}
                    if result and result != "SUCCESS":
                        out["error"] = f"{task.key} ended {result}"
                        out["error_trace"] = f"Traceback: task {task.key} ended {result}"
                    elif result == "SUCCESS":
                        out["notebook_output"] = {"result": "ok", "truncated": False}
                    return out
        raise _ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {wanted} does not exist.")

    def _cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self._get_run(params.get("run_id"))
        self.cancels.append(run.run_id)
        if self._state(run)[0] != "TERMINATED" and run.cancel_at is None:
            run.cancel_at = self.now() + self.cancel_lag
            run.cancel_seconds = self.cancel_seconds
        return {}

    def _cancel_all(self, params: dict[str, Any]) -> dict[str, Any]:
        for run in list(self._runs.values()):
            if run.job_id == int(params.get("job_id", -1)) and self._state(run)[0] != "TERMINATED":
                self._cancel({"run_id": run.run_id})
        return {}

    def _repair(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self._get_run(params.get("run_id"))
        if self._state(run)[0] != "TERMINATED":
            raise _ApiError(400, "INVALID_STATE", f"Run {run.run_id} is still active and cannot be repaired.")
        if run.repairs and params.get("latest_repair_id") != run.repairs[-1]["id"]:
            raise _ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                f"latest_repair_id must be {run.repairs[-1]['id']}: run {run.run_id} was repaired before.",
            )
        now = self.now()
        if params.get("rerun_tasks"):
            keys = set(params["rerun_tasks"])
        elif params.get("rerun_all_failed_tasks"):
            keys = {
                t.key for t in run.tasks if t.state(now, run.cancel_at, run.cancel_seconds)[1] != "SUCCESS"
            }
        else:
            raise _ApiError(
                400, "INVALID_PARAMETER_VALUE", "rerun_tasks or rerun_all_failed_tasks is required."
            )
        run.past_seconds += sum(
            t.running_seconds(now, run.cancel_at, run.cancel_seconds) for t in run.tasks if t.key in keys
        )
        for task in run.tasks:
            if task.key in keys:
                task.start, task.result, task.attempt = now, task.script.rerun_result, task.attempt + 1
                task.run_id = next(self._task_ids)
        run.cancel_at = None
        repair_id = next(self._repair_ids)
        run.repairs.append(
            {
                "type": "REPAIR",
                "id": repair_id,
                "start_time": int(time.time() * 1000),
                "task_run_ids": [t.run_id for t in run.tasks if t.key in keys],
            }
        )
        self.repairs.append(run.run_id)
        return {"repair_id": repair_id}

    def _list_runs(self, params: dict[str, Any]) -> dict[str, Any]:
        runs = list(self._runs.values())
        if params.get("job_id") is not None:
            runs = [r for r in runs if r.job_id == int(params["job_id"])]
        if str(params.get("active_only", "")).lower() == "true":
            runs = [r for r in runs if self._state(r)[0] != "TERMINATED"]
        runs.reverse()  # newest first, as the service lists them
        return _page([self._run_json(r, False) for r in runs], params, "runs")

    def _list_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        jobs = [{"job_id": j["job_id"], "settings": j["settings"]} for j in self._jobs.values()]
        if params.get("name"):
            jobs = [j for j in jobs if j["settings"]["name"] == params["name"]]
        return _page(jobs, params, "jobs")

    def _get_job(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self._jobs.get(int(params.get("job_id", -1)))
        if job is None:
            raise _ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {params.get('job_id')} does not exist.")
        return {"job_id": job["job_id"], "settings": job["settings"]}

    def _create_job(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"job_id": self.create_job(str(params.get("name", "Untitled")), params.get("tasks"))}


def _page(items: list[dict[str, Any]], params: dict[str, Any], key: str) -> dict[str, Any]:
    limit = int(params.get("limit") or 25)
    offset = int(params.get("page_token") or params.get("offset") or 0)
    page: dict[str, Any] = {key: items[offset : offset + limit]}
    if offset + limit < len(items):
        page["next_page_token"] = str(offset + limit)
        page["has_more"] = True
    else:
        page["has_more"] = False
    return page


_ROUTES: dict[tuple[str, str], Any] = {
    ("POST", "runs/submit"): DatabricksEmulator._submit,
    ("POST", "run-now"): DatabricksEmulator._run_now,
    ("GET", "runs/get"): DatabricksEmulator._get,
    ("GET", "runs/get-output"): DatabricksEmulator._output,
    ("POST", "runs/cancel"): DatabricksEmulator._cancel,
    ("POST", "runs/cancel-all"): DatabricksEmulator._cancel_all,
    ("POST", "runs/repair"): DatabricksEmulator._repair,
    ("GET", "runs/list"): DatabricksEmulator._list_runs,
    ("GET", "list"): DatabricksEmulator._list_jobs,
    ("GET", "get"): DatabricksEmulator._get_job,
    ("POST", "create"): DatabricksEmulator._create_job,
}


__all__ = ["DatabricksEmulator", "RunScript", "TaskScript"]
