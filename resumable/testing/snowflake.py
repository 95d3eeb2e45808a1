"""A loopback Snowflake SQL API (v2) emulator: the statement calls of the snowflake provider's real
``SnowflakeSqlApiHook``, served by a real HTTP server.

A request (``POST /api/v2/statements``) runs its SQL asynchronously and answers ``202`` with a
statement handle; ``GET /api/v2/statements/{handle}`` answers ``202`` while it runs, ``200`` once it
succeeded and ``422`` with Snowflake's error body once it failed or was cancelled (``POST
.../cancel``). A request that holds several statements (``MULTI_STATEMENT_COUNT`` other than 1) is
one execution with one handle, as on the service. As on the service, a request repeated with the
same ``requestId`` and ``retry=true`` executes nothing and answers with the first execution's
handle; repeated without ``retry=true`` it runs again. Faults: a held answer to the request
(:attr:`SnowflakeEmulator.submit_delay`: the statement runs, the caller has not seen its handle), a
held cancel answer (:attr:`SnowflakeEmulator.cancel_delay`), failed calls
(:meth:`~SnowflakeEmulator.fail_next`, :meth:`~SnowflakeEmulator.outage`), and the service's ``429``
throttling (:meth:`~resumable.testing._base.Emulator.rate_limit`).

The hook builds every address as ``https://{account}.snowflakecomputing.com/api/v2/...`` from the
connection's account and has no option for another host, so a loopback server cannot be reached as
it is: :meth:`SnowflakeEmulator.patch_hook` changes only that, the hook's ``account_identifier``
(the base of its addresses, sync and async), for this emulator's account; every other line of the
hook (its requests, retries, headers and parsing) runs as shipped. The connection authenticates with
a programmatic access token, which the emulator checks.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from resumable.testing._base import LoopbackEmulator

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
#: Emulated seconds between a cancel and the statement showing cancelled.
CANCEL_SECONDS = 1.0
#: The path every statement call is under (after the account's host).
API = "/api/v2/statements"


@dataclass(frozen=True)
class StatementScript:
    """How one execution behaves: ``duration`` seconds running (``math.inf``: until cancelled), then
    ``outcome`` (``"success"`` or ``"error"``)."""

    outcome: str = "success"
    duration: float = 10.0

    def __post_init__(self) -> None:
        if self.outcome not in ("success", "error"):
            raise ValueError(f"outcome must be 'success' or 'error', not {self.outcome!r}")


@dataclass
class _Execution:
    handle: str
    request_id: str
    statement: str
    statement_count: int
    created: float
    script: StatementScript
    cancel_at: float | None = None


class SnowflakeEmulator(LoopbackEmulator):
    """The Snowflake SQL API calls ``SnowflakeSqlApiHook`` makes, served on 127.0.0.1 at a free port.

    Use it as a context manager (or :meth:`start` / :meth:`stop`), :meth:`use_as` to make it an
    Airflow connection and :meth:`patch_hook` to let the hook reach it. Executions behave as
    :meth:`script_next` says, then as ``default_script``.
    """

    server_name = "snowflake-emulator"
    default_conn_id = "snowflake_default"

    def __init__(
        self,
        *,
        speed: float = 1.0,
        manual_clock: bool = False,
        account: str = "emulated-account",
        token: str = "emulator-pat",
        default_script: StatementScript | None = None,
    ) -> None:
        super().__init__(speed=speed, manual_clock=manual_clock)
        self.account, self.token = account, token
        self.default_script = default_script or StatementScript()
        #: Real seconds every API call waits before it is answered.
        self.latency = 0.0
        self.reset()

    def reset(self) -> None:
        """Forget every execution, script, fault and counter (the rate limit stays, refilled)."""
        with self._lock:
            self._restart_clock()
            self._limit.refill()
            self._executions: dict[str, _Execution] = {}
            self._by_request: dict[str, str] = {}
            self._order = itertools.count(1)
            self._queue: list[StatementScript] = []
            self._fail_next: list[tuple[int, str | None]] = []
            self._outage: tuple[float, int, str] = (0.0, 503, "")
            #: Calls per ``"METHOD route"``: ``"POST statements"``, ``"GET statements/{handle}"``,
            #: ``"POST statements/{handle}/cancel"``.
            self.calls: Counter[str] = Counter()
            #: Calls the rate limit refused with 429, per ``"METHOD route"`` (also in :attr:`calls`).
            self.throttled: Counter[str] = Counter()
            #: Requests answered with an earlier execution (same ``requestId`` and ``retry=true``).
            self.retried: list[str] = []
            #: Handles a cancel was asked for, one entry per request.
            self.cancels: list[str] = []
            #: Real seconds a request holds its answer after its execution started.
            self.submit_delay = 0.0
            #: Real seconds a cancel holds its answer after taking it (a stalled control plane).
            self.cancel_delay = 0.0
            #: Emulated seconds a statement cancelled from now on takes to show cancelled.
            self.cancel_seconds = CANCEL_SECONDS
            #: Wall-clock times of the status reads per handle.
            self.polls: dict[str, list[float]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._live_server().port}"

    def connection(self) -> dict[str, Any]:
        """The Airflow connection (as a dict) for ``SnowflakeSqlApiHook``: a programmatic access token."""
        return {
            "conn_type": "snowflake",
            "login": "airflow",
            "password": self.token,
            "schema": "public",
            "extra": {
                "account": self.account,
                "database": "analytics",
                "warehouse": "transforming",
                "role": "transformer",
                "authenticator": "programmatic_access_token",
            },
        }

    @contextlib.contextmanager
    def patch_hook(self) -> Iterator[SnowflakeEmulator]:
        """While the block runs, ``SnowflakeSqlApiHook`` reaches this emulator (:func:`route_hook_to`)."""
        undo = route_hook_to(self.url, self.account)
        try:
            yield self
        finally:
            undo()

    # ---- scripts and faults ---------------------------------------------------------------------

    def script_next(self, *scripts: StatementScript, replace: bool = False) -> None:
        """The next executions behave like these, in order; ``replace=True`` drops unused ones first."""
        with self._lock:
            if replace:
                self._queue.clear()
            self._queue.extend(scripts)

    def fail_next(self, n: int, status: int = 503, path: str | None = None) -> None:
        """The next ``n`` calls (whose route ends with ``path``, if given: ``"statements"`` a request,
        ``"{handle}"`` a status read, ``"cancel"`` a cancel) fail with ``status``."""
        with self._lock:
            self._fail_next.extend([(status, path)] * n)

    def outage(self, seconds: float, status: int = 503, path: str = "") -> None:
        """Calls whose route ends with ``path`` fail with ``status`` for ``seconds`` real seconds."""
        with self._lock:
            self._outage = (time.monotonic() + seconds, status, path)

    # ---- what a test observes -------------------------------------------------------------------

    @property
    def handles(self) -> list[str]:
        """Handles of every execution, oldest first."""
        with self._lock:
            return list(self._executions)

    def execution(self, handle: str) -> dict[str, Any]:
        """What the emulator knows of one execution: its request id, statement, count and state."""
        with self._lock:
            run = self._executions[handle]
            return {
                "request_id": run.request_id,
                "statement": run.statement,
                "statement_count": run.statement_count,
                "state": self._state(run),
            }

    def state_of(self, handle: str) -> str:
        """``running``, ``succeeded``, ``failed`` or ``cancelled``."""
        with self._lock:
            return self._state(self._executions[handle])

    def active(self) -> list[str]:
        with self._lock:
            return [h for h, run in self._executions.items() if self._state(run) == RUNNING]

    def compute_seconds(self, handle: str) -> float:
        """Emulated seconds the execution has run so far."""
        with self._lock:
            run = self._executions[handle]
            return max(0.0, min(self._end(run), self.now()) - run.created)

    # ---- the service ----------------------------------------------------------------------------

    def _end(self, run: _Execution) -> float:
        end = run.created + run.script.duration
        return end if run.cancel_at is None else min(end, run.cancel_at)

    def _state(self, run: _Execution) -> str:
        end = self._end(run)
        if self.now() < end or not math.isfinite(end):
            return RUNNING
        if run.cancel_at is not None and end == run.cancel_at:
            return CANCELLED
        return SUCCEEDED if run.script.outcome == "success" else FAILED

    def handle(self, method: str, path: str, params: dict[str, Any], auth: str | None) -> tuple[int, Any]:
        """Answer one request; returns (HTTP status, JSON body). The path is ``/{account}.snowflake
        computing.com/api/v2/statements[/{handle}[/cancel]]`` (see :meth:`patch_hook`)."""
        host = f"/{self.account}.snowflakecomputing.com"
        if not path.startswith(host + API):
            return 404, _error("390404", f"No API found for {method} {path}")
        parts = [p for p in path[len(host + API) :].split("/") if p]
        route = "/".join(["statements", *(["{handle}"] if parts else []), *parts[1:]])
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.calls[f"{method} {route}"] += 1
            if not self._limit.take():
                self.throttled[f"{method} {route}"] += 1
                return 429, _error("390429", "Too many requests. Please retry the request later.")
            if auth != f"Bearer {self.token}":
                return 401, _error("390303", "Invalid OAuth access token.")
            injected = self._injected_failure(route)
            if injected is not None:
                return injected
            if method == "POST" and not parts:
                status, body = self._submit(params)
            elif method == "GET" and len(parts) == 1:
                status, body = self._status(parts[0])
            elif method == "POST" and parts[1:] == ["cancel"]:
                status, body = self._cancel(parts[0])
            else:
                return 404, _error("390404", f"No API found for {method} {path}")
        if route == "statements" and self.submit_delay:
            time.sleep(self.submit_delay)  # the statement runs; the caller has not seen its handle
        if route == "statements/{handle}/cancel" and self.cancel_delay:
            time.sleep(self.cancel_delay)  # the cancel is taken; the caller has not seen the answer
        return status, body

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
        return status, _error("390503", "The service is temporarily unavailable.")

    def _submit(self, params: dict[str, Any]) -> tuple[int, Any]:
        request_id = str(params.get("requestId") or "")
        statement = params.get("statement")
        try:
            uuid.UUID(request_id)
        except ValueError:
            return 400, _error("391902", f"Invalid requestId {request_id!r}: a UUID is required.")
        if not isinstance(statement, str) or not statement.strip():
            return 400, _error("391903", "The statement is required.")
        retry = str(params.get("retry", "")).lower() == "true"
        if retry and request_id in self._by_request:
            self.retried.append(request_id)
            return 202, _running(self._by_request[request_id])
        count = int((params.get("parameters") or {}).get("MULTI_STATEMENT_COUNT", 1) or 0)
        script = self._queue.pop(0) if self._queue else self.default_script
        handle = f"01b{next(self._order):05d}-0000-{uuid.uuid4().hex[:4]}-0000-{uuid.uuid4().hex[:12]}"
        self._executions[handle] = _Execution(handle, request_id, statement, count, self.now(), script)
        self._by_request.setdefault(request_id, handle)
        return 202, _running(handle)

    def _status(self, handle: str) -> tuple[int, Any]:
        run = self._executions.get(handle)
        if run is None:
            return 404, _error("000709", f"Statement {handle} not found")
        self.polls.setdefault(handle, []).append(time.time())
        state = self._state(run)
        if state == RUNNING:
            return 202, _running(handle)
        if state == SUCCEEDED:
            body: dict[str, Any] = {
                "code": "090001",
                "sqlState": "00000",
                "message": "Statement executed successfully.",
                "statementHandle": handle,
                "statementStatusUrl": f"{API}/{handle}",
                "resultSetMetaData": {"numRows": 0, "format": "jsonv2", "rowType": []},
                "data": [],
            }
            if run.statement_count != 1:
                body["statementHandles"] = [f"{handle}-{n}" for n in range(max(run.statement_count, 1))]
            return 200, body
        if state == CANCELLED:
            return 422, {
                **_error("000604", "SQL execution canceled"),
                "sqlState": "57014",
                "statementHandle": handle,
            }
        return 422, {
            **_error("000904", "SQL compilation error: error line 1 at position 7 invalid identifier 'X'"),
            "sqlState": "42000",
            "statementHandle": handle,
        }

    def _cancel(self, handle: str) -> tuple[int, Any]:
        run = self._executions.get(handle)
        if run is None:
            return 404, _error("000709", f"Statement {handle} not found")
        self.cancels.append(handle)
        if self._state(run) == RUNNING and run.cancel_at is None:
            run.cancel_at = self.now() + self.cancel_seconds
        return 200, {"code": "000604", "message": "Statement aborted.", "statementHandle": handle}


def route_hook_to(url: str, account: str) -> Callable[[], None]:
    """Make ``SnowflakeSqlApiHook`` reach the emulator at ``url`` for the account ``account``: the only
    change is its ``account_identifier`` (``https://{account}``, the base of every address it builds,
    sync and async), for that account. Returns what undoes it. The crash DAGs call it in the workers,
    where a test's context manager does not reach."""
    from airflow.providers.snowflake.hooks.sql_api import SnowflakeSqlApiHook

    original = SnowflakeSqlApiHook.account_identifier
    secure, plain = f"https://{account}", f"{url}/{account}"

    def account_identifier(hook: Any) -> str:
        found = original.fget(hook)  # type: ignore[attr-defined]
        return plain if found == secure else str(found)

    SnowflakeSqlApiHook.account_identifier = property(account_identifier)  # type: ignore[assignment,method-assign]

    def undo() -> None:
        SnowflakeSqlApiHook.account_identifier = original  # type: ignore[method-assign]

    return undo


def _error(code: str, message: str) -> dict[str, Any]:
    """Snowflake's error body."""
    return {"code": code, "message": message}


def _running(handle: str) -> dict[str, Any]:
    return {
        "code": "333334",
        "message": "Asynchronous execution in progress. Use provided query id to perform query monitoring "
        "and management.",
        "statementHandle": handle,
        "statementStatusUrl": f"{API}/{handle}",
    }


__all__ = ["CANCEL_SECONDS", "SnowflakeEmulator", "StatementScript", "route_hook_to"]
