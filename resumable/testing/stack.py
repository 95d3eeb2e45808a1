"""A real, embedded Airflow for crash tests: API server, scheduler, DAG processor, triggerer, workers.

:class:`AirflowStack` starts Airflow's own commands (``airflow db migrate``, ``airflow api-server``,
``airflow scheduler``, ``airflow dag-processor``, ``airflow triggerer`` and, for the Celery
executor, ``airflow celery worker``) in a temporary AIRFLOW_HOME, with a short heartbeat timeout
so that a killed worker is noticed in seconds, and drives them the way people and machines do:
it triggers DAG runs and marks or clears task instances through the REST API, and sends signals to
the processes that run a task instance (``SIGKILL``, ``SIGTERM``, ``SIGSTOP``/``SIGCONT``).

Nothing here is mocked: the task instances run in real worker processes, read their connections
from the environment (point them at :mod:`resumable.testing.databricks` or
:mod:`resumable.testing.aws`) and keep their records in Airflow's task state store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests
from tenacity import (
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class StackError(RuntimeError):
    """The embedded Airflow did not start, or did not reach an expected state in time."""


#: How many ports a stack tries for its API server when the one it picked is taken before it binds.
PORT_TRIES = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TaskProcesses:
    """The processes running one try of a task instance: the supervisor and the task it forked."""

    ti_id: str
    supervisor: psutil.Process
    task: psutil.Process

    def ended(self, which: str = "task") -> bool:
        """Whether the ``"task"`` or ``"supervisor"`` process has exited (one that waits to be reaped
        counts as exited). A LocalExecutor or Celery worker supervises in its own process and lives on
        after the try: the task process is the one that ends with it."""
        process = self.task if which == "task" else self.supervisor
        try:
            return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    def signal(self, sig: int, which: str = "both") -> None:
        """Send ``sig`` to ``"task"``, ``"supervisor"`` or ``"both"`` (the task first)."""
        targets = {"task": [self.task], "supervisor": [self.supervisor], "both": [self.task, self.supervisor]}
        _signal_all(targets[which], sig)


@dataclass
class AirflowStack:
    """An Airflow started from its own commands in a temporary home; a context manager.

    ``dags`` are files copied into the DAGs folder. ``env`` is added to every process's
    environment (connections as ``AIRFLOW_CONN_*``, ``RESUMABLE_*`` settings). With
    ``executor="CeleryExecutor"`` give ``sql_alchemy_conn`` (PostgreSQL), ``broker_url`` and the
    number of ``celery_workers``.
    """

    dags: Iterable[str | Path] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    executor: str = "LocalExecutor"
    sql_alchemy_conn: str | None = None
    broker_url: str | None = None
    celery_workers: int = 0
    #: Task slots per Celery worker.
    celery_concurrency: int = 4
    heartbeat_timeout: int = 10
    parallelism: int = 8
    home: Path | None = None
    keep_home: bool = False
    boot_timeout: float = 180.0
    #: Seconds a REST API call waits for its answer (see :meth:`api`).
    api_timeout: float = 30.0

    port: int = 0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _made_home: bool = False
    _log_ports: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    _session: requests.Session = field(default_factory=requests.Session)
    _previous_sigterm: Any = None
    #: Children of processes killed alone (``tree=False``), put down with the stack.
    _orphans: list[psutil.Process] = field(default_factory=list)

    # ---- life cycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def airflow_env(self) -> dict[str, str]:
        """The environment every Airflow process of this stack runs with."""
        assert self.home is not None
        conn = self.sql_alchemy_conn or f"sqlite:///{self.home / 'airflow.db'}"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env = {
            **inherited,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": conn,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": "resumable-embedded-airflow-secret",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(self.heartbeat_timeout),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
            # A scheduler that starts after another died resets the task instances the dead one had
            # running (adopt_or_reset_orphaned_tasks) every 10 s instead of every 300 s.
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # [dag_processor] min_file_process_interval stays at its 30 s, though the files never
            # change: with 600 s, Airflow 3.0's scheduler marked a DAG run whose task had succeeded
            # successful only after the next parse of its file, ten minutes later (seen 2026-12-07).
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # XCom values read back through the REST API (Airflow 3.0 refuses ``deserialize`` without it)
            "AIRFLOW__API__ENABLE_XCOM_DESERIALIZE_SUPPORT": "True",
            # Each stack serves its logs on ports of its own, so that stacks can run side by side.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._log_ports[0]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._log_ports[1]),
            **self.env,
        }
        if self.executor == "CeleryExecutor":
            env["AIRFLOW__CELERY__BROKER_URL"] = self.broker_url or "redis://127.0.0.1:6379/0"
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + conn
            env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(self.celery_concurrency)
            # A queue of this stack's own: stacks sharing a broker (parts of a test run, runs on one
            # machine, a message a killed worker left unacknowledged) never take each other's tasks.
            env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] = f"resumable-{self.port}"
        return env

    def start(self) -> AirflowStack:
        if self.home is None:
            self.home, self._made_home = Path(tempfile.mkdtemp(prefix="resumable-airflow-")), True
        (self.home / "dags").mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        for dag in self.dags:
            shutil.copy(dag, self.home / "dags")
        chosen = not self.port  # a port this stack picked, not one it was given
        self.port = self.port or free_port()
        env = self.airflow_env()
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if migrate.returncode:
            raise StackError(
                f"`airflow db migrate` failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}"
            )
        for tries in range(1, PORT_TRIES + 1):
            try:
                self._spawn("api-server", ["api-server", "--port", str(self.port)])
                self._spawn("scheduler", ["scheduler"])
                self._spawn("dag-processor", ["dag-processor"])
                self._spawn("triggerer", ["triggerer"])
                for number in range(1, self.celery_workers + 1):
                    self._spawn(f"celery-worker-{number}", self._celery_worker_args(number))
                self._wait(self._healthy, "the API server to answer", self.boot_timeout)
                return self
            except StackError as error:
                # The port was free when it was picked and taken before the API server bound it (by
                # another stack, or a connection's own port): start again on another one.
                if not chosen or tries == PORT_TRIES or "address already in use" not in str(error):
                    self.stop()
                    raise
                self._stop_processes()
                self.port = free_port()
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _spawn(self, name: str, args: list[str]) -> None:
        assert self.home is not None
        env = self.airflow_env()
        if name.startswith("celery-worker-"):  # workers on one machine need log servers of their own
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
        if name.startswith("triggerer-"):  # and so do more triggerers
            env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(free_port())
        log = open(self.home / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def restart(self, name: str, sig: int = signal.SIGKILL, *, tree: bool = True) -> None:
        """Kill one of the stack's processes (``"triggerer"``, ``"scheduler"``, ...) and start it again.

        A name not running yet is started: ``"triggerer-2"`` adds a second triggerer (with a log
        server port of its own), as a highly available deployment runs. ``tree=False``: see :meth:`kill`."""
        if name in self.processes:
            self.kill(name, sig, tree=tree)
        args = {"api-server": ["api-server", "--port", str(self.port)]}.get(name, [name])
        if name.startswith("triggerer-"):
            args = ["triggerer"]
        if name.startswith("celery-worker-"):
            args = self._celery_worker_args(int(name.rsplit("-", 1)[1]))
        self._spawn(name, args)

    def _celery_worker_args(self, number: int) -> list[str]:
        hostname = f"worker{number}@%h"
        return [
            "celery",
            "worker",
            "--celery-hostname",
            hostname,
            "--concurrency",
            str(self.celery_concurrency),
        ]

    def kill(self, name: str, sig: int = signal.SIGKILL, *, tree: bool = True) -> None:
        """Send ``sig`` to one of the stack's processes and all its children, and reap it.

        ``tree=False`` signals the process alone: a scheduler that dies while the LocalExecutor's
        workers it started go on running their tasks (a scheduler pod lost, its workers elsewhere).
        The killed process's database sessions end with it, as a lost host's do: its forked workers
        inherit the sockets, and a PostgreSQL session they keep open would hold whatever the dead
        process had locked (the pool rows of the scheduler's critical section, say) for as long as
        they live, so that no scheduler queues a task again. The children are stopped with the stack."""
        process = self.processes.pop(name)
        if tree:
            _signal_tree(process.pid, sig)
        else:
            sessions = self._database_sessions(process.pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                self._orphans.extend(psutil.Process(process.pid).children(recursive=True))
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        if not tree:
            self._end_database_sessions(sessions)

    def _database_sessions(self, pid: int) -> list[int]:
        """The local ports of the PostgreSQL connections process ``pid`` holds."""
        conn = self.sql_alchemy_conn
        if conn is None or not conn.startswith("postgresql"):
            return []  # SQLite: a dead process's locks are released with it
        from sqlalchemy.engine import make_url

        server_port = make_url(conn).port or 5432
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            return []
        return [c.laddr.port for c in connections if c.raddr and c.raddr.port == server_port]

    def _end_database_sessions(self, ports: list[int]) -> None:
        """End the PostgreSQL sessions on ``ports`` and wait until their backends are gone.

        ``pg_terminate_backend`` only signals a backend: it releases its locks as it exits, a moment
        later, and a caller that looks at once can still find them held. The wait polls
        ``pg_stat_activity``, whose row a backend drops only after its locks (PostgreSQL 13 and later;
        14's ``pg_terminate_backend(pid, timeout)`` would not serve 13)."""
        if not ports:
            return
        import sqlalchemy as sa

        engine = sa.create_engine(self.sql_alchemy_conn, isolation_level="AUTOCOMMIT")  # type: ignore[arg-type]
        sessions = sa.text(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND client_port = ANY(:ports)"
        )
        try:
            with engine.connect() as conn:
                pids = [row[0] for row in conn.execute(sessions, {"ports": ports})]
                for pid in pids:
                    conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                alive = sa.text("SELECT pid FROM pg_stat_activity WHERE pid = ANY(:pids)")
                left = Retrying(
                    stop=stop_after_delay(30),
                    wait=wait_fixed(0.05),
                    retry=retry_if_result(bool),
                    retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
                )(lambda: [row[0] for row in conn.execute(alive, {"pids": pids})])
                if left:
                    raise RuntimeError(
                        f"PostgreSQL backends {left} of a killed process still run 30 s after"
                        " pg_terminate_backend; the locks they hold are not released"
                    )
        finally:
            engine.dispose()

    def stop(self) -> None:
        self._stop_processes()
        if self._made_home and not self.keep_home and self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)

    def _stop_processes(self) -> None:
        doomed = list(self._orphans)
        for process in self.processes.values():
            doomed.extend(_tree(process.pid))
        _signal_all(doomed, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name, process in list(self.processes.items()):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_tree(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            del self.processes[name]
        # what ignores SIGTERM (the LocalExecutor's idle workers) or lost its parent is killed
        _, alive = psutil.wait_procs(doomed, timeout=max(0.1, deadline - time.monotonic()))
        _signal_all(alive, signal.SIGKILL)
        self._orphans.clear()

    def __enter__(self) -> AirflowStack:
        # A SIGTERM to the process that owns the stack (a CI timeout, `kill`) unwinds through
        # __exit__ like Ctrl-C does, so the Airflow processes do not outlive it.
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None

    def log_tail(self, name: str, lines: int = 60) -> str:
        """The last lines one of the stack's processes wrote (for error messages)."""
        assert self.home is not None
        path = self.home / "logs" / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def diagnosis(self, dag_id: str, run_id: str, task_id: str = "job", lines: int = 25) -> str:
        """What a timed-out wait on a DAG run reports: the task instance as the REST API shows it, whether
        each of the stack's processes still runs, and the last lines each one wrote."""
        parts = []
        try:
            ti = self.task_instance(dag_id, run_id, task_id)
            parts.append(
                "task instance: "
                + ", ".join(
                    f"{key}={ti.get(key)!r}" for key in ("state", "try_number", "hostname", "queued_when")
                )
            )
        except Exception as error:  # noqa: BLE001 - a report of what could be seen, not a check
            parts.append(f"task instance: could not be read ({error})")
        for name, process in self.processes.items():
            status = "running" if process.poll() is None else f"exited with {process.returncode}"
            parts.append(f"--- {name} ({status}), last lines:\n{self.log_tail(name, lines)}")
        return "\n".join(parts)

    def _healthy(self) -> bool:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise StackError(f"`airflow {name}` exited with {process.returncode}:\n{self.log_tail(name)}")
        if not self._listening():  # whatever answers on the port is not this stack's (yet)
            return False
        try:
            return self._session.get(f"{self.url}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def _listening(self) -> bool:
        """Whether this stack's API server (or a process it started) listens on the stack's port. Two
        stacks can pick one free port; the one whose server fails to bind it must not take the
        other's answers for its own (measured: a whole e2e part ran against another stack)."""
        api = self.processes.get("api-server")
        for process in _tree(api.pid) if api is not None else []:
            with contextlib.suppress(psutil.Error):
                for conn in process.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == self.port:
                        return True
        return False

    def _wait(self, check: Callable[[], Any], what: str, timeout: float, interval: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise StackError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    # ---- the REST API ------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v2/<path>``; raises :class:`StackError` with the body on an error status.

        A read (``GET``) whose answer does not come within ``api_timeout`` (30 s) is asked again, up to
        three times: on a loaded machine the embedded API server can stall that long behind a busy
        metadata database (SQLite, the demo's), and a read changes nothing. Other calls are made once."""
        url = f"{self.url}/api/v2/{path.lstrip('/')}"

        def call() -> requests.Response:
            return self._session.request(method, url, timeout=self.api_timeout, **kwargs)

        if method.upper() == "GET":
            response = Retrying(
                retry=retry_if_exception_type((requests.Timeout, requests.ConnectionError)),
                stop=stop_after_attempt(3),
                wait=wait_fixed(1),
                reraise=True,
            )(call)
        else:
            response = call()
        if response.status_code >= 400:
            raise StackError(f"{method} {path} answered {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120) -> None:
        """Wait until the DAG processor has parsed these DAGs; raise with the import errors if not."""
        wanted = set(dag_ids)

        def parsed() -> bool:
            found = {d["dag_id"] for d in self.api("GET", "dags", params={"limit": 1000})["dags"]}
            return wanted <= found

        try:
            self._wait(parsed, f"the DAGs {sorted(wanted)} to be parsed", timeout, interval=1)
        except StackError as error:
            errors = self.api("GET", "importErrors")
            raise StackError(f"{error}; import errors: {errors}") from None

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        """Start a DAG run through the REST API; returns its run id."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return str(self.api("POST", f"dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        return dict(self.api("GET", path))

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}"))

    def wait_for_task(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str] = ("running",),
        try_number: int | None = None,
        timeout: float = 120,
    ) -> dict[str, Any]:
        """Wait until the task instance is in one of ``states`` (and at ``try_number``, if given)."""
        wanted = set(states)

        def reached() -> dict[str, Any] | None:
            ti = self.task_instance(dag_id, run_id, task_id)
            if ti["state"] in wanted and (try_number is None or ti["try_number"] == try_number):
                return ti
            return None

        what = f"{dag_id}.{task_id} in {run_id} to be {sorted(wanted)}"
        try:
            return self._wait(reached, what, timeout)  # type: ignore[no-any-return]
        except StackError as error:
            raise StackError(f"{error}\n{self.diagnosis(dag_id, run_id, task_id)}") from None

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Wait for the DAG run to finish; returns ``"success"`` or ``"failed"``."""

        def finished() -> str | None:
            state = self.dag_run(dag_id, run_id)["state"]
            return state if state in TERMINAL_RUN_STATES else None

        try:
            return str(self._wait(finished, f"DAG run {dag_id}/{run_id} to finish", timeout, interval=1))
        except StackError as error:
            raise StackError(f"{error}\n{self.diagnosis(dag_id, run_id)}") from None

    def mark(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        """What a person does with "Mark as failed/success" in the UI."""
        self.api(
            "PATCH", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", json={"new_state": state}
        )

    def clear(self, dag_id: str, run_id: str, task_ids: list[str]) -> None:
        """What a person does with "Clear" in the UI: the task instances run again in the same DAG run."""
        self.api(
            "POST",
            f"dags/{dag_id}/clearTaskInstances",
            json={"dry_run": False, "task_ids": task_ids, "dag_run_id": run_id, "only_failed": False},
        )

    def token_for(self, username: str, role: str) -> str:
        """A bearer token this stack's API server takes as ``username`` with the simple auth
        manager's ``role`` (``viewer``, ``user``, ``op``, ``admin``), signed by Airflow's own code
        with the stack's secret. It is sent as ``Authorization``, which comes before the admin the
        stack's all-admins mode adds to requests that carry none."""
        code = (
            "from airflow.api_fastapi.app import create_auth_manager\n"
            "from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser\n"
            f"user = SimpleAuthManagerUser(username={username!r}, role={role!r})\n"
            "print(create_auth_manager().generate_jwt(user))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], env=self.airflow_env(), capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise StackError(f"could not sign a token for {username}: {done.stderr[-2000:]}")
        return done.stdout.strip().splitlines()[-1]

    # ---- processes ---------------------------------------------------------------------------

    def task_processes(self, ti_id: str, timeout: float = 60) -> TaskProcesses:
        """The supervisor and task processes of the try whose task-instance id is ``ti_id``."""

        def find() -> TaskProcesses | None:
            title = f"airflow worker -- {ti_id}"
            for process in psutil.process_iter(["cmdline"]):
                cmdline = " ".join(process.info["cmdline"] or [])
                if cmdline.strip() == title:
                    parent = process.parent()
                    if parent is not None:
                        return TaskProcesses(ti_id, parent, process)
            return None

        return self._wait(find, f"the worker process of task instance {ti_id}", timeout, interval=0.2)  # type: ignore[no-any-return]

    def running_task(self, dag_id: str, run_id: str, task_id: str, timeout: float = 120) -> TaskProcesses:
        """Wait until the task instance runs, and return its processes."""
        ti = self.wait_for_task(dag_id, run_id, task_id, ("running",), timeout=timeout)
        return self.task_processes(ti["id"])


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _tree(pid: int) -> list[psutil.Process]:
    """Process ``pid`` and its descendants, children first (none if it is gone)."""
    try:
        root = psutil.Process(pid)
        return [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return []


def _signal_all(processes: Iterable[psutil.Process], sig: int) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(sig)


def _signal_tree(pid: int, sig: int) -> None:
    _signal_all(_tree(pid), sig)


@contextlib.contextmanager
def airflow_stack(**kwargs: Any) -> Iterator[AirflowStack]:
    """``with airflow_stack(dags=[...], env={...}) as stack:``: start, yield, stop."""
    stack = AirflowStack(**kwargs)
    with stack:
        yield stack


@contextlib.contextmanager
def postgres_database(
    server_url: str, prefix: str = "resumable_airflow", keep: bool = False
) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server ``server_url`` reaches, for one stack's
    metadata: yields its URL (give it as ``sql_alchemy_conn``) and drops it on the way out, with
    whatever connections are left (``keep=True`` leaves it, to read after a failure)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url  # SQLAlchemy 1.4 (Airflow 3.0) has no sa.make_url

    server = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        with server.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with server.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()
