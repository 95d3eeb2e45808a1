"""The FastAPI app behind the "Resumable jobs" page, mounted in Airflow's API server at ``/resumable``.

- ``GET /resumable/``: the page; ``GET /resumable/records``: the same rows as JSON. Both list the
  records of the configured backend (``[resumable] state_backend``, resolved as the CLI resolves
  it) across the DAGs the user may read, filtered by DAG, run, phase and job status.
- ``POST /resumable/clear``: deletes one record, after cancelling its job or leaving it as asked,
  under the rules of ``resumable state clear`` (:mod:`resumable.clearing`). Only for users whom
  Airflow's auth manager lets edit that DAG's task instances; every attempt goes to Airflow's audit
  log (event ``resumable.clear``) with who made it and what came of it.

The user is Airflow's own (``get_user``: the UI's session cookie from Airflow 3.1, a bearer token
on any version), and so are the permissions. Records are read where the tasks write them: the
``sql`` backend's table, or Airflow's task state store in the metadata database (Airflow >= 3.3).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlparse

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel

from resumable import clearing, config
from resumable.errors import StateBackendError
from resumable.job import JobState
from resumable.records import Entry, MetadataSource, PageQuery, SqlSource, find, resolve_backend
from resumable.state import TaskScope

log = logging.getLogger(__name__)

#: The header the page's own script sends with a clear: a form on another site cannot set it.
ACTION_HEADER = "X-Requested-By"
#: Phases the page filters on: a record's phase, or what a stored value is instead.
PHASES = ("submitting", "submitted", "done", "checkpoint", "unusable")

_templates = Environment(
    loader=PackageLoader("resumable.ui", "templates"), autoescape=select_autoescape(default=True)
)


class ClearBody(BaseModel):
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    key: str
    #: What to do with a job that may still run: cancel it first, or leave it as it is.
    job: Literal["cancel", "leave"]


def _get_user() -> Any:
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


def _auth_manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def _may_edit(user: Any, dag_id: str) -> bool:
    """Whether Airflow's auth manager lets ``user`` edit the task instances of ``dag_id``."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return bool(
        _auth_manager().is_authorized_dag(
            method="PUT",
            access_entity=DagAccessEntity.TASK_INSTANCE,
            details=DagDetails(id=dag_id),
            user=user,
        )
    )


def source() -> SqlSource | MetadataSource:
    """Where the tasks of this deployment write their records (the CLI's rule, ``resolve_backend``)."""
    name, why = resolve_backend()
    if name == "sql":
        return SqlSource(config.sql_alchemy_conn())
    if name == "airflow":
        return MetadataSource(config.api_base_url())
    raise StateBackendError(
        f"The state backend is {name!r} ({why}): its records cannot be shown here. "
        "Set [resumable] state_backend to auto, sql or airflow."
    )


def _with_task_states(entries: list[Entry]) -> list[Entry]:
    """Fill in the state of each value's task instance from Airflow's metadata database, where the
    source did not (the sql backend): the clear rules refuse to cancel under a live attempt."""
    missing = [e for e in entries if e.ti_state is None]
    if not missing:
        return entries
    import sqlalchemy as sa
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session

    wanted = {(e.scope.dag_id, e.scope.run_id, e.scope.task_id, e.scope.map_index) for e in missing}
    states: dict[tuple[str, str, str, int], str] = {}
    runs_of: dict[str, set[str]] = {}
    for dag_id, run_id, _, _ in wanted:
        runs_of.setdefault(dag_id, set()).add(run_id)
    with create_session() as session:
        for dag_id, run_ids in runs_of.items():
            query = sa.select(TI.dag_id, TI.run_id, TI.task_id, TI.map_index, TI.state).where(
                TI.dag_id == dag_id, TI.run_id.in_(sorted(run_ids))
            )
            for row in session.execute(query):
                scope = (row.dag_id, row.run_id, row.task_id, row.map_index)
                if scope in wanted and row.state is not None:
                    states[scope] = str(getattr(row.state, "value", row.state))
    for e in missing:
        e.ti_state = states.get((e.scope.dag_id, e.scope.run_id, e.scope.task_id, e.scope.map_index))
    return entries


def task_instance_path(entry: Entry) -> str:
    """The path of the task instance's page in Airflow's UI."""
    base = urlparse(config.api_base_url()).path.rstrip("/")
    s = entry.scope
    dag, run, task = (quote(part, safe="") for part in (s.dag_id, s.run_id, s.task_id))
    path = f"{base}/dags/{dag}/runs/{run}/tasks/{task}"
    return path + (f"/mapped/{s.map_index}" if s.map_index >= 0 else "")


@dataclass
class Filters:
    """What the page (and ``/records``) is asked for: query parameters, each optional."""

    dag_id: str | None = None
    run_id: str | None = None
    #: A record's phase, ``checkpoint`` or ``unusable`` (:data:`PHASES`).
    phase: str | None = None
    #: The job's last status (a ``JobState`` value).
    status: str | None = None
    #: At most this many rows, the newest.
    limit: int = 500


def _keep(filters: Filters) -> Callable[[Entry], bool] | None:
    """The filters on what is stored (phase, job status), which only Python can apply; ``None``
    when there are none, so that the source's query does all the work."""
    phase, status = filters.phase, filters.status
    if not phase and not status:
        return None

    def keep(e: Entry) -> bool:
        # The phase column of the page (Entry.summary): "unusable" when the value cannot be used.
        if phase and ("unusable" if e.problem else e.phase) != phase:
            return False
        return not status or (e.last_state or "") == status

    return keep


def page_query(filters: Filters, readable: set[str]) -> PageQuery:
    """What the page asks the source for: the DAG and run asked for, of the DAGs ``readable`` by
    the user, newest first, at most ``filters.limit``. The source orders and limits in SQL."""
    dag_id = filters.dag_id or None
    allowed = frozenset(readable) if dag_id is None else frozenset(readable) & {dag_id}
    return PageQuery(
        dag_id=dag_id,
        run_id=filters.run_id or None,
        dag_ids=allowed,
        keep=_keep(filters),
        limit=filters.limit,
    )


def rows(user: Any, filters: Filters) -> dict[str, Any]:
    """What the page shows: the rows (newest first), how many matched, the backend, or the error."""
    try:
        where = source()
        readable = _auth_manager().get_authorized_dag_ids(user=user, method="GET")
        page = where.newest(page_query(filters, readable))
    except StateBackendError as error:
        return {"backend": None, "error": str(error), "rows": [], "matched": 0}
    matched = page.matched
    shown = _with_task_states(page.entries)
    editable = {dag: _may_edit(user, dag) for dag in {e.scope.dag_id for e in shown}}
    out = []
    for e in shown:
        row = e.summary()
        row.update(
            ti_state=e.ti_state,
            ti_url=task_instance_path(e),
            fix=where.fix_command(e.scope, e.key) if e.problem else None,
            job_may_be_active=e.job_may_be_active,
            can_clear=editable[e.scope.dag_id],
        )
        out.append(row)
    return {"backend": where.describe(), "error": None, "rows": out, "matched": matched}


def _audit(user: Any, body: ClearBody, outcome: clearing.Outcome) -> None:
    """One row in Airflow's audit log (and one log line) per clear asked for, whatever came of it."""
    from airflow.models.log import Log
    from airflow.utils.session import create_session

    who = user.get_name()
    extra = {
        "key": body.key,
        "job": body.job,
        "result": outcome.result,
        "said": [f"{s.title}: {s.text}" if s.title else s.text for s in outcome.said],
    }
    log.info(
        "Resumable jobs page: %s asked to clear %r of %s.%s[%s] in run %s (job: %s): %s",
        who,
        body.key,
        body.dag_id,
        body.task_id,
        body.map_index,
        body.run_id,
        body.job,
        outcome.result,
    )
    with create_session() as session:
        session.add(
            Log(
                event="resumable.clear",
                owner=who,
                extra=json.dumps(extra),
                dag_id=body.dag_id,
                run_id=body.run_id,
                task_id=body.task_id,
                map_index=body.map_index,
            )
        )


def _load_task(entry: Entry) -> Any:
    from resumable.doctor import load_task

    return load_task(entry.scope.dag_id, entry.scope.task_id, None, entry.scope.map_index)


def create_app() -> FastAPI:
    app = FastAPI(title="Resumable jobs", docs_url=None, redoc_url=None, openapi_url=None)
    user_dependency = Depends(_get_user())
    filters_dependency = Depends(Filters)

    @app.get("/", response_class=HTMLResponse)
    def page(
        request: Request, user: Any = user_dependency, filters: Filters = filters_dependency
    ) -> HTMLResponse:
        html = _templates.get_template("records.html").render(
            **rows(user, filters),
            user=user.get_name(),
            filters=filters,
            phases=PHASES,
            statuses=tuple(state.value for state in JobState),
            clear_url=request.scope.get("root_path", "") + "/clear",
            action_header=ACTION_HEADER,
        )
        return HTMLResponse(html)

    @app.get("/records")
    def records(user: Any = user_dependency, filters: Filters = filters_dependency) -> JSONResponse:
        view = rows(user, filters)
        return JSONResponse(
            json.loads(json.dumps(view, default=str)), status_code=503 if view["error"] else 200
        )

    @app.post("/clear")
    def clear(request: Request, body: ClearBody, user: Any = user_dependency) -> JSONResponse:
        code, outcome = _clear(request, body, user)
        _audit(user, body, outcome)
        return JSONResponse(
            {"result": outcome.result, "said": [{"title": s.title, "text": s.text} for s in outcome.said]},
            status_code=code,
        )

    return app


def _clear(request: Request, body: ClearBody, user: Any) -> tuple[int, clearing.Outcome]:
    """The HTTP status and the outcome of one clear asked for on the page."""

    def refused(code: int, text: str) -> tuple[int, clearing.Outcome]:
        return code, clearing.Outcome("refused", [clearing.Said(text, "Refused")])

    if request.headers.get(ACTION_HEADER) != "resumable":
        return refused(
            403, f"A clear must come from the page (header {ACTION_HEADER}: resumable). Nothing was changed."
        )
    if not _may_edit(user, body.dag_id):
        return refused(
            403,
            f"{user.get_name()} may not edit the task instances of DAG {body.dag_id!r}, which clearing its "
            "records is. Nothing was changed. Ask for that permission in Airflow.",
        )
    try:
        where = source()
        found = find(where, TaskScope(body.dag_id, body.run_id, body.task_id, body.map_index), body.key)
    except StateBackendError as error:
        return refused(503, str(error))
    if found is None:
        return refused(
            404, f"No record {body.key!r} of {body.dag_id}.{body.task_id} in run {body.run_id}: it is gone."
        )
    entry = _with_task_states([found])[0]
    said = clearing.refusal(entry, where, cancel_job=body.job == "cancel", leave_job=body.job == "leave")
    if said is not None:
        return 409, clearing.Outcome("refused", [said])
    try:
        outcome = clearing.clear(where, entry, cancel_job=body.job == "cancel", load_task=_load_task)
    except StateBackendError as error:
        outcome = clearing.Outcome("not_cancelled", [clearing.Said(str(error), "Not cancelled")])
    return {"done": 200, "refused": 409, "not_cancelled": 502}[outcome.result], outcome
