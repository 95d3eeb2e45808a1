"""A loopback BigQuery emulator: the job calls of the google provider's real ``BigQueryHook`` (through
``google-cloud-bigquery``'s REST client), served by a real HTTP server.

Jobs move through BigQuery's states (``PENDING``, ``RUNNING``, then ``DONE``, with an
``errorResult`` when they failed or were cancelled) on a clock the test controls. As on the service,
the caller chooses the job's id: inserting an id that exists is answered ``409 Already Exists``
(reason ``duplicate``) and creates nothing, which is what makes the id an idempotency token. A cancel
is asynchronous: the job ends ``DONE`` with reason ``stopped`` :attr:`BigQueryEmulator.cancel_seconds`
emulated seconds later. Faults: a held insert answer (:attr:`BigQueryEmulator.insert_delay`: the job
exists, the caller has not seen the answer), a held cancel answer (:attr:`BigQueryEmulator.cancel_delay`),
failed calls (:meth:`~BigQueryEmulator.fail_next`,
:meth:`~BigQueryEmulator.outage`, answered in BigQuery's error envelope with the reason the client
library retries, ``backendError``), and the service's throttling, ``403 rateLimitExceeded``
(:meth:`~resumable.testing._base.Emulator.rate_limit`).

Nothing of the hook is patched. ``google-cloud-bigquery`` sends its calls to the address in the
environment variable ``BIGQUERY_EMULATOR_HOST`` (its own emulator option, a full URL), and the
connection :meth:`BigQueryEmulator.connection` defines is anonymous (the hook's ``is_anonymous``
extra), so no token is fetched: :meth:`~BigQueryEmulator.airflow_env` and
:meth:`~resumable.testing._base.Emulator.use_as` set both. The async hook's status reads go through the
same client. Its other calls use ``gcloud-aio-bigquery``, which reads the same variable as a host
without a scheme; the resumable trigger does not use them (it cancels through the sync client).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from resumable.testing._base import LoopbackEmulator

PENDING, RUNNING, DONE = "PENDING", "RUNNING", "DONE"
#: Emulated seconds between a cancel and the job showing ``DONE`` (reason ``stopped``), unless
#: :attr:`BigQueryEmulator.cancel_seconds` says otherwise.
CANCEL_SECONDS = 1.0
#: The environment variable ``google-cloud-bigquery`` takes its API address from.
EMULATOR_HOST_VARIABLE = "BIGQUERY_EMULATOR_HOST"
#: The message of a cancelled job's ``errorResult``, as BigQuery words it.
CANCELLED_MESSAGE = "Job execution was cancelled: User requested cancellation"
#: The most jobs one page of ``jobs.list`` holds.
MAX_PAGE = 1000


@dataclass(frozen=True)
class JobScript:
    """How one job behaves: ``queued`` seconds ``PENDING``, then ``duration`` seconds ``RUNNING``
    (``math.inf``: until cancelled), then ``DONE`` with ``outcome`` (``"success"`` or ``"error"``)."""

    outcome: str = "success"
    duration: float = 10.0
    queued: float = 1.0

    def __post_init__(self) -> None:
        if self.outcome not in ("success", "error"):
            raise ValueError(f"outcome must be 'success' or 'error', not {self.outcome!r}")


@dataclass
class _Job:
    project: str
    job_id: str
    location: str
    configuration: dict[str, Any]
    created: float
    created_ms: int
    seq: int
    script: JobScript
    cancel_at: float | None = None


class _ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _error_body(status: int, reason: str, message: str) -> dict[str, Any]:
    """BigQuery's error envelope (what ``google.api_core.exceptions.from_http_response`` reads)."""
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
        }
    }


class BigQueryEmulator(LoopbackEmulator):
    """The BigQuery job calls ``BigQueryHook`` makes, served on 127.0.0.1 at a free port.

    Use it as a context manager (or :meth:`start` / :meth:`stop`) and :meth:`use_as` to make it the
    hook's connection and API address. Jobs behave as :meth:`script_next` says, then as
    ``default_script``. Every project and location is accepted.
    """

    server_name = "bigquery-emulator"
    default_conn_id = "google_cloud_default"

    def __init__(
        self,
        *,
        speed: float = 1.0,
        manual_clock: bool = False,
        project: str = "emulated-project",
        location: str = "US",
        default_script: JobScript | None = None,
    ) -> None:
        super().__init__(speed=speed, manual_clock=manual_clock)
        self.project, self.location = project, location
        self.default_script = default_script or JobScript()
        #: Real seconds every API call waits before it is answered.
        self.latency = 0.0
        self.reset()

    # ---- life ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every job, script, fault and counter (the rate limit stays, refilled)."""
        with self._lock:
            self._restart_clock()
            self._epoch_ms = int(time.time() * 1000)
            self._limit.refill()
            self._jobs: dict[tuple[str, str], _Job] = {}
            self._order = itertools.count()
            self._queue: list[JobScript] = []
            self._fail_next: list[tuple[int, str | None]] = []
            self._outage: tuple[float, int, str] = (0.0, 503, "/")
            #: Calls per ``"METHOD route"``: ``"POST jobs"``, ``"GET jobs/{id}"``,
            #: ``"POST jobs/{id}/cancel"``, ``"GET jobs"``.
            self.calls: Counter[str] = Counter()
            #: Calls the rate limit refused, per ``"METHOD route"`` (also in :attr:`calls`).
            self.throttled: Counter[str] = Counter()
            #: Inserts answered ``409 Already Exists``, one entry (the job id) per request.
            self.duplicates: list[str] = []
            #: Job ids a cancel was asked for, one entry per request.
            self.cancels: list[str] = []
            #: Real seconds an insert holds its answer after creating the job.
            self.insert_delay = 0.0
            #: Real seconds a cancel holds its answer after taking it (a stalled control plane).
            self.cancel_delay = 0.0
            #: Emulated seconds a job cancelled from now on takes to show ``DONE``.
            self.cancel_seconds = CANCEL_SECONDS
            #: Wall-clock times (``time.time()``) of the status reads (``GET jobs/{id}``) per job id.
            self.polls: dict[str, list[float]] = {}

    @property
    def url(self) -> str:
        """The API's address, as ``BIGQUERY_EMULATOR_HOST`` takes it."""
        return f"http://127.0.0.1:{self._live_server().port}"

    def connection(self) -> dict[str, Any]:
        """The Airflow connection (as a dict) for ``BigQueryHook``: anonymous, in :attr:`project`."""
        return {
            "conn_type": "google_cloud_platform",
            "extra": {"project": self.project, "is_anonymous": True},
        }

    def airflow_env(self, conn_id: str | None = None) -> dict[str, str]:
        """The connection ``conn_id`` and ``BIGQUERY_EMULATOR_HOST``, the address the client calls."""
        return {**super().airflow_env(conn_id), EMULATOR_HOST_VARIABLE: self.url}

    # ---- scripts and faults ---------------------------------------------------------------------

    def script_next(self, *scripts: JobScript, replace: bool = False) -> None:
        """The next jobs behave like these, in order; ``replace=True`` drops unused ones first."""
        with self._lock:
            if replace:
                self._queue.clear()
            self._queue.extend(scripts)

    def fail_next(self, n: int, status: int = 503, path: str | None = None) -> None:
        """The next ``n`` calls (whose route ends with ``path``, if given: ``"jobs"`` is an insert or a
        list, ``"{id}"`` a status read, ``"cancel"`` a cancel) fail with ``status``."""
        with self._lock:
            self._fail_next.extend([(status, path)] * n)

    def outage(self, seconds: float, status: int = 503, path: str = "") -> None:
        """Calls whose route ends with ``path`` fail with ``status`` for ``seconds`` real seconds."""
        with self._lock:
            self._outage = (time.monotonic() + seconds, status, path)

    # ---- what a test observes -------------------------------------------------------------------

    @property
    def jobs(self) -> list[str]:
        """Ids of every job created, oldest first."""
        with self._lock:
            return [job.job_id for job in sorted(self._jobs.values(), key=lambda j: j.seq)]

    def job(self, job_id: str, project: str | None = None) -> dict[str, Any]:
        """The job as ``jobs.get`` shows it."""
        with self._lock:
            return self._job_json(self._jobs[(project or self.project, job_id)])

    def state_of(self, job_id: str) -> str:
        """``PENDING``, ``RUNNING``, ``DONE`` (succeeded), ``FAILED`` or ``CANCELLED``."""
        with self._lock:
            job = self._jobs[(self.project, job_id)]
            state = self._state(job)
            if state != DONE:
                return state
            return {"success": DONE, "error": "FAILED", "stopped": "CANCELLED"}[self._outcome(job)]

    def compute_seconds(self, job_id: str) -> float:
        """Emulated seconds the job has run so far (from its start to its end or now)."""
        with self._lock:
            start, end = self._span(self._jobs[(self.project, job_id)])
            return max(0.0, min(end, self.now()) - start)

    def labels(self, job_id: str) -> dict[str, str]:
        """The job's labels (the provider's operator adds ``airflow-dag`` and ``airflow-task``)."""
        with self._lock:
            return dict(self._jobs[(self.project, job_id)].configuration.get("labels") or {})

    def active_jobs(self) -> list[str]:
        """Jobs that have not ended (pending, running, or cancelled and not yet shown so)."""
        with self._lock:
            return [
                j.job_id for j in sorted(self._jobs.values(), key=lambda j: j.seq) if self._state(j) != DONE
            ]

    # ---- the service's behaviour ----------------------------------------------------------------

    def _span(self, job: _Job) -> tuple[float, float]:
        """When the job started running and when it ended, in emulated seconds."""
        start = job.created + job.script.queued
        end = start + job.script.duration
        if job.cancel_at is not None:
            end = min(end, job.cancel_at)
        return start, end

    def _state(self, job: _Job) -> str:
        now = self.now()
        start, end = self._span(job)
        if now >= end:
            return DONE
        return RUNNING if now >= start else PENDING

    def _outcome(self, job: _Job) -> str:
        _, end = self._span(job)
        if job.cancel_at is not None and end == job.cancel_at:
            return "stopped"
        return job.script.outcome

    def _ms(self, seconds: float) -> str:
        return str(self._epoch_ms + int(seconds * 1000))

    def _job_json(self, job: _Job) -> dict[str, Any]:
        state = self._state(job)
        start, end = self._span(job)
        status: dict[str, Any] = {"state": state}
        statistics: dict[str, Any] = {"creationTime": str(job.created_ms)}
        if state != PENDING:
            statistics["startTime"] = self._ms(start if math.isfinite(start) else self.now())
        if state == DONE:
            statistics["endTime"] = self._ms(end)
            outcome = self._outcome(job)
            if outcome != "success":
                error = (
                    {"reason": "stopped", "message": CANCELLED_MESSAGE}
                    if outcome == "stopped"
                    else {"reason": "invalidQuery", "location": "query", "message": "Syntax error at [1:1]"}
                )
                status["errorResult"] = error
                status["errors"] = [error]
        job_type = next(
            (key.upper() for key in ("query", "load", "copy", "extract") if key in job.configuration), ""
        )
        return {
            "kind": "bigquery#job",
            "etag": f"etag-{job.job_id}-{state}",
            "id": f"{job.project}:{job.location}.{job.job_id}",
            "selfLink": f"{self.url}/bigquery/v2/projects/{job.project}/jobs/{job.job_id}",
            "user_email": "emulator@example.com",
            "configuration": {**job.configuration, "jobType": job_type},
            "jobReference": {"projectId": job.project, "jobId": job.job_id, "location": job.location},
            "statistics": statistics,
            "status": status,
        }

    # ---- the API ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: dict[str, Any], auth: str | None) -> tuple[int, Any]:
        """Answer one request; returns (HTTP status, JSON body)."""
        prefix = "/bigquery/v2/projects/"
        parts = [p for p in path[len(prefix) :].split("/") if p] if path.startswith(prefix) else []
        if len(parts) < 2 or parts[1] not in ("jobs", "queries"):
            return 404, _error_body(404, "notFound", f"No API found for {method} {path}")
        project, collection, rest = parts[0], parts[1], parts[2:]
        route = "/".join([collection, *(["{id}"] if rest else []), *rest[1:]])
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.calls[f"{method} {route}"] += 1
            if not self._limit.take():
                self.throttled[f"{method} {route}"] += 1
                return 403, _error_body(
                    403,
                    "rateLimitExceeded",
                    "Exceeded rate limits: too many api requests per user per method",
                )
            injected = self._injected_failure(route)
            if injected is not None:
                return injected
            try:
                if collection == "queries":
                    answer = self._query_results(method, project, rest)
                else:
                    answer = self._route(method, project, rest, params)
            except _ApiError as error:
                return error.status, _error_body(error.status, error.reason, error.message)
        if route == "jobs" and method == "POST" and self.insert_delay:
            time.sleep(self.insert_delay)  # the job exists; the caller has not seen the answer
        if route == "jobs/{id}/cancel" and self.cancel_delay:
            time.sleep(self.cancel_delay)  # the cancel is taken; the caller has not seen the answer
        return 200, answer

    def _injected_failure(self, route: str) -> tuple[int, Any] | None:
        until, outage_status, outage_path = self._outage
        if time.monotonic() < until and route.endswith(outage_path):
            status: int | None = outage_status
        elif self._fail_next and (
            self._fail_next[0][1] is None or route.endswith(self._fail_next[0][1] or "")
        ):
            status = self._fail_next.pop(0)[0]
        else:
            status = None
        if status is None:
            return None
        reason = "rateLimitExceeded" if status in (403, 429) else "backendError"
        return status, _error_body(status, reason, "The service is temporarily unavailable.")

    def _find(self, project: str, job_id: str) -> _Job:
        job = self._jobs.get((project, job_id))
        if job is None:
            raise _ApiError(404, "notFound", f"Not found: Job {project}:{self.location}.{job_id}")
        return job

    def _route(self, method: str, project: str, rest: list[str], params: dict[str, Any]) -> dict[str, Any]:
        if not rest:
            if method == "POST":
                return self._insert(project, params)
            if method == "GET":
                return self._list(project, params)
        elif len(rest) == 1 and method == "GET":
            job = self._find(project, rest[0])
            self.polls.setdefault(job.job_id, []).append(time.time())
            return self._job_json(job)
        elif rest[1:] == ["cancel"] and method == "POST":
            job = self._find(project, rest[0])
            self.cancels.append(job.job_id)
            if self._state(job) != DONE and job.cancel_at is None:
                job.cancel_at = self.now() + self.cancel_seconds
            return {"kind": "bigquery#jobCancelResponse", "job": self._job_json(job)}
        raise _ApiError(404, "notFound", f"No API found for {method} jobs/{'/'.join(rest)}")

    def _query_results(self, method: str, project: str, rest: list[str]) -> dict[str, Any]:
        """``jobs.getQueryResults``, which the client's ``QueryJob.result()`` waits on: whether the query
        has ended, and no rows (the emulated queries write their results, they return none)."""
        if method != "GET" or len(rest) != 1:
            raise _ApiError(404, "notFound", f"No API found for {method} queries/{'/'.join(rest)}")
        job = self._find(project, rest[0])
        self.polls.setdefault(job.job_id, []).append(time.time())
        done = self._state(job) == DONE
        answer: dict[str, Any] = {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": {"projectId": job.project, "jobId": job.job_id, "location": job.location},
            "jobComplete": done,
        }
        if done:
            answer.update(totalRows="0", rows=[], schema={"fields": []})
        return answer

    def _insert(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        reference = body.get("jobReference") or {}
        job_id = str(reference.get("jobId") or "")
        configuration = body.get("configuration")
        if not job_id or len(job_id) > 1024 or not all(c.isalnum() or c in "_-" for c in job_id):
            raise _ApiError(
                400, "invalid", f"Invalid job ID {job_id!r}: letters, digits, _ and - only, 1 to 1024"
            )
        if not isinstance(configuration, dict) or not configuration:
            raise _ApiError(400, "invalid", "Job configuration must be provided")
        location = str(reference.get("location") or self.location)
        if (project, job_id) in self._jobs:
            self.duplicates.append(job_id)
            raise _ApiError(409, "duplicate", f"Already Exists: Job {project}:{location}.{job_id}")
        script = self._queue.pop(0) if self._queue else self.default_script
        created = self.now()
        job = _Job(
            project,
            job_id,
            location,
            dict(configuration),
            created,
            int(self._ms(created)),
            next(self._order),
            script,
        )
        self._jobs[(project, job_id)] = job
        return self._job_json(job)

    def _list(self, project: str, params: dict[str, Any]) -> dict[str, Any]:
        jobs = sorted(
            (j for j in self._jobs.values() if j.project == project), key=lambda j: j.seq, reverse=True
        )
        wanted = params.get("stateFilter")
        if wanted:
            states = {wanted.upper()} if isinstance(wanted, str) else {str(s).upper() for s in wanted}
            jobs = [j for j in jobs if self._state(j) in states]
        limit = min(int(params.get("maxResults") or MAX_PAGE), MAX_PAGE)
        offset = int(params.get("pageToken") or 0)
        page = jobs[offset : offset + limit]
        answer: dict[str, Any] = {
            "kind": "bigquery#jobList",
            "jobs": [{**self._job_json(j), "state": self._state(j)} for j in page],
        }
        if offset + limit < len(jobs):
            answer["nextPageToken"] = str(offset + limit)
        return answer


__all__ = ["BigQueryEmulator", "JobScript", "CANCEL_SECONDS", "EMULATOR_HOST_VARIABLE"]
