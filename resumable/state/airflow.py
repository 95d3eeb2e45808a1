"""The ``airflow`` state backend: Airflow >= 3.3's ``task_state_store`` through the Execution API.

The store has no compare-and-set, so ``put`` reads, checks the version and writes: two attempts
racing in the same instant can both win. The protocol's ownership checks narrow that window.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from resumable import config
from resumable.errors import StateBackendError, VersionConflict
from resumable.state.base import StateBackend, TaskScope, Versioned

_ENVELOPE = "__resumable_version__"


class AirflowStoreBackend(StateBackend):
    """Values in ``context["task_state_store"]``, wrapped with a version number."""

    name: ClassVar[str] = "airflow"
    atomic_compare_and_set: ClassVar[bool] = False

    def __init__(self, accessor: Any, scope: TaskScope) -> None:
        self._store = accessor
        self._scope = scope

    def _check_scope(self, scope: TaskScope) -> None:
        if scope != self._scope:
            raise StateBackendError(
                f"The airflow state backend only reaches its own task instance ({self._scope.describe()}), "
                f"not {scope.describe()}. Use the sql backend to read other task instances."
            )

    def get(self, scope: TaskScope, key: str) -> Versioned | None:
        self._check_scope(scope)
        stored = self._store.get(key, None)
        if stored is None:
            return None
        if isinstance(stored, dict) and _ENVELOPE in stored:
            return Versioned(stored.get("value"), int(stored[_ENVELOPE]))
        return Versioned(stored, 0)

    def put(self, scope: TaskScope, key: str, value: Any, expected_version: int | None) -> int:
        current = self.get(scope, key)
        current_version = None if current is None else current.version
        if current_version != expected_version:
            raise VersionConflict(
                f"{key!r} of {scope.describe()} is at version {current_version}, not {expected_version}"
            )
        version = (current_version or 0) + 1
        retention = timedelta(days=config.state_retention_days())
        self._store.set(key, {_ENVELOPE: version, "value": value}, retention=retention)
        return version

    def delete(self, scope: TaskScope, key: str) -> None:
        self._check_scope(scope)
        self._store.delete(key)

    def clear_hint(self, scope: TaskScope, key: str) -> str:
        path = (
            f"/api/v2/dags/{quote(scope.dag_id)}/dagRuns/{quote(scope.run_id, safe='')}"
            f"/taskInstances/{quote(scope.task_id)}/state-store/{quote(key)}"
        )
        query = f"?map_index={scope.map_index}" if scope.map_index >= 0 else ""
        return (
            f'curl -X DELETE -H "Authorization: Bearer $AIRFLOW_TOKEN" "{config.api_base_url()}{path}{query}"'
        )
