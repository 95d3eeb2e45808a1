"""The ``airflow`` state backend: Airflow >= 3.3's ``task_state_store`` through the Execution API.

The store has no compare-and-set. What fences attempts is the API server: a task instance reaches
the store only with its own id, and a retry or a clear gives the task instance a new id, so a
zombie or a replaced attempt can neither read nor overwrite its successor's record. Within the
attempt that runs now, ``put`` checks the expected version against the version this backend last
read or wrote, and reads the store again only for a key it has not seen.

So an attempt costs what Airflow 3.3's own mixin costs: a first try reads nothing (the store starts
empty for every DAG run) and writes its intent and its job's id; a retry reads once. Polling costs
nothing: an attempt whose task instance was replaced learns it from Airflow, which stops its process
(its kill rules then read the record once, and a refused read keeps the job). Nor is the outcome
written: the next attempt, if any, reads it from the job. A person who changes the record through
the REST API while the attempt runs is not noticed until the attempt's next write.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from resumable import config
from resumable.errors import StateBackendError, VersionConflict
from resumable.state.base import StateBackend, TaskScope, Versioned
from resumable.supervisor_calls import through_supervisor

_ENVELOPE = "__resumable_version__"


class AirflowStoreBackend(StateBackend):
    """Values in ``context["task_state_store"]``, wrapped with a version number."""

    name: ClassVar[str] = "airflow"
    atomic_compare_and_set: ClassVar[bool] = False
    fences_replaced_attempts: ClassVar[bool] = True
    values_die_with_dag_run: ClassVar[bool] = True
    records_outcomes: ClassVar[bool] = False

    def __init__(self, accessor: Any, scope: TaskScope) -> None:
        self._store = accessor
        self._scope = scope
        # key -> version last read or written by this backend (None: read and found absent).
        self._seen: dict[str, int | None] = {}

    def _check_scope(self, scope: TaskScope) -> None:
        if scope != self._scope:
            raise StateBackendError(
                f"The airflow state backend only reaches its own task instance ({self._scope.describe()}), "
                f"not {scope.describe()}. Use the sql backend to read other task instances."
            )

    def get(self, scope: TaskScope, key: str) -> Versioned | None:
        self._check_scope(scope)
        with through_supervisor():
            stored = self._store.get(key, None)
        found = _unwrap(stored)
        self._seen[key] = None if found is None else found.version
        return found

    def known_absent(self, scope: TaskScope, key: str) -> None:
        self._check_scope(scope)
        self._seen[key] = None

    def put(self, scope: TaskScope, key: str, value: Any, expected_version: int | None) -> int:
        self._check_scope(scope)
        if key in self._seen:
            current_version = self._seen[key]
        else:
            current = self.get(scope, key)
            current_version = None if current is None else current.version
        if current_version != expected_version:
            raise VersionConflict(
                f"{key!r} of {scope.describe()} is at version {current_version}, not {expected_version}"
            )
        version = (current_version or 0) + 1
        retention = timedelta(days=config.state_retention_days())
        with through_supervisor():
            self._store.set(key, {_ENVELOPE: version, "value": value}, retention=retention)
        self._seen[key] = version
        return version

    def delete(self, scope: TaskScope, key: str) -> None:
        self._check_scope(scope)
        with through_supervisor():
            self._store.delete(key)
        self._seen[key] = None

    def clear_hint(self, scope: TaskScope, key: str) -> str:
        """A ``curl`` DELETE on Airflow's REST API, with the token variable ``resumable state`` reads too."""
        path = (
            f"/api/v2/dags/{quote(scope.dag_id, safe='')}/dagRuns/{quote(scope.run_id, safe='')}"
            f"/taskInstances/{quote(scope.task_id, safe='')}/state-store/{quote(key, safe='')}"
        )
        query = f"?map_index={scope.map_index}" if scope.map_index >= 0 else ""
        return (
            'curl -f -X DELETE -H "Authorization: Bearer $AIRFLOW_API_TOKEN" '
            f'"{config.api_base_url()}{path}{query}"'
        )


def _unwrap(stored: Any) -> Versioned | None:
    if stored is None:
        return None
    if isinstance(stored, dict) and _ENVELOPE in stored:
        return Versioned(stored.get("value"), int(stored[_ENVELOPE]))
    return Versioned(stored, 0)
