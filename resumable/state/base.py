"""The state layer's contract: versioned get, compare-and-set put, delete, and async twins."""

from __future__ import annotations

import asyncio
import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class TaskScope:
    """The task instance a value belongs to: retries share it, another DAG run does not."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> TaskScope:
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return cls(ti.dag_id, ti.run_id, ti.task_id, -1 if map_index is None else int(map_index))

    def describe(self) -> str:
        where = f"dag_id={self.dag_id!r} run_id={self.run_id!r} task_id={self.task_id!r}"
        return where if self.map_index < 0 else f"{where} map_index={self.map_index}"


@dataclass(frozen=True)
class Versioned:
    """A stored value and the version a compare-and-set write must name to replace it."""

    value: Any
    version: int


class StateBackend(ABC):
    """Where records and checkpoints live. Implementations must be safe to share between threads."""

    #: The name used in ``[resumable] state_backend``.
    name: ClassVar[str]
    #: Whether ``put`` is an atomic compare-and-set; if not, it is read-check-write.
    atomic_compare_and_set: ClassVar[bool]
    #: Whether the store itself refuses the calls of an attempt that was replaced (a retry, a clear):
    #: then an attempt need not read its record while it polls to find out that it was.
    fences_replaced_attempts: ClassVar[bool] = False
    #: Whether every task instance's values start empty and go with its DAG run (Airflow's task
    #: state store): the first try of a task instance then has nothing to read.
    values_die_with_dag_run: ClassVar[bool] = False
    #: Whether the mixin writes a job's status as it changes and its outcome. A store that fences
    #: replaced attempts itself needs neither: the next attempt reads both from the job, so an
    #: attempt that submits writes only its intent and its job's id.
    records_outcomes: ClassVar[bool] = True

    @abstractmethod
    def get(self, scope: TaskScope, key: str) -> Versioned | None:
        """The value and its version, or ``None`` if nothing is stored under ``key``."""

    @abstractmethod
    def put(self, scope: TaskScope, key: str, value: Any, expected_version: int | None) -> int:
        """Store ``value`` if the stored version is ``expected_version`` (``None``: nothing stored).

        Returns the new version; raises :class:`~resumable.errors.VersionConflict` otherwise.
        """

    @abstractmethod
    def delete(self, scope: TaskScope, key: str) -> None:
        """Remove ``key``; no error if it is absent."""

    def known_absent(self, scope: TaskScope, key: str) -> None:  # noqa: B027 - most need not know
        """Note that nothing is stored under ``key``, known without a read (``values_die_with_dag_run``)."""

    def check(self) -> None:  # noqa: B027 - most backends have nothing to check
        """Raise :class:`~resumable.errors.StateBackendError` if the backend cannot be used now."""

    @abstractmethod
    def clear_hint(self, scope: TaskScope, key: str) -> str:
        """The exact command a person runs to delete this record."""

    def describe(self) -> str:
        return self.name

    async def aget(self, scope: TaskScope, key: str) -> Versioned | None:
        return await asyncio.to_thread(self.get, scope, key)

    async def aput(self, scope: TaskScope, key: str, value: Any, expected_version: int | None) -> int:
        return await asyncio.to_thread(self.put, scope, key, value, expected_version)

    async def adelete(self, scope: TaskScope, key: str) -> None:
        await asyncio.to_thread(self.delete, scope, key)


def cli_clear_hint(scope: TaskScope, key: str, *, backend: str | None = None) -> str:
    """The ``resumable state clear`` command line that deletes one record, exactly as the CLI takes it.

    It says ``--leave-job``: the message around it asks the person to look at the job first, and
    the CLI refuses to delete a record whose job may still run unless told what to do with the job.
    Every value is quoted for a POSIX shell; ``backend`` pins ``--backend`` to where the record is.
    """
    args = f"--dag-id {shlex.quote(scope.dag_id)} --run-id {_always_quoted(scope.run_id)} "
    args += f"--task-id {shlex.quote(scope.task_id)}"
    if scope.map_index >= 0:
        args += f" --map-index {scope.map_index}"
    args += f" --key {shlex.quote(key)} --leave-job"
    if backend:
        args += f" --backend {backend}"
    return f"python -m resumable state clear {args}"


def _always_quoted(value: str) -> str:
    """``shlex.quote``, but quoted even when nothing needs it (run ids read better that way)."""
    return "'" + value.replace("'", "'\"'\"'") + "'"
