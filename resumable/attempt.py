"""One attempt's record I/O: reading the record, writing it, and checking that this attempt still owns it.

The mixin decides with :mod:`resumable.protocol` and acts; everything it reads from or writes to
the state layer about its job goes through an :class:`Attempt`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resumable.errors import RecordError, RecordUnreadableHere, SupersededError, VersionConflict
from resumable.protocol import Facts
from resumable.record import Record
from resumable.state import StateBackend, TaskScope, backend_for

#: The module name Airflow gives a DAG file it imports: ``unusual_prefix_<sha1 of its path>_<name>``.
_DAG_FILE_MODULE = re.compile(r"^unusual_prefix_[0-9a-f]+_")


def operator_identity(cls: type) -> str:
    """The name a record keeps of the operator class that wrote it.

    An operator defined in a DAG file gets a module name made from the file's absolute path;
    it is left out, so another mount point or a versioned bundle still reads its own records.
    """
    return f"{_DAG_FILE_MODULE.sub('', cls.__module__)}.{cls.__qualname__}"


def run_after_of(context: Mapping[str, Any]) -> str | None:
    run_after = getattr(context.get("dag_run"), "run_after", None)
    return None if run_after is None else str(run_after)


def facts_from_context(context: Mapping[str, Any], on_prior_failure: Any) -> Facts:
    """What Airflow tells this attempt about itself, for :func:`resumable.protocol.decide`."""
    ti = context["ti"]
    task = getattr(ti, "task", None)
    retries = getattr(task, "retries", None)
    dag_run = context.get("dag_run")
    clear_number = getattr(dag_run, "clear_number", None)
    started: Any = getattr(dag_run, "start_date", None)
    return Facts(
        lineage=int(ti.max_tries),
        try_number=int(ti.try_number),
        on_prior_failure=on_prior_failure,
        retries=int(retries) if isinstance(retries, int) else None,
        clear_number=int(clear_number) if isinstance(clear_number, int) else None,
        run_after=run_after_of(context),
        run_started_at=started.isoformat() if hasattr(started, "isoformat") else None,
    )


@dataclass
class Attempt:
    """What one attempt knows while it runs, and its reads and writes of the record."""

    context: Mapping[str, Any]
    scope: TaskScope
    backend: StateBackend
    key: str
    facts: Facts
    operator: str
    job_system: str
    record: Record | None = None
    version: int | None = None
    #: The names this operator's records were written under before (see ``former_names``).
    former: tuple[str, ...] = ()

    @classmethod
    def begin(
        cls, context: Mapping[str, Any], *, key: str, operator: type, job_system: str, on_prior_failure: Any
    ) -> Attempt:
        return cls(
            context=context,
            scope=TaskScope.from_context(context),
            backend=backend_for(context),
            key=key,
            facts=facts_from_context(context, on_prior_failure),
            operator=operator_identity(operator),
            job_system=job_system,
            former=tuple(getattr(operator, "former_names", ())),
        )

    @property
    def where(self) -> str:
        return f"{self.scope.describe()} key={self.key!r}"

    def stamp(self, record: Record) -> Record:
        """``record`` marked with this attempt's lineage facts (when it starts or adopts a job)."""
        f = self.facts
        return record.evolve(
            lineage=f.lineage,
            owner=f.try_number,
            retries=f.retries,
            clear_number=f.clear_number,
            run_after=f.run_after,
        )

    def read(self, *, first: bool = False) -> Record | RecordError | None:
        """The record as stored, an error saying why it cannot be used, or ``None``.

        ``first``: the first read of ``execute``. On a store whose values start empty for every
        DAG run (``values_die_with_dag_run``), the first try's first read would only find nothing,
        so it is not made.
        """
        self.record, self.version = None, None
        if first and self.facts.try_number <= 1 and self.backend.values_die_with_dag_run:
            self.backend.known_absent(self.scope, self.key)
            return None
        found = self.backend.get(self.scope, self.key)
        if found is None:
            return None
        return self.take(found.value, found.version)

    def take(self, value: Any, version: int | None) -> Record | RecordError:
        """The record ``value`` (stored at ``version``), read or handed over, checked as :meth:`read` does."""
        self.version = version
        hint = self.backend.clear_hint(self.scope, self.key)
        try:
            record = Record.from_json(value, where=self.where, clear_hint=hint)
        except RecordError as error:
            return error
        if _DAG_FILE_MODULE.sub("", record.operator) not in (self.operator, *self.former):
            return RecordError(
                f"The resumable record {self.where} was written by {record.operator}, not {self.operator}: "
                f"two operators share one state key. Nothing was submitted and the record was left as it "
                f"is. Give one of them another state_key, or clear the record with: {hint}"
            )
        if record.handle is not None and record.handle.system != self.job_system:
            return RecordError(
                f"The resumable record {self.where} holds a {record.handle.system!r} job handle, which "
                f"{self.operator} (system {self.job_system!r}) cannot read. Nothing was submitted and the "
                f"record was left as it is. Clear it with: {hint}"
            )
        self.record = record
        return record

    def write(self, record: Record) -> None:
        """Compare-and-set ``record`` over the version this attempt last read or wrote."""
        self.version = self.backend.put(self.scope, self.key, record.to_json(), self.version)
        self.record = record

    def write_as_owner(self, record: Record) -> None:
        """Write once the job is ours: losing the race now means a newer try took the job over."""
        try:
            self.write(record)
        except VersionConflict as conflict:
            raise SupersededError(
                f"the record of {self.where} was changed by another attempt ({conflict}); this attempt "
                "stops and does not cancel the job"
            ) from conflict

    def check_owner(self) -> None:
        """Raise :class:`SupersededError` if a newer try or a new lineage owns the record now.

        :class:`RecordUnreadableHere` (a kind of it) means the record could not be read from here.
        """
        found = self.backend.get(self.scope, self.key)
        mine = self.record
        current = found.value if found is not None else None
        if mine is None or not isinstance(current, dict):
            raise RecordUnreadableHere(f"the record of {self.where} disappeared; not cancelling anything")
        owner, lineage = current.get("owner"), current.get("lineage")
        newer_try = isinstance(owner, int) and owner > self.facts.try_number
        # The record as this attempt knows it, or this try's own write whose answer was lost: a claim
        # (this try's number) or a takeover of a cleared lineage's job (this lineage's number too).
        as_known = (owner, lineage) == (mine.owner, mine.lineage)
        own_write = owner == self.facts.try_number and lineage in (mine.lineage, self.facts.lineage)
        if newer_try or current.get("token") != mine.token or not (as_known or own_write):
            raise SupersededError(
                f"try {owner} (lineage {lineage}) owns the job of {self.where} now; try {mine.owner} "
                "stops and does not cancel it"
            )
        # The stored record is this attempt's view from now on (a write whose answer was lost included).
        self.take(current, found.version)  # type: ignore[union-attr]

    def know(self, record: Record) -> None:
        """Take ``record`` as this attempt's view without writing it (what the store need not keep)."""
        self.record = record

    def check_resumed_owner(self, record: Record) -> None:
        """After a deferral: the stored record must still name this try as its owner.

        A store that fences replaced attempts (``airflow``) never lets a replaced try resume, and
        there a retry that reattached in its own lineage leaves the owner as it was (nothing else
        changed): only the lineage is checked.
        """
        owner_ok = record.owner == self.facts.try_number or self.backend.fences_replaced_attempts
        if not owner_ok or record.lineage != self.facts.lineage:
            raise SupersededError(
                f"try {record.owner} (lineage {record.lineage}) owns the job of {self.where} now, not try "
                f"{self.facts.try_number}; this attempt stops and does not cancel it"
            )
