"""Reading and deleting records from outside a task: what ``resumable state`` uses.

Two sources, one per place records live:

- :class:`SqlSource`: the ``sql`` backend's table, through SQLAlchemy;
- :class:`ApiSource`: Airflow's task state store, through the REST API of the API server
  (``/api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/state-store``), with a bearer token,
  a user name and password, or nothing (an API server whose auth manager lets everyone in).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import requests
import sqlalchemy as sa

from resumable.errors import StateBackendError
from resumable.job import JobHandle, JobState
from resumable.record import Phase
from resumable.state import SqlBackend, TaskScope
from resumable.state.sql import state_table

#: Keys resumable operators write (``state_key``, ``resumable.job`` by default) start with this.
KEY_PREFIX = "resumable."
_ENVELOPE = "__resumable_version__"


@dataclass
class Entry:
    """One record as stored, with the fields people look at pulled out."""

    scope: TaskScope
    key: str
    value: Any
    updated_at: str | None = None

    @property
    def fields(self) -> dict[str, Any]:
        return self.value if isinstance(self.value, dict) else {}

    @property
    def phase(self) -> str:
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
        """True unless the record says the job ended: a clear now could orphan a running job."""
        if self.phase == Phase.DONE.value:
            return False
        if self.phase == Phase.SUBMITTING.value:
            return True
        state = self.last_state
        if state is None or state not in JobState.__members__:
            return True
        return JobState(state).is_active

    def summary(self) -> dict[str, Any]:
        handle = self.handle
        f = self.fields
        return {
            "dag_id": self.scope.dag_id,
            "run_id": self.scope.run_id,
            "task_id": self.scope.task_id,
            "map_index": self.scope.map_index,
            "key": self.key,
            "phase": self.phase,
            "owner_try": f.get("owner"),
            "lineage": f.get("lineage"),
            "token": f.get("token"),
            "job_id": handle.job_id if handle else None,
            "last_status": self.last_state,
            "stop_reason": f.get("stop_reason"),
            "url": handle.url if handle else None,
            "updated_at": self.updated_at or f.get("updated_at"),
        }


class Source(Protocol):
    def describe(self) -> str: ...

    def entries(
        self, dag_id: str, run_id: str | None, task_id: str | None, map_index: int | None
    ) -> list[Entry]: ...

    def delete(self, scope: TaskScope, key: str) -> None: ...


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and _ENVELOPE in value:
        return value.get("value")
    return value


class SqlSource:
    """The ``sql`` backend's records."""

    def __init__(self, url: str) -> None:
        self.backend = SqlBackend(url)

    def describe(self) -> str:
        return self.backend.describe()

    def entries(
        self, dag_id: str, run_id: str | None, task_id: str | None, map_index: int | None
    ) -> list[Entry]:
        self.backend.check()
        query = sa.select(state_table).where(state_table.c.dag_id == dag_id)
        for column, value in (("run_id", run_id), ("task_id", task_id), ("map_index", map_index)):
            if value is not None:
                query = query.where(state_table.c[column] == value)
        query = query.order_by(state_table.c.run_id, state_table.c.task_id, state_table.c.map_index)
        with self.backend.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Entry(
                TaskScope(r["dag_id"], r["run_id"], r["task_id"], r["map_index"]),
                r["key"],
                json.loads(r["value"]),
                str(r["updated_at"]),
            )
            for r in rows
            if str(r["key"]).startswith(KEY_PREFIX)
        ]

    def delete(self, scope: TaskScope, key: str) -> None:
        self.backend.delete(scope, key)


class ApiSource:
    """Airflow's task state store, through the REST API."""

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
        return path + (f"/{quote(key)}" if key else "")

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
                if str(item["key"]).startswith(KEY_PREFIX):
                    found.append(Entry(scope, item["key"], _unwrap(item["value"]), item.get("updated_at")))
        return found

    def delete(self, scope: TaskScope, key: str) -> None:
        params = {"map_index": scope.map_index} if scope.map_index >= 0 else {}
        response = self._request("DELETE", self._path(scope, key), params=params)
        if response.status_code >= 400:
            raise StateBackendError(f"DELETE answered {response.status_code}: {response.text[:500]}")
