"""``resumable doctor``: checks the set-up a resumable task depends on, and says what to change.

Each check prints one line: ``ok``, ``warn`` (works, but something a user would want to know) or
``FAIL`` (a lost worker would not be survived, or records cannot be kept), with the fix.
The command exits 1 when a check failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

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
    from resumable.records import NATIVE_STORE_SINCE, airflow_version

    airflow = airflow_version()
    if airflow is None:
        return [Finding(FAIL, "Airflow", "apache-airflow is not installed here: pip install apache-airflow")]
    if airflow.release >= NATIVE_STORE_SINCE.release:
        return [Finding(OK, f"Airflow {airflow}", "tasks have task_state_store: the auto backend uses it")]
    return [
        Finding(
            WARN,
            f"Airflow {airflow}",
            f"no task_state_store before {NATIVE_STORE_SINCE}: the auto backend uses sql; set [resumable] "
            "sql_alchemy_conn to a database every worker reaches (PostgreSQL with more than one machine)",
        )
    ]


def check_backend() -> list[Finding]:
    """Which backend the tasks use (what ``auto`` chose, and why), and whether it answers from here."""
    from resumable import config
    from resumable.errors import StateBackendError
    from resumable.records import NATIVE_STORE_SINCE, ApiSource, airflow_version, resolve_backend
    from resumable.state import BACKENDS, SqlBackend

    name, why = resolve_backend()
    if name not in BACKENDS:
        return [Finding(FAIL, "[resumable] state_backend", f"{name!r} is not one of {', '.join(BACKENDS)}")]
    if name == "memory":
        return [Finding(FAIL, "[resumable] state_backend", "memory keeps records in one process: tests only")]
    chosen = Finding(OK, f"state backend {name}", f"chosen by {why}")
    if name == "airflow":
        airflow = airflow_version()
        if airflow is None or airflow.release < NATIVE_STORE_SINCE.release:
            chosen.level = FAIL
            chosen.detail = (
                f"{why}, but tasks have task_state_store only from Airflow {NATIVE_STORE_SINCE}: every "
                "resumable task would fail before submitting; set [resumable] state_backend to sql (or auto)"
            )
            return [chosen]
        source = ApiSource(config.api_base_url())
        try:
            source.check()
        except StateBackendError as error:
            return [
                chosen,
                Finding(
                    WARN,
                    "state backend airflow: the API server",
                    f"does not answer from here ({error}); tasks reach their task_state_store through "
                    "the API server's Execution API, and `resumable state` needs its REST API: run it where "
                    "[api] base_url is reachable, or pass --api-url",
                ),
            ]
        return [chosen, Finding(OK, "state backend airflow: the API server", f"{source.describe()} answers")]
    url = config.sql_alchemy_conn()
    backend = SqlBackend(url, auto_purge=False)
    try:
        backend.check()
    except StateBackendError as error:
        return [chosen, Finding(FAIL, "state backend sql: the database", str(error))]
    findings = [chosen, Finding(OK, "state backend sql: the database", f"{backend.describe()} answers")]
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
        for task in dag.tasks:
            cls = operator_class(task)
            if not (isinstance(cls, type) and issubclass(cls, ResumableMixin)):
                continue
            if not _option(task, "resumable", True):
                continue
            count += 1
            where = f"{dag_id}.{task.task_id}" + (" (mapped)" if _is_mapped(task) else "")
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


def _is_mapped(task: Any) -> bool:
    """A ``MappedOperator`` (``.partial().expand()``): one definition for many task instances."""
    return bool(getattr(task, "_is_mapped", False)) and hasattr(task, "partial_kwargs")


def operator_class(task: Any) -> Any:
    """The class a task runs as: its own, or a mapped task's ``operator_class``."""
    return task.operator_class if _is_mapped(task) else type(task)


def _option(task: Any, name: str, default: Any) -> Any:
    """An operator argument: a task's attribute, or a mapped task's ``partial()``/``expand()`` argument."""
    if not _is_mapped(task):
        return getattr(task, name, default)
    if name in task.partial_kwargs:
        return task.partial_kwargs[name]
    expanded = getattr(_expand_input(task), "value", None)
    return True if isinstance(expanded, dict) and name in expanded else default


def _expand_input(task: Any) -> Any:
    getter = getattr(task, "_get_specified_expand_input", None)
    return getter() if callable(getter) else task.expand_input


def _dag_bag(dags_folder: str | None) -> Any:
    from resumable._compat import DagBag

    return DagBag(dag_folder=dags_folder or _conf().get("core", "dags_folder"))


def load_task(dag_id: str, task_id: str, dags_folder: str | None = None, map_index: int = -1) -> Any:
    """The task ``task_id`` of ``dag_id`` as its DAG file defines it (to call its ``cancel_job``).

    A mapped task is unmapped for ``map_index``: with its ``expand()`` arguments when they are
    given in the DAG file, with its ``partial()`` arguments alone when they come from another task
    (what ``cancel_job`` needs, a connection id and a region, is a ``partial()`` argument as a rule).
    """
    from resumable.errors import StateBackendError
    from resumable.mixin import ResumableMixin

    bag = _dag_bag(dags_folder)
    dag = bag.dags.get(dag_id)
    where = f"{dag_id}.{task_id}" + (f"[{map_index}]" if map_index >= 0 else "")
    if dag is None or task_id not in dag.task_dict:
        raise StateBackendError(
            f"Task {dag_id}.{task_id} is not in the DAGs of {bag.dag_folder}; its job was not cancelled and "
            "the record was kept. Run this where the DAG files are, or cancel the job in its own console "
            "and use --leave-job."
        )
    task = dag.task_dict[task_id]
    if _is_mapped(task):
        task = _unmap(task, map_index, where)
    if not isinstance(task, ResumableMixin):
        raise StateBackendError(
            f"Task {where} is a {type(task).__name__}, not a resumable operator, so it cannot cancel "
            "the job; the job was not cancelled and the record was kept. Cancel the job in its own console "
            "and use --leave-job."
        )
    return task


def _unmap(task: Any, map_index: int, where: str) -> Any:
    from resumable.errors import StateBackendError

    def cannot(why: str) -> StateBackendError:
        return StateBackendError(
            f"Task {where} is mapped and {why}; its job was not cancelled and the record was kept. "
            "Cancel the job in its own console and use --leave-job."
        )

    if map_index < 0:
        raise cannot("the record names no map index (pass --map-index)")
    try:
        # expand() arguments given in the DAG file resolve without a run; XCom ones do not.
        ti = SimpleNamespace(map_index=map_index, _upstream_map_indexes={})
        expanded, _ = _expand_input(task).resolve({"ti": ti})
    except Exception:  # noqa: BLE001 - arguments from other tasks: fall back to partial() alone
        expanded = {}
    try:
        return task.unmap(expanded)
    except Exception as error:  # noqa: BLE001 - say why, keep the record
        raise cannot(f"cannot be built outside a run ({type(error).__name__}: {error})") from error


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
