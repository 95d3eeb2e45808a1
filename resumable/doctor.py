"""``resumable doctor``: checks the set-up a resumable task depends on, and says what to change.

Each check prints one line: ``ok``, ``warn`` (works, but something a user would want to know) or
``FAIL`` (a lost worker would not be survived, or records cannot be kept), with the fix.
The command exits 1 when a check failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import version
from typing import Any

from packaging.version import Version

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass
class Finding:
    level: str
    what: str
    detail: str


def _conf() -> Any:
    from airflow.configuration import conf

    return conf


def check_airflow() -> list[Finding]:
    airflow = Version(version("apache-airflow"))
    if airflow >= Version("3.3"):
        return [Finding(OK, f"Airflow {airflow}", "tasks have task_state_store: the auto backend uses it")]
    return [
        Finding(
            WARN,
            f"Airflow {airflow}",
            "no task_state_store before 3.3: the auto backend uses sql; set [resumable] sql_alchemy_conn "
            "to a database every worker reaches (PostgreSQL with more than one machine)",
        )
    ]


def check_backend() -> list[Finding]:
    from resumable import config
    from resumable.errors import StateBackendError
    from resumable.state import BACKENDS, SqlBackend

    name = config.state_backend_name()
    if name not in BACKENDS:
        return [Finding(FAIL, "[resumable] state_backend", f"{name!r} is not one of {', '.join(BACKENDS)}")]
    if name == "memory":
        return [Finding(FAIL, "[resumable] state_backend", "memory keeps records in one process: tests only")]
    airflow_native = Version(version("apache-airflow")) >= Version("3.3")
    if name == "airflow" or (name == "auto" and airflow_native):
        return [Finding(OK, f"state backend {name}", "records live in Airflow's task_state_store")]
    url = config.sql_alchemy_conn()
    backend = SqlBackend(url)
    try:
        backend.check()
    except StateBackendError as error:
        return [Finding(FAIL, f"state backend {name} (sql)", str(error))]
    findings = [Finding(OK, f"state backend {name} (sql)", f"{backend.describe()} answers")]
    executor = str(_conf().get("core", "executor", fallback="")).split(",")[0]
    if url.startswith("sqlite") and executor not in ("LocalExecutor", "SequentialExecutor", ""):
        findings.append(
            Finding(
                FAIL,
                "sql backend on SQLite",
                f"with {executor} the workers run on other machines and cannot share a SQLite file: set "
                "[resumable] sql_alchemy_conn to PostgreSQL or MySQL",
            )
        )
    return findings


def check_heartbeat() -> list[Finding]:
    timeout = _conf().getint("scheduler", "task_instance_heartbeat_timeout", fallback=300)
    if timeout > 600:
        return [
            Finding(
                WARN,
                f"[scheduler] task_instance_heartbeat_timeout = {timeout} s",
                "a SIGKILLed worker is noticed only after this long, and only then does the retry "
                "reattach; 300 s or less is usual",
            )
        ]
    return [
        Finding(OK, f"[scheduler] task_instance_heartbeat_timeout = {timeout} s", "a lost worker is noticed")
    ]


def check_store_settings() -> list[Finding]:
    from resumable import config

    conf = _conf()
    findings = []
    clear = conf.getboolean("state_store", "clear_on_success", fallback=False)
    findings.append(
        Finding(
            OK,
            f"[state_store] clear_on_success = {clear}",
            "records are deleted when a task succeeds (a clear then submits again, as it should)"
            if clear
            else "records stay after success until they expire (`airflow state-store clean`); "
            "`resumable state list` can show them",
        )
    )
    days = config.state_retention_days()
    level = OK if days >= 1 else FAIL
    findings.append(
        Finding(
            level,
            f"[resumable] state_retention_days = {days}",
            "records outlive every retry delay shorter than this" if days >= 1 else "set it to 1 or more",
        )
    )
    return findings


def check_dags(dags_folder: str | None) -> list[Finding]:
    from resumable import config
    from resumable.mixin import ResumableMixin

    bag = _dag_bag(dags_folder)
    findings = [
        Finding(FAIL, f"import error in {path}", str(error).strip().splitlines()[-1])
        for path, error in bag.import_errors.items()
    ]
    retention = timedelta(days=config.state_retention_days())
    count = 0
    for dag_id, dag in sorted(bag.dags.items()):
        for candidate in dag.tasks:
            if not isinstance(candidate, ResumableMixin) or not candidate.resumable:
                continue
            task: Any = candidate
            count += 1
            where = f"{dag_id}.{task.task_id}"
            if not task.retries:
                findings.append(
                    Finding(
                        FAIL,
                        where,
                        "retries=0: a lost worker fails the task for good and nothing reattaches; "
                        "set retries=1 or more",
                    )
                )
            delay = task.retry_delay if isinstance(task.retry_delay, timedelta) else timedelta(0)
            if task.retry_exponential_backoff and task.max_retry_delay:
                delay = task.max_retry_delay
            if delay >= retention:
                findings.append(
                    Finding(
                        FAIL,
                        where,
                        f"retry_delay {delay} is not shorter than [resumable] state_retention_days "
                        f"({retention.days} d): the record may expire before the retry reads it",
                    )
                )
    findings.append(Finding(OK if count else WARN, "resumable tasks", f"{count} found in {bag.dag_folder}"))
    return findings


def _dag_bag(dags_folder: str | None) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=dags_folder or _conf().get("core", "dags_folder"))


def load_task(dag_id: str, task_id: str, dags_folder: str | None = None) -> Any:
    """The task ``task_id`` of ``dag_id`` as its DAG file defines it (to call its ``cancel_job``)."""
    from resumable.errors import StateBackendError

    bag = _dag_bag(dags_folder)
    dag = bag.dags.get(dag_id)
    if dag is None or task_id not in dag.task_dict:
        raise StateBackendError(
            f"Task {dag_id}.{task_id} is not in the DAGs of {bag.dag_folder}; its job was not cancelled and "
            "the record was kept. Run this where the DAG files are, or cancel the job in its own console "
            "and use --leave-job."
        )
    return dag.task_dict[task_id]


def run_doctor(dags_folder: str | None = None) -> int:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    style = {OK: "green", WARN: "yellow", FAIL: "red"}
    findings: list[Finding] = []
    for check in (check_airflow, check_backend, check_heartbeat, check_store_settings):
        findings += check()
    findings += check_dags(dags_folder)
    for f in findings:
        console.print(
            f"[{style[f.level]}]{f.level:>4}[/] {escape(f.what)}: {escape(f.detail)}", highlight=False
        )
    failed = sum(1 for f in findings if f.level == FAIL)
    console.print(f"\n{failed} problem(s) to fix." if failed else "\nNothing to fix.")
    return 1 if failed else 0
