"""Reading and deleting records from outside a task: what ``resumable state`` and ``doctor`` use.

Two sources, one per place records live:

- :class:`SqlSource`: the ``sql`` backend's table, through SQLAlchemy;
- :class:`ApiSource`: Airflow's task state store, through the REST API of the API server
  (``/api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/state-store``), with a bearer token,
  a user name and password, or nothing (an API server whose auth manager lets everyone in).

Every key of a task is listed: job records under any ``state_key``, :class:`~resumable.Checkpoint`
values (``checkpoint:…``), and values that cannot be used (not JSON, an unknown schema version),
which are shown with why and the command that clears them, never skipped and never a crash.

:func:`resolve_backend` is the one rule for which backend ``auto`` means outside a task: the
same one the tasks of the installed Airflow write to.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import requests
import sqlalchemy as sa
from packaging.version import Version

from resumable.errors import RecordError, StateBackendError
from resumable.job import JobHandle, JobState
from resumable.record import Phase, Record, not_json_problem
from resumable.state import SqlBackend, TaskScope
from resumable.state.base import cli_clear_hint
from resumable.state.sql import state_table

#: :class:`~resumable.Checkpoint` and :class:`~resumable.DoneSet` keys start with this.
CHECKPOINT_PREFIX = "checkpoint:"
_ENVELOPE = "__resumable_version__"
#: The first Airflow whose tasks have ``task_state_store`` (where ``auto`` means ``airflow``).
NATIVE_STORE_SINCE = Version("3.3")


def airflow_version() -> Version | None:
    """The installed Airflow's version, or ``None`` when it is not installed."""
    try:
        return Version(version("apache-airflow"))
    except PackageNotFoundError:
        return None


def auto_backend() -> tuple[str, str]:
    """What ``auto`` means on this Airflow, and why: the backend the tasks of this Airflow write to."""
    found = airflow_version()
    if found is not None and found.release >= NATIVE_STORE_SINCE.release:
        return "airflow", f"Airflow {found} >= {NATIVE_STORE_SINCE}: tasks have task_state_store"
    named = "Airflow is not installed" if found is None else f"Airflow {found}"
    return "sql", f"{named} < {NATIVE_STORE_SINCE}: tasks have no task_state_store"


def resolve_backend(name: str | None = None) -> tuple[str, str]:
    """The backend ``name`` (default ``[resumable] state_backend``) stands for, and why."""
    from resumable import config

    if name:
        return name, "--backend"
    configured = config.state_backend_name()
    if configured != "auto":
        return configured, "[resumable] state_backend"
    chosen, why = auto_backend()
    return chosen, f"[resumable] state_backend auto; {why}"


@dataclass
class Entry:
    """One stored value of a task (a job record, a checkpoint, or something unusable), as stored.

    ``decode_error`` is set when the stored text is not JSON; ``value`` is then the raw text.
    """

    scope: TaskScope
    key: str
    value: Any
    updated_at: str | None = None
    decode_error: str | None = None
    #: The stored version, where the backend keeps one (``sql``): a delete can be made conditional on it.
    version: int | None = None
    #: The state of the task instance the value belongs to, where the source knows it (the REST API).
    ti_state: str | None = None

    @property
    def is_checkpoint(self) -> bool:
        return self.key.startswith(CHECKPOINT_PREFIX)

    @property
    def kind(self) -> str:
        """``checkpoint`` or ``record``."""
        return "checkpoint" if self.is_checkpoint else "record"

    @property
    def problem(self) -> str | None:
        """Why the value cannot be used (``is not valid JSON (…): …``), or ``None`` when it can."""
        if self.decode_error is not None:
            return not_json_problem(str(self.value), self.decode_error)
        if self.is_checkpoint:
            return None
        return record_problem(self.value)

    @property
    def fields(self) -> dict[str, Any]:
        return self.value if isinstance(self.value, dict) and not self.is_checkpoint else {}

    @property
    def phase(self) -> str:
        if self.is_checkpoint:
            return "checkpoint"
        return str(self.fields.get("phase", "?"))

    @property
    def handle(self) -> JobHandle | None:
        raw = self.fields.get("handle")
        try:
            return JobHandle.from_json(raw) if isinstance(raw, dict) else None
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def last_state(self) -> str | None:
        status = self.fields.get("last_status")
        return str(status.get("state")) if isinstance(status, dict) and status.get("state") else None

    @property
    def job_may_be_active(self) -> bool:
        """True unless the value says the job ended (or names none): a clear could orphan a job.

        A checkpoint names no job. A value that is not a record at all may have been one: it is
        treated as naming a job that may run, so clearing it needs ``--leave-job``.
        """
        if self.is_checkpoint:
            return False
        if self.phase == Phase.DONE.value:
            return False
        if self.phase == Phase.SUBMITTING.value:
            return True
        state = self.last_state
        if state is None or state not in JobState.__members__:
            return True
        return JobState(state).is_active

    def show(self) -> str:
        """The value as stored: JSON, or the raw text when it is not JSON."""
        if self.decode_error is not None:
            return str(self.value)
        return json.dumps(self.value, indent=2, default=str)

    def summary(self) -> dict[str, Any]:
        handle = self.handle
        f = self.fields
        origin = self.value.get("checkpoint") if self.is_checkpoint and isinstance(self.value, dict) else None
        if isinstance(origin, dict):
            f = origin  # the try and lineage that wrote the checkpoint
        return {
            "dag_id": self.scope.dag_id,
            "run_id": self.scope.run_id,
            "task_id": self.scope.task_id,
            "map_index": self.scope.map_index,
            "key": self.key,
            "kind": self.kind,
            "usable": self.problem is None,
            "problem": self.problem,
            "phase": "unusable" if self.problem else self.phase,
            "owner_try": f.get("owner"),
            "lineage": f.get("lineage"),
            "token": f.get("token"),
            "job_id": handle.job_id if handle else None,
            "last_status": self.last_state,
            "stop_reason": f.get("stop_reason"),
            "url": handle.url if handle else None,
            "updated_at": self.updated_at or f.get("updated_at"),
        }


_WHERE = "\x00"
_PROBLEM = re.compile(r"The resumable record \x00 (?P<problem>.*?)\. Nothing was submitted", re.S)


def record_problem(value: Any) -> str | None:
    """Why a stored job record cannot be used by a task (the words of its ``RecordError``), or ``None``.

    ``value`` is decoded JSON (a value that does not decode is an :class:`Entry` with a
    ``decode_error``), so a ``str`` is a JSON string.
    """
    try:
        Record.from_json(value, where=_WHERE, clear_hint="-", decoded=True)
    except RecordError as error:
        found = _PROBLEM.search(str(error))
        return found.group("problem") if found else str(error)
    return None


@dataclass(frozen=True)
class PageQuery:
    """What the "Resumable jobs" page asks a source for: the newest values first, at most ``limit``.

    Newest first is ``updated_at`` descending; values written in the same instant keep the order
    :meth:`Source.entries` lists them in (by run, task, map index, key). The SQL sources order,
    filter and limit in their query; :class:`ApiSource` does it in Python (:func:`page_of`).
    """

    dag_id: str | None = None
    run_id: str | None = None
    #: Only the values of these DAGs (the ones the user may read); of every DAG when ``None``.
    dag_ids: frozenset[str] | None = None
    #: Only the values this says yes to: a filter on what is stored (phase, job status), which a
    #: query cannot see in text that may not even be JSON. Applied in Python to the rows as they
    #: come, newest first: memory holds ``limit`` values, but every row the query matches is read.
    keep: Callable[[Entry], bool] | None = None
    #: At most this many values (none when 0 or less).
    limit: int = 500


@dataclass
class Page:
    """The first values of a :class:`PageQuery`, and how many matched in all."""

    entries: list[Entry]
    matched: int


def page_of(entries: Iterable[Entry], query: PageQuery) -> Page:
    """``query`` answered in Python from ``entries`` (listed in :meth:`Source.entries` order): what
    the page did before the SQL sources learnt to order and limit, and the reference they match."""
    found = [
        e
        for e in entries
        if (query.dag_id is None or e.scope.dag_id == query.dag_id)
        and (query.run_id is None or e.scope.run_id == query.run_id)
        and (query.dag_ids is None or e.scope.dag_id in query.dag_ids)
        and (query.keep is None or query.keep(e))
    ]
    found.sort(key=lambda e: str(e.updated_at or ""), reverse=True)  # stable: ties keep list order
    return Page(found[: max(query.limit, 0)], len(found))


def _sql_page(
    execute: Callable[[Any], Any],
    ordered: Any,
    count: Any,
    query: PageQuery,
    to_entry: Callable[[Any], Entry],
) -> Page:
    """Run the page's ``ordered`` SELECT (newest first) and, without ``keep``, its ``count``.

    Without ``keep`` the database does it all: ``ORDER BY … LIMIT`` for the rows, ``COUNT(*)``
    for how many matched. With ``keep`` the rows stream in that order (no LIMIT: ``keep`` decides
    which count), and only the first ``limit`` kept are held.
    """
    limit = max(query.limit, 0)
    if query.keep is None:
        shown = [to_entry(row) for row in execute(ordered.limit(limit))]
        # Two statements: a write between them can move the count by one value, never below what is shown.
        return Page(shown, max(int(execute(count).scalar_one()), len(shown)))
    kept: list[Entry] = []
    matched = 0
    for row in execute(ordered.execution_options(yield_per=1000)):
        entry = to_entry(row)
        if query.keep(entry):
            matched += 1
            if len(kept) < limit:
                kept.append(entry)
    return Page(kept, matched)


def _page_filters(dag_id: Any, run_id: Any, query: PageQuery) -> list[Any]:
    """The WHERE clauses of ``query`` on the ``dag_id`` and ``run_id`` columns given."""
    where = []
    if query.dag_id is not None:
        where.append(dag_id == query.dag_id)
    if query.run_id is not None:
        where.append(run_id == query.run_id)
    if query.dag_ids is not None:
        where.append(dag_id.in_(sorted(query.dag_ids)))
    return where


class Source(Protocol):
    #: ``sql`` or ``airflow``.
    backend_name: str

    def describe(self) -> str: ...

    def check(self) -> None:
        """Raise :class:`~resumable.errors.StateBackendError` unless the records can be reached now."""

    def fix_command(self, scope: TaskScope, key: str) -> str:
        """The exact ``resumable state clear`` command that deletes ``key`` of ``scope`` here."""

    def entries(
        self, dag_id: str, run_id: str | None, task_id: str | None, map_index: int | None
    ) -> list[Entry]:
        """The values of ``dag_id``, narrowed to a run, a task, a map index where given."""
        ...

    def newest(self, query: PageQuery) -> Page:
        """The first ``query.limit`` values that ``query`` matches, newest first, and how many matched."""
        ...

    def delete(self, scope: TaskScope, key: str, expected_version: int | None = None) -> bool:
        """Delete ``key``; with ``expected_version``, only while the stored value still has it
        (``False`` when it changed meanwhile). Sources without versions delete unconditionally."""
        ...


def find(source: Source, scope: TaskScope, key: str) -> Entry | None:
    """The value ``key`` of the task ``scope`` in ``source``, or ``None`` when there is none."""
    for entry in source.entries(scope.dag_id, scope.run_id, scope.task_id, scope.map_index):
        if entry.key == key:
            return entry
    return None


def api_fix_command(scope: TaskScope, key: str, backend_name: str, url: str) -> str:
    """The ``resumable state clear`` command for ``key`` of ``scope`` through the REST API at ``url``."""
    command = cli_clear_hint(scope, key, backend=backend_name)
    return f"{command} --api-url {shlex.quote(url)}"


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and _ENVELOPE in value:
        return value.get("value")
    return value


class SqlSource:
    """The ``sql`` backend's records (read without the tasks' automatic purge)."""

    backend_name = "sql"

    def __init__(self, url: str) -> None:
        self.backend = SqlBackend(url, auto_purge=False)

    def describe(self) -> str:
        return self.backend.describe()

    def check(self) -> None:
        self.backend.check()

    def fix_command(self, scope: TaskScope, key: str) -> str:
        return cli_clear_hint(scope, key, backend=self.backend_name)

    def entries(
        self, dag_id: str | None, run_id: str | None, task_id: str | None, map_index: int | None
    ) -> list[Entry]:
        """The values of ``dag_id`` (of every DAG when ``None``), narrowed by the others given."""
        self.backend.check()
        query = sa.select(state_table)
        for column, value in (
            ("dag_id", dag_id),
            ("run_id", run_id),
            ("task_id", task_id),
            ("map_index", map_index),
        ):
            if value is not None:
                query = query.where(state_table.c[column] == value)
        c = state_table.c
        query = query.order_by(c.run_id, c.task_id, c.map_index, c.key)
        with self.backend.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [self._entry(r) for r in rows]

    @staticmethod
    def _entry(r: Any) -> Entry:
        """The :class:`Entry` of one row (a mapping of the table's columns)."""
        scope = TaskScope(r["dag_id"], r["run_id"], r["task_id"], r["map_index"])
        when = str(r["updated_at"])
        try:
            return Entry(scope, r["key"], json.loads(r["value"]), when, version=r["version"])
        except ValueError as error:
            return Entry(scope, r["key"], r["value"], when, decode_error=str(error), version=r["version"])

    def newest(self, query: PageQuery) -> Page:
        """``ORDER BY updated_at DESC`` (then as :meth:`entries`, and the DAG) ``LIMIT`` in SQL: the
        table's ``updated_at`` index gives the newest rows without reading the others."""
        self.backend.check()
        engine = self.backend.engine
        c = state_table.c
        where = _page_filters(c.dag_id, c.run_id, query)
        count = sa.select(sa.func.count()).select_from(state_table).where(*where)
        if engine.dialect.name == "sqlite" and query.dag_id is None and query.run_id is None and where:
            # SQLite keeps no statistics: it takes the filter on the DAGs the user may read (the
            # primary key's first column) for a narrow one, and sorts every row it matches. Those
            # DAGs hold most rows: likely() says so, and SQLite walks the updated_at index newest
            # first, stopping at the limit (a DAG or run asked for is narrow: the key finds it).
            where = [sa.func.likely(sa.and_(*where), type_=sa.Boolean)]
        ordered = (
            sa.select(state_table)
            .where(*where)
            .order_by(c.updated_at.desc(), c.run_id, c.task_id, c.map_index, c.key, c.dag_id)
        )
        with engine.connect() as conn:
            return _sql_page(conn.execute, ordered, count, query, lambda row: self._entry(row._mapping))

    def delete(self, scope: TaskScope, key: str, expected_version: int | None = None) -> bool:
        if expected_version is None:
            self.backend.delete(scope, key)
            return True
        return self.backend.delete_if_unchanged(scope, key, expected_version)


class ApiSource:
    """Airflow's task state store, through the REST API."""

    backend_name = "airflow"

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if not token and username:
            token = self._login(username, password or "")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def describe(self) -> str:
        return f"Airflow's task state store at {self.base_url}"

    def check(self) -> None:
        """The API server's health endpoint answers (it needs no credentials)."""
        response = self._request("GET", "/api/v2/monitor/health")
        if response.status_code >= 400:
            raise StateBackendError(
                f"Airflow's API at {self.base_url} answered {response.status_code} to its health check. "
                "Nothing was changed. Pass --api-url (default: [api] base_url) pointing at the API server."
            )

    def fix_command(self, scope: TaskScope, key: str) -> str:
        return api_fix_command(scope, key, self.backend_name, self.base_url)

    def _login(self, username: str, password: str) -> str:
        response = self._request("POST", "/auth/token", json={"username": username, "password": password})
        return str(response.json()["access_token"])

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=30, **kwargs)
        except requests.RequestException as error:
            raise StateBackendError(
                f"Airflow's API at {self.base_url} cannot be reached ({error}). Nothing was changed. "
                "Pass --api-url (default: [api] base_url) pointing at the API server."
            ) from error
        if response.status_code in (401, 403):
            raise StateBackendError(
                f"Airflow's API refused {method} {path} ({response.status_code}). Nothing was changed. "
                "Pass --token (or AIRFLOW_API_TOKEN), or --username and --password."
            )
        return response

    def _get(self, path: str, **params: Any) -> Any:
        response = self._request("GET", path, params=params)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise StateBackendError(f"GET {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def _task_instances(self, dag_id: str, run_id: str | None) -> Iterator[dict[str, Any]]:
        runs = [run_id] if run_id else self._run_ids(dag_id)
        for run in runs:
            offset = 0
            while True:
                page = self._get(
                    f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run, safe='')}/taskInstances",
                    limit=100,
                    offset=offset,
                )
                if not page:
                    break
                yield from page["task_instances"]
                offset += len(page["task_instances"])
                if not page["task_instances"] or offset >= page["total_entries"]:
                    break

    def _run_ids(self, dag_id: str) -> list[str]:
        page = self._get(f"/api/v2/dags/{quote(dag_id)}/dagRuns", limit=100, order_by="-run_after")
        return [r["dag_run_id"] for r in (page or {}).get("dag_runs", [])]

    @staticmethod
    def _path(scope: TaskScope, key: str = "") -> str:
        path = (
            f"/api/v2/dags/{quote(scope.dag_id)}/dagRuns/{quote(scope.run_id, safe='')}"
            f"/taskInstances/{quote(scope.task_id)}/state-store"
        )
        return path + (f"/{quote(key, safe='')}" if key else "")

    def entries(
        self, dag_id: str, run_id: str | None, task_id: str | None, map_index: int | None
    ) -> list[Entry]:
        found: list[Entry] = []
        for ti in self._task_instances(dag_id, run_id):
            if (task_id and ti["task_id"] != task_id) or (
                map_index is not None and ti["map_index"] != map_index
            ):
                continue
            scope = TaskScope(dag_id, ti["dag_run_id"], ti["task_id"], ti["map_index"])
            params = {"map_index": scope.map_index} if scope.map_index >= 0 else {}
            page = self._get(self._path(scope), **params) or {"task_state_store": []}
            for item in page["task_state_store"]:
                found.append(
                    Entry(
                        scope,
                        str(item["key"]),
                        _unwrap(item["value"]),
                        item.get("updated_at"),
                        ti_state=ti.get("state"),
                    )
                )
        return found

    def newest(self, query: PageQuery) -> Page:
        """Ordered, filtered and limited in Python (:func:`page_of`): the REST API lists a task
        instance's values, with no order or limit across task instances, so every value is read.
        It lists one DAG at a time: ``query`` names a DAG or the DAGs to read."""
        if query.dag_id is not None:
            dags = [query.dag_id]
        elif query.dag_ids is not None:
            dags = sorted(query.dag_ids)
        else:
            raise StateBackendError(
                f"Airflow's API at {self.base_url} lists the records of one DAG at a time, and no DAG "
                "was named. Nothing was read. Name a DAG (--dag-id)."
            )
        return page_of((e for dag in dags for e in self.entries(dag, query.run_id, None, None)), query)

    def delete(self, scope: TaskScope, key: str, expected_version: int | None = None) -> bool:
        params = {"map_index": scope.map_index} if scope.map_index >= 0 else {}
        response = self._request("DELETE", self._path(scope, key), params=params)
        if response.status_code >= 400:
            raise StateBackendError(f"DELETE answered {response.status_code}: {response.text[:500]}")
        return True


class MetadataSource:
    """Airflow's task state store read in Airflow's own metadata database (Airflow >= 3.3).

    What the "Resumable jobs" page reads inside the API server: one query across DAGs, with the
    state of the task instance each value belongs to. Deletes are conditional on the value read.
    ``api_url`` is only for the fix commands it prints (they run the CLI, which goes through the
    REST API).
    """

    backend_name = "airflow"

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")

    def describe(self) -> str:
        return "Airflow's task state store (metadata database)"

    def check(self) -> None:
        try:
            import airflow.models.task_state_store  # noqa: F401
        except ImportError as error:
            raise StateBackendError(
                f"This Airflow has no task state store ({error}); its tasks cannot use the airflow "
                "backend. Set [resumable] state_backend to sql (or auto)."
            ) from error

    def fix_command(self, scope: TaskScope, key: str) -> str:
        return api_fix_command(scope, key, self.backend_name, self.api_url)

    def entries(
        self, dag_id: str | None, run_id: str | None, task_id: str | None, map_index: int | None
    ) -> list[Entry]:
        """The values of ``dag_id`` (of every DAG when ``None``), narrowed by the others given."""
        self.check()
        from airflow.models.task_state_store import TaskStateStoreModel as S
        from airflow.utils.session import create_session

        query = self._select()
        for column, value in (
            (S.dag_id, dag_id),
            (S.run_id, run_id),
            (S.task_id, task_id),
            (S.map_index, map_index),
        ):
            if value is not None:
                query = query.where(column == value)
        query = query.order_by(S.dag_id, S.run_id, S.task_id, S.map_index, S.key)
        with create_session() as session:
            rows = session.execute(query).all()
        return [self._entry(r) for r in rows]

    @staticmethod
    def _select() -> Any:
        """The store's values with the state of the task instance each belongs to."""
        from airflow.models.task_state_store import TaskStateStoreModel as S
        from airflow.models.taskinstance import TaskInstance as TI

        return sa.select(
            S.dag_id, S.run_id, S.task_id, S.map_index, S.key, S.value, S.updated_at, TI.state
        ).outerjoin(
            TI,
            sa.and_(
                TI.dag_id == S.dag_id,
                TI.run_id == S.run_id,
                TI.task_id == S.task_id,
                TI.map_index == S.map_index,
            ),
        )

    @staticmethod
    def _entry(r: Any) -> Entry:
        """The :class:`Entry` of one row of :meth:`_select`."""
        scope = TaskScope(r.dag_id, r.run_id, r.task_id, r.map_index)
        state = None if r.state is None else str(getattr(r.state, "value", r.state))
        when = r.updated_at.isoformat() if r.updated_at else None
        try:
            stored = json.loads(r.value)
        except ValueError as error:
            return Entry(scope, r.key, r.value, when, decode_error=str(error), ti_state=state)
        stored_version = stored.get(_ENVELOPE) if isinstance(stored, dict) else None
        return Entry(
            scope,
            r.key,
            _unwrap(stored),
            when,
            version=stored_version if isinstance(stored_version, int) else None,
            ti_state=state,
        )

    def newest(self, query: PageQuery) -> Page:
        """``ORDER BY updated_at DESC`` (then as :meth:`entries`) ``LIMIT`` in SQL. Airflow's table
        has no index on ``updated_at``: the database keeps the newest ``limit`` rows as it scans
        (a top-N sort), and only those reach Python."""
        self.check()
        from airflow.models.task_state_store import TaskStateStoreModel as S
        from airflow.utils.session import create_session

        where = _page_filters(S.dag_id, S.run_id, query)
        ordered = (
            self._select()
            .where(*where)
            .order_by(S.updated_at.desc(), S.dag_id, S.run_id, S.task_id, S.map_index, S.key)
        )
        count = sa.select(sa.func.count()).select_from(S).where(*where)
        with create_session() as session:
            return _sql_page(session.execute, ordered, count, query, self._entry)

    def delete(self, scope: TaskScope, key: str, expected_version: int | None = None) -> bool:
        """Delete ``key``; with ``expected_version``, only while the stored value still has it: the
        delete names the exact text it checked, so a write in between makes it delete nothing."""
        from airflow.models.task_state_store import TaskStateStoreModel as S
        from airflow.utils.session import create_session

        where = sa.and_(
            S.dag_id == scope.dag_id,
            S.run_id == scope.run_id,
            S.task_id == scope.task_id,
            S.map_index == scope.map_index,
            S.key == key,
        )
        with create_session() as session:
            if expected_version is None:
                session.execute(sa.delete(S).where(where))
                return True
            row = session.execute(sa.select(S.id, S.value).where(where)).first()
            if row is None:
                return False
            try:
                stored = json.loads(row.value)
            except ValueError:
                return False
            if not isinstance(stored, dict) or stored.get(_ENVELOPE) != expected_version:
                return False
            deleted = session.execute(sa.delete(S).where(S.id == row.id, S.value == row.value))
            return bool(getattr(deleted, "rowcount", 0) == 1)


if TYPE_CHECKING:  # every source is a Source (mypy checks it)
    _SOURCES: tuple[type[Source], ...] = (SqlSource, ApiSource, MetadataSource)
