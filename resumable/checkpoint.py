"""Plain in-task checkpoints (a cursor, the items already done) kept across retries on the state layer."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from resumable.errors import VersionConflict
from resumable.state import StateBackend, TaskScope, backend_for

_PREFIX = "checkpoint:"


class Checkpoint:
    """One JSON value that a task reads at start and updates as it goes; retries see the last value.

    >>> cursor = Checkpoint(context, "cursor")
    >>> start = cursor.get(default=0)
    >>> cursor.set(start + 100)
    """

    def __init__(self, context: Mapping[str, Any], key: str, backend: StateBackend | None = None) -> None:
        self.key = _PREFIX + key
        self.scope = TaskScope.from_context(context)
        self.backend = backend or backend_for(context)

    def get(self, default: Any = None) -> Any:
        found = self.backend.get(self.scope, self.key)
        return default if found is None else found.value

    def set(self, value: Any) -> None:
        """Store ``value``, replacing whatever is there (the last write of this task wins)."""
        for _ in range(5):
            found = self.backend.get(self.scope, self.key)
            try:
                self.backend.put(self.scope, self.key, value, None if found is None else found.version)
                return
            except VersionConflict:
                continue
        raise VersionConflict(
            f"checkpoint {self.key!r} of {self.scope.describe()} was changed by another writer five "
            "times in a row; give each writer (each mapped task, each thread) its own checkpoint key"
        )

    def clear(self) -> None:
        self.backend.delete(self.scope, self.key)


class DoneSet:
    """The set of items a task has finished (files loaded, partitions written), kept across retries.

    >>> done = DoneSet(context, "loaded_files")
    >>> for f in files:
    ...     if f not in done:
    ...         load(f)
    ...         done.add(f)
    """

    def __init__(self, context: Mapping[str, Any], key: str, backend: StateBackend | None = None) -> None:
        self._checkpoint = Checkpoint(context, key, backend)
        self._items: set[Any] = set(self._checkpoint.get(default=[]))

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(sorted(self._items, key=repr))

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Any) -> None:
        """Record ``item`` as done; written through before returning."""
        if item not in self._items:
            self._items.add(item)
            self._checkpoint.set(sorted(self._items, key=repr))

    def clear(self) -> None:
        self._items.clear()
        self._checkpoint.clear()
