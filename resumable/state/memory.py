"""An in-process state backend for unit tests: shared by every attempt in one Python process."""

from __future__ import annotations

import copy
import json
import threading
from typing import Any, ClassVar

from resumable.errors import VersionConflict
from resumable.state.base import StateBackend, TaskScope, Versioned


class MemoryBackend(StateBackend):
    """Values in a dict guarded by a lock; true compare-and-set, gone when the process ends."""

    name: ClassVar[str] = "memory"
    atomic_compare_and_set: ClassVar[bool] = True

    _shared: ClassVar[dict[tuple[TaskScope, str], Versioned]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def get(self, scope: TaskScope, key: str) -> Versioned | None:
        with self._lock:
            found = self._shared.get((scope, key))
            return None if found is None else Versioned(copy.deepcopy(found.value), found.version)

    def put(self, scope: TaskScope, key: str, value: Any, expected_version: int | None) -> int:
        json.dumps(value)  # the same values the persistent backends accept
        with self._lock:
            current = self._shared.get((scope, key))
            current_version = None if current is None else current.version
            if current_version != expected_version:
                raise VersionConflict(
                    f"{key!r} of {scope.describe()} is at version {current_version}, not {expected_version}"
                )
            version = (current_version or 0) + 1
            self._shared[(scope, key)] = Versioned(copy.deepcopy(value), version)
            return version

    def delete(self, scope: TaskScope, key: str) -> None:
        with self._lock:
            self._shared.pop((scope, key), None)

    def clear_hint(self, scope: TaskScope, key: str) -> str:
        return f"resumable.state.MemoryBackend().delete({scope!r}, {key!r}) in the same process"

    @classmethod
    def reset(cls) -> None:
        """Forget every value (between tests)."""
        with cls._lock:
            cls._shared.clear()
