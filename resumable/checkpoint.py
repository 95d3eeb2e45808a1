"""Plain in-task checkpoints (a cursor, the items already done) kept across retries on the state layer.

A checkpoint belongs to the lineage that wrote it, as a job record does: a retry reads it back,
a clear (and a re-created DAG run with the same run_id) starts from the default again. Each value
is stored with the lineage, try, clear counter and DAG run it was written in::

    {"checkpoint": {"lineage": 3, "owner": 2, "clear_number": 0, "run_after": "…"}, "value": 100}

A value stored without that envelope (written by hand, or by an earlier version of the package)
is read as it is, in every lineage.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from resumable.attempt import facts_from_context
from resumable.errors import VersionConflict
from resumable.protocol import Facts, PriorFailure, written_in_this_lineage
from resumable.state import StateBackend, TaskScope, backend_for

_PREFIX = "checkpoint:"
_ENVELOPE = "checkpoint"


def _facts(context: Mapping[str, Any]) -> Facts | None:
    """The lineage facts of the running try, or ``None`` where the context has no task instance
    that knows its tries (a context built by hand)."""
    ti = context.get("ti")
    if not isinstance(getattr(ti, "max_tries", None), int) or not isinstance(
        getattr(ti, "try_number", None), int
    ):
        return None
    return facts_from_context(context, PriorFailure.RESUBMIT)


def _written_here(stored: Any, facts: Facts | None) -> bool:
    """Whether a stored checkpoint belongs to this lineage of this DAG run."""
    origin = stored.get(_ENVELOPE) if isinstance(stored, dict) else None
    if facts is None or not isinstance(origin, dict):
        return True
    run_after = origin.get("run_after")
    if run_after is not None and facts.run_after is not None and run_after != facts.run_after:
        return False  # a deleted DAG run with the same run_id wrote it
    try:
        return written_in_this_lineage(
            int(origin["lineage"]), int(origin["owner"]), origin.get("clear_number"), facts
        )
    except (KeyError, TypeError, ValueError):
        return True


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
        self._facts = _facts(context)

    def get(self, default: Any = None) -> Any:
        """The value this lineage stored last; ``default`` when there is none, or when an earlier
        lineage (before a clear) or an earlier DAG run with this run_id stored it."""
        found = self.backend.get(self.scope, self.key)
        if found is None or not _written_here(found.value, self._facts):
            return default
        stored = found.value
        return stored["value"] if isinstance(stored, dict) and _ENVELOPE in stored else stored

    def _stored(self, value: Any) -> Any:
        facts = self._facts
        if facts is None:
            return value
        origin = {
            "lineage": facts.lineage,
            "owner": facts.try_number,
            "clear_number": facts.clear_number,
            "run_after": facts.run_after,
        }
        return {_ENVELOPE: origin, "value": value}

    def set(self, value: Any) -> None:
        """Store ``value``, replacing whatever is there (the last write of this task wins)."""
        for _ in range(5):
            found = self.backend.get(self.scope, self.key)
            try:
                self.backend.put(
                    self.scope, self.key, self._stored(value), None if found is None else found.version
                )
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
