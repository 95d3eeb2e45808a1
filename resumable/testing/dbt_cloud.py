"""A loopback dbt Cloud Administrative API v2 emulator: the job-run calls the dbt-cloud provider's real
``DbtCloudHook`` makes, served by a real HTTP server.

Runs move through dbt Cloud's statuses (1 queued, 2 starting, 3 running, then 10 success, 20 error or
30 cancelled) on a clock the test controls. As on the service, a job runs one run at a time: a run
triggered while another run of its job is in progress stays queued until that one ends, and the
API takes no idempotency key: a repeated trigger is a second run. A run's ``cause`` is kept and shown
under ``trigger`` (with ``include_related=["trigger"]``), which is how a caller finds its run again.
Faults: a held trigger answer (:attr:`DbtCloudEmulator.trigger_delay`: the run exists, the caller has
not seen its id), a held cancel answer (:attr:`DbtCloudEmulator.cancel_delay`), failed calls
(:meth:`~DbtCloudEmulator.fail_next`, :meth:`~DbtCloudEmulator.outage`), the service's 429 throttling
(:meth:`~resumable.testing._base.Emulator.rate_limit`), and a cancel that takes emulated seconds to
show (:attr:`DbtCloudEmulator.cancel_seconds`).

The hook builds every address as ``https://{host}/api/v2/accounts/...`` and has no option for the
scheme, so a plain-HTTP loopback server cannot be reached as it is: :meth:`DbtCloudEmulator.patch_hook`
changes only that, the scheme of the hook's base address (sync and async) for this emulator's
``127.0.0.1:<port>``; every other line of the hook (its requests, retries, pagination and parsing)
runs as shipped.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from resumable.testing._base import LoopbackEmulator

QUEUED, STARTING, RUNNING, SUCCESS, ERROR, CANCELLED = 1, 2, 3, 10, 20, 30
STATUS_NAMES = {
    QUEUED: "Queued",
    STARTING: "Starting",
    RUNNING: "Running",
    SUCCESS: "Success",
    ERROR: "Error",
    CANCELLED: "Cancelled",
}
#: Emulated seconds between a cancel and the run showing status 30, unless
#: :attr:`DbtCloudEmulator.cancel_seconds` says otherwise.
CANCEL_SECONDS = 1.0
#: The most runs one page of ``GET runs/`` holds (the service's own limit).
MAX_PAGE = 100


@dataclass(frozen=True)
class RunScript:
    """How one run behaves: ``queued`` seconds queued and starting, then ``duration`` seconds running
    (``math.inf``: until cancelled), then ``outcome`` (``"success"`` or ``"error"``)."""

    outcome: str = "success"
    duration: float = 10.0
    queued: float = 1.0

    def __post_init__(self) -> None:
        if self.outcome not in ("success", "error"):
            raise ValueError(f"outcome must be 'success' or 'error', not {self.outcome!r}")


@dataclass
class _Run:
    id: int
    job_id: int
    created: float
    script: RunScript
    trigger: dict[str, Any]
    cancel_at: float | None = None


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _error_body(status: int, message: str) -> dict[str, Any]:
    """dbt Cloud's error envelope."""
    return {
        "status": {"code": status, "is_success": False, "user_message": message, "developer_message": ""},
        "data": None,
    }


class DbtCloudEmulator(LoopbackEmulator):
    """The dbt Cloud calls ``DbtCloudHook`` makes, served on 127.0.0.1 at a free port, for one account.

    Use it as a context manager (or :meth:`start` / :meth:`stop`), :meth:`use_as` to make it an
    Airflow connection and :meth:`patch_hook` to let the hook reach it over plain HTTP. Jobs are made
    with :meth:`create_job`; runs behave as :meth:`script_next` says, then as ``default_script``.
    """

    server_name = "dbt-cloud-emulator"
    default_conn_id = "dbt_cloud_default"

    def __init__(
        self,
        *,
        speed: float = 1.0,
        manual_clock: bool = False,
        token: str = "emulator-token",
        account_id: int = 7,
        default_script: RunScript | None = None,
    ) -> None:
        super().__init__(speed=speed, manual_clock=manual_clock)
        self.token, self.account_id = token, account_id
        self.default_script = default_script or RunScript()
        #: Real seconds every API call waits before it is answered.
        self.latency = 0.0
        self.reset()

    # ---- life ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every job, run, script, fault and counter (the rate limit stays, refilled)."""
        with self._lock:
            self._restart_clock()
            #: The wall-clock time of the emulated clock's second 0, for the timestamps in answers.
            self._epoch = datetime.now(timezone.utc)
            self._limit.refill()
            self._jobs: dict[int, dict[str, Any]] = {}
            self._runs: dict[int, _Run] = {}
            self._queue: list[RunScript] = []
            self._run_ids = itertools.count(5001)
            self._job_ids = itertools.count(101)
            self._fail_next: list[tuple[int, str | None]] = []
            self._outage: tuple[float, int, str] = (0.0, 500, "runs/")
            #: Calls per ``"METHOD route"``, e.g. ``"GET runs/{id}/"`` or ``"POST jobs/{id}/run/"``.
            self.calls: Counter[str] = Counter()
            #: Calls the rate limit refused with 429, per ``"METHOD route"`` (also in :attr:`calls`).
            self.throttled: Counter[str] = Counter()
            #: Run ids a cancel was asked for, one entry per request.
            self.cancels: list[int] = []
            #: Real seconds a trigger holds its answer after creating the run.
            self.trigger_delay = 0.0
            #: Real seconds a cancel holds its answer after taking it (a stalled control plane).
            self.cancel_delay = 0.0
            #: Emulated seconds a run cancelled from now on takes to show status 30.
            self.cancel_seconds = CANCEL_SECONDS
            #: Wall-clock times (``time.time()``) of the status reads (``GET runs/{id}/``) per run id.
            self.polls: dict[int, list[float]] = {}

    @property
    def host(self) -> str:
        """The host and port, as the hook's ``tenant`` (the connection's host)."""
        return f"127.0.0.1:{self._live_server().port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def connection(self) -> dict[str, Any]:
        """The Airflow connection (as a dict) for ``DbtCloudHook``: the account in ``login``."""
        return {
            "conn_type": "dbt_cloud",
            "host": self.host,
            "login": str(self.account_id),
            "password": self.token,
        }

    @contextlib.contextmanager
    def patch_hook(self) -> Iterator[DbtCloudEmulator]:
        """While the block runs, ``DbtCloudHook`` reaches this emulator over plain HTTP
        (:func:`route_hook_to`)."""
        undo = route_hook_to(self.host)
        try:
            yield self
        finally:
            undo()

    # ---- jobs, scripts and faults -----------------------------------------------------------------

    def create_job(self, name: str = "nightly", project_id: int = 1, environment_id: int = 1) -> int:
        """A dbt Cloud job; returns its id."""
        with self._lock:
            job_id = next(self._job_ids)
            self._jobs[job_id] = {
                "id": job_id,
                "account_id": self.account_id,
                "project_id": project_id,
                "environment_id": environment_id,
                "name": name,
                "execute_steps": ["dbt build"],
            }
            return job_id

    def script_next(self, *scripts: RunScript, replace: bool = False) -> None:
        """The next runs behave like these, in order; ``replace=True`` drops unused ones first."""
        with self._lock:
            if replace:
                self._queue.clear()
            self._queue.extend(scripts)

    def fail_next(self, n: int, status: int = 503, path: str | None = None) -> None:
        """The next ``n`` calls (whose route ends with ``path``, if given) fail with ``status``."""
        with self._lock:
            self._fail_next.extend([(status, path)] * n)

    def outage(self, seconds: float, status: int = 500, path: str = "/") -> None:
        """Calls whose route ends with ``path`` fail with ``status`` for ``seconds`` real seconds."""
        with self._lock:
            self._outage = (time.monotonic() + seconds, status, path)

    # ---- what a test observes -------------------------------------------------------------------

    @property
    def runs(self) -> list[int]:
        """Ids of every run created, oldest first."""
        with self._lock:
            return sorted(self._runs)

    def runs_of(self, job_id: int) -> list[int]:
        with self._lock:
            return sorted(r.id for r in self._runs.values() if r.job_id == job_id)

    def run(self, run_id: int) -> dict[str, Any]:
        """The run as ``GET runs/{id}/`` shows it, with its trigger."""
        with self._lock:
            return self._run_json(self._runs[run_id], related=("trigger",))

    def status_of(self, run_id: int) -> int:
        return int(self.run(run_id)["status"])

    def active_runs(self, job_id: int | None = None) -> list[int]:
        """Runs that have not ended (queued, starting, running, or cancelled and not yet shown so)."""
        with self._lock:
            return [
                r.id
                for r in sorted(self._runs.values(), key=lambda r: r.id)
                if (job_id is None or r.job_id == job_id) and self._status(r) < SUCCESS
            ]

    def compute_seconds(self, run_id: int) -> float:
        """Emulated seconds the run has been running so far (not queued, not starting)."""
        with self._lock:
            started, start, end = self._span(self._runs[run_id])
            return max(0.0, min(end, self.now()) - start) if started else 0.0

    def max_running_at_once(self, job_id: int) -> int:
        """How many runs of the job were ever running at the same time (the service allows one)."""
        with self._lock:
            spans = [span for r in self._runs.values() if r.job_id == job_id for span in [self._span(r)[1:]]]
        edges = sorted([(s, 1) for s, e in spans if e > s] + [(e, -1) for s, e in spans if e > s])
        most = now = 0
        for _, step in edges:
            now += step
            most = max(most, now)
        return most

    # ---- the service's behaviour ----------------------------------------------------------------

    def _spans(self, job_id: int) -> dict[int, tuple[bool, float, float]]:
        """Per run of the job: (started at all, when it started running, when it ended), in emulated
        seconds. A run starts after its queued time and after the run before it has ended; one
        cancelled before it started never starts."""
        spans: dict[int, tuple[bool, float, float]] = {}
        ready = -math.inf
        for run in sorted((r for r in self._runs.values() if r.job_id == job_id), key=lambda r: r.id):
            start = max(run.created + run.script.queued, ready)
            cancelled = math.inf if run.cancel_at is None else run.cancel_at
            if cancelled <= start:
                spans[run.id] = (False, cancelled, cancelled)
                continue
            end = min(start + run.script.duration, cancelled)
            spans[run.id] = (True, start, end)
            ready = max(ready, end)
        return spans

    def _span(self, run: _Run) -> tuple[bool, float, float]:
        return self._spans(run.job_id)[run.id]

    def _status(self, run: _Run) -> int:
        now = self.now()
        started, start, end = self._span(run)
        if run.cancel_at is not None and end == run.cancel_at and now >= end:
            return CANCELLED
        if not started or now < start:
            # queued, then starting for the second half of its own queued time (not while it waits
            # for another run of its job to end)
            waits_for_another = start > run.created + run.script.queued
            own_half = now >= run.created + run.script.queued / 2
            return STARTING if started and own_half and not waits_for_another else QUEUED
        if now < end:
            return RUNNING
        return SUCCESS if run.script.outcome == "success" else ERROR

    def _run_json(self, run: _Run, related: tuple[str, ...] = ()) -> dict[str, Any]:
        status = self._status(run)

        def at(seconds: float) -> str | None:
            if not math.isfinite(seconds) or seconds > self.now():
                return None
            return (self._epoch + timedelta(seconds=seconds)).isoformat()

        started, start, end = self._span(run)
        body: dict[str, Any] = {
            "id": run.id,
            "account_id": self.account_id,
            "job_definition_id": run.job_id,
            "job_id": run.job_id,
            "status": status,
            "status_humanized": STATUS_NAMES[status],
            "status_message": "Database Error in model orders" if status == ERROR else None,
            "in_progress": status < SUCCESS,
            "is_complete": status >= SUCCESS,
            "is_success": status == SUCCESS,
            "is_error": status == ERROR,
            "is_cancelled": status == CANCELLED,
            "created_at": at(run.created),
            "started_at": at(start) if started else None,
            "finished_at": at(end) if status >= SUCCESS else None,
            "href": f"{self.url}/deploy/{self.account_id}/projects/1/runs/{run.id}/",
        }
        if "trigger" in related:
            body["trigger"] = dict(run.trigger)
        if "run_steps" in related:
            body["run_steps"] = [
                {
                    "index": 1,
                    "name": "Invoke dbt with `dbt build`",
                    "status": status if status >= SUCCESS else 3,
                }
            ]
        return body

    # ---- the API ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: dict[str, Any], auth: str | None) -> tuple[int, Any]:
        """Answer one request; returns (HTTP status, JSON body)."""
        prefix = "/api/v2/accounts/"
        if not path.startswith(prefix):
            return 404, _error_body(404, f"No API found for {method} {path}")
        parts = [p for p in path[len(prefix) :].split("/") if p]
        route = "/".join("{id}" if p.isdigit() and i > 0 else p for i, p in enumerate(parts))
        name = route.split("/", 1)[1] + "/" if "/" in route else ""
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.calls[f"{method} {name}"] += 1
            if not self._limit.take():
                self.throttled[f"{method} {name}"] += 1
                return 429, _error_body(429, "Too many requests. Please retry later.")
            if auth != f"Token {self.token}":
                return 401, _error_body(401, "Invalid token.")
            injected = self._injected_failure(name)
            if injected is not None:
                return injected
            if parts and parts[0] != str(self.account_id):
                return 404, _error_body(404, f"Account {parts[0]} does not exist.")
            try:
                answer = self._route(method, parts, params)
            except _ApiError as error:
                return error.status, _error_body(error.status, error.message)
        if name == "jobs/{id}/run/" and self.trigger_delay:
            time.sleep(self.trigger_delay)  # the run exists; the caller does not know its id yet
        if name == "runs/{id}/cancel/" and self.cancel_delay:
            time.sleep(self.cancel_delay)  # the cancel is taken; the caller has not seen the answer
        return 200, answer

    def _injected_failure(self, name: str) -> tuple[int, Any] | None:
        until, outage_status, outage_path = self._outage
        if time.monotonic() < until and name.endswith(outage_path):
            status: int | None = outage_status
        elif self._fail_next and (
            self._fail_next[0][1] is None or name.endswith(self._fail_next[0][1] or "")
        ):
            status = self._fail_next.pop(0)[0]
        else:
            status = None
        if status is None:
            return None
        return status, _error_body(status, "The service is temporarily unavailable.")

    def _route(self, method: str, parts: list[str], params: dict[str, Any]) -> dict[str, Any]:
        """``parts``: the path after ``/api/v2/accounts/``, the account's id first (none: the list)."""
        account = {"id": self.account_id, "name": "Emulated account"}
        if method == "GET" and len(parts) <= 1:
            return {"data": account if parts else [account]}
        parts = parts[1:]
        if parts[:1] == ["jobs"] and len(parts) >= 2:
            job = self._jobs.get(int(parts[1])) if parts[1].isdigit() else None
            if job is None:
                raise _ApiError(404, f"Job {parts[1]} does not exist.")
            if method == "GET" and len(parts) == 2:
                return {"data": dict(job)}
            if method == "POST" and parts[2:] == ["run"]:
                return {"data": self._trigger(job, params)}
        if parts[:1] == ["runs"]:
            if method == "GET" and len(parts) == 1:
                return self._list_runs(params)
            run = self._runs.get(int(parts[1])) if len(parts) > 1 and parts[1].isdigit() else None
            if run is None:
                raise _ApiError(404, f"Run {parts[1] if len(parts) > 1 else ''} does not exist.")
            if method == "GET" and len(parts) == 2:
                self.polls.setdefault(run.id, []).append(time.time())
                return {"data": self._run_json(run, _related(params))}
            if method == "POST" and parts[2:] == ["cancel"]:
                self.cancels.append(run.id)
                if self._status(run) < SUCCESS and run.cancel_at is None:
                    run.cancel_at = self.now() + self.cancel_seconds
                return {"data": self._run_json(run)}
        raise _ApiError(404, f"No API found for {method} /{'/'.join(parts)}/")

    def _trigger(self, job: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        cause = body.get("cause")
        if not isinstance(cause, str) or not cause:
            raise _ApiError(400, "cause is required.")
        if len(cause) > 255:
            raise _ApiError(400, "cause must be at most 255 characters.")
        script = self._queue.pop(0) if self._queue else self.default_script
        run = _Run(
            next(self._run_ids),
            int(job["id"]),
            self.now(),
            script,
            {
                "cause": cause,
                "job_definition_id": job["id"],
                "steps_override": body.get("steps_override"),
                "schema_override": body.get("schema_override"),
            },
        )
        self._runs[run.id] = run
        return self._run_json(run)

    def _list_runs(self, params: dict[str, Any]) -> dict[str, Any]:
        runs = sorted(self._runs.values(), key=lambda r: r.id)
        if params.get("job_definition_id") not in (None, ""):
            runs = [r for r in runs if r.job_id == int(params["job_definition_id"])]
        if params.get("status__in"):
            wanted = {int(s) for s in str(params["status__in"]).strip("[]").split(",") if s.strip()}
            runs = [r for r in runs if self._status(r) in wanted]
        order = str(params.get("order_by") or "id")
        if order.lstrip("-") in ("id", "created_at"):
            runs.sort(key=lambda r: r.id, reverse=order.startswith("-"))
        limit = min(int(params.get("limit") or MAX_PAGE), MAX_PAGE)
        offset = int(params.get("offset") or 0)
        page = runs[offset : offset + limit]
        related = _related(params)
        return {
            "data": [self._run_json(r, related) for r in page],
            "extra": {
                "filters": {"limit": limit, "offset": offset},
                "order_by": order,
                "pagination": {"count": len(page), "total_count": len(runs)},
            },
        }


def route_hook_to(host: str) -> Callable[[], None]:
    """Make ``DbtCloudHook`` reach the emulator at ``host`` (``127.0.0.1:<port>``) over plain HTTP: the
    only change is the scheme of its base address (``get_conn``'s ``base_url`` and the async calls'
    URL) when its host is that one. Returns what undoes it. The crash DAGs call it in the workers,
    where a test's context manager does not reach."""
    from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudHook

    secure, plain = f"https://{host}/", f"http://{host}/"
    get_conn, url_params = DbtCloudHook.get_conn, DbtCloudHook.get_request_url_params

    def patched_get_conn(hook: Any, *args: Any, **kwargs: Any) -> Any:
        session = get_conn(hook, *args, **kwargs)
        if hook.base_url == secure:
            hook.base_url = plain
        return session

    def patched_url_params(*args: Any, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        url, params = url_params(*args, **kwargs)
        return (plain + url[len(secure) :] if url.startswith(secure) else url), params

    DbtCloudHook.get_conn = patched_get_conn  # type: ignore[method-assign,assignment]
    DbtCloudHook.get_request_url_params = staticmethod(patched_url_params)  # type: ignore[method-assign,assignment]

    def undo() -> None:
        DbtCloudHook.get_conn = get_conn  # type: ignore[method-assign]
        DbtCloudHook.get_request_url_params = staticmethod(url_params)  # type: ignore[method-assign,assignment]

    return undo


def _related(params: dict[str, Any]) -> tuple[str, ...]:
    value = params.get("include_related")
    if not value:
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return tuple(v.strip(" '\"") for v in str(value).strip("[]").split(",") if v.strip())


__all__ = ["DbtCloudEmulator", "RunScript", "route_hook_to"]
