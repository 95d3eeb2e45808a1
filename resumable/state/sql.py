"""A SQLAlchemy state backend: a version column and a conditional UPDATE give compare-and-set.

SQLite (the embedded default) serves one machine; PostgreSQL serves many workers. It works on
any Airflow, including versions whose workers cannot reach the metadata database.

The table is created on first use, safely when several processes start at once (``CREATE ... IF
NOT EXISTS``, serialised by an advisory lock on PostgreSQL, and a second look if it still races).
Rows not written for ``[resumable] state_retention_days`` are deleted: by :meth:`SqlBackend.purge`
(``resumable state purge``), and automatically at most once an hour per process and database.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable

from resumable import config
from resumable.errors import StateBackendError, VersionConflict
from resumable.state.base import StateBackend, TaskScope, Versioned, cli_clear_hint

log = logging.getLogger(__name__)

metadata = sa.MetaData()

state_table = sa.Table(
    "resumable_state",
    metadata,
    sa.Column("dag_id", sa.String(250), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("task_id", sa.String(250), primary_key=True),
    sa.Column("map_index", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
#: What makes the retention DELETE cheap.
updated_at_index = sa.Index("ix_resumable_state_updated_at", state_table.c.updated_at)

#: How often one process purges expired rows of one database, at most.
PURGE_EVERY_SECONDS = 3600.0
#: PostgreSQL advisory lock taken while the table is created (any constant; "rsmstate").
_DDL_LOCK_KEY = 0x72736D7374617465

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_purged_at: dict[str, float] = {}
_purge_lock = threading.Lock()


def _present(engine: Engine) -> tuple[bool, bool]:
    """Whether the table, and its retention index, exist."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table(state_table.name):
            return False, False
        return True, updated_at_index.name in {i["name"] for i in inspector.get_indexes(state_table.name)}


def ensure_table(engine: Engine, attempts: int = 5) -> None:
    """Create the table and its index unless they exist; safe when many processes do it at once.

    ``CREATE TABLE IF NOT EXISTS`` alone still races on PostgreSQL (two transactions both find
    no table and one fails on the catalog's unique index), so there the creation holds a
    transaction-level advisory lock. Elsewhere, an error while creating is followed by a second
    look: the table that another process created in the same instant is the one we wanted. An
    existing table whose index cannot be added (a user without the right to) is used as it is:
    the index only makes the retention purge cheaper.
    """
    for attempt in range(attempts):
        table, index = _present(engine)
        if table and index:
            return
        try:
            with engine.begin() as conn:
                dialect = conn.dialect.name
                if dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK_KEY})
                if not table:
                    conn.execute(CreateTable(state_table, if_not_exists=True))
                if_not_exists = dialect in ("sqlite", "postgresql")  # MySQL has no CREATE INDEX IF NOT EXISTS
                conn.execute(CreateIndex(updated_at_index, if_not_exists=if_not_exists))
            return
        except SQLAlchemyError as exc:
            table, index = _present(engine)
            if table and not index:
                log.warning(
                    "resumable: could not add index %s to table %s (%s); using the table without it, "
                    "which makes the retention purge slower. Create it once as the table's owner: %s",
                    updated_at_index.name,
                    state_table.name,
                    exc,
                    str(CreateIndex(updated_at_index).compile(engine)).strip(),
                )
                return
            if table:
                return  # another process created both in the same instant
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _engine(url: str) -> Engine:
    """One engine (and pool) per URL per process, with the table created on first use."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if url.startswith("sqlite"):
                # Several task processes share one file: wait for the lock instead of failing.
                kwargs["connect_args"] = {"timeout": 30}
            engine = sa.create_engine(url, **kwargs)
            try:
                ensure_table(engine)
            except SQLAlchemyError:
                engine.dispose()
                raise
            _engines[url] = engine
        return engine


class SqlBackend(StateBackend):
    """Records in the ``resumable_state`` table of any SQLAlchemy database."""

    name: ClassVar[str] = "sql"
    atomic_compare_and_set: ClassVar[bool] = True

    def __init__(self, url: str, *, auto_purge: bool = True) -> None:
        """``auto_purge``: delete expired rows on first use (at most hourly); the CLI turns it off."""
        self.url = url
        self.auto_purge = auto_purge

    @property
    def engine(self) -> Engine:
        try:
            engine = _engine(self.url)
        except SQLAlchemyError as exc:
            raise StateBackendError(
                f"The sql state backend cannot use {self._safe_url()}: {exc}. Nothing was submitted. "
                "Fix [resumable] sql_alchemy_conn (AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN) or make the "
                "database reachable from the worker."
            ) from exc
        if self.auto_purge:
            self._purge_if_due(engine)
        return engine

    def purge(self, older_than: timedelta, *, dry_run: bool = False) -> int:
        """Delete every row (records and checkpoints) not written for ``older_than``; return how many.

        With ``dry_run``, count them and delete nothing.
        """
        if older_than <= timedelta(0):
            raise ValueError(f"older_than must be positive, got {older_than}")
        return _purge(self.engine, older_than, dry_run=dry_run)

    def _purge_if_due(self, engine: Engine) -> None:
        """The automatic purge: at most once per :data:`PURGE_EVERY_SECONDS` per process and URL.

        It never fails the caller: a task whose purge fails logs a warning and goes on.
        """
        now = time.monotonic()
        with _purge_lock:
            last = _purged_at.get(self.url)
            if last is not None and now - last < PURGE_EVERY_SECONDS:
                return
            _purged_at[self.url] = now
        try:
            days = config.state_retention_days()
            if days < 1:
                log.warning(
                    "resumable: [resumable] state_retention_days is %s, so no record of %s expires. "
                    "Set it to 1 or more (longer than any retry delay).",
                    days,
                    self._safe_url(),
                )
                return
            deleted = _purge(engine, timedelta(days=days))
        except Exception as exc:  # noqa: BLE001 - housekeeping never fails a task
            log.warning(
                "resumable: could not delete the records of %s older than [resumable] state_retention_days "
                "(%s: %s). Nothing else was affected and every record was kept; the next process tries "
                "again, or run `resumable state purge`.",
                self._safe_url(),
                type(exc).__name__,
                exc,
            )
            return
        if deleted:
            log.info(
                "resumable: deleted %s record(s) of %s not written for %s days",
                deleted,
                self._safe_url(),
                days,
            )

    def _safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def describe(self) -> str:
        return f"sql ({self._safe_url()})"

    def check(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.select(1))
        except SQLAlchemyError as exc:
            raise StateBackendError(
                f"The sql state backend at {self._safe_url()} is unreachable: {exc}. Nothing was "
                "submitted. Make the database reachable from the worker or point "
                "[resumable] sql_alchemy_conn (AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN) at one that is."
            ) from exc

    @staticmethod
    def _where(scope: TaskScope, key: str) -> Any:
        c = state_table.c
        return sa.and_(
            c.dag_id == scope.dag_id,
            c.run_id == scope.run_id,
            c.task_id == scope.task_id,
            c.map_index == scope.map_index,
            c.key == key,
        )

    def get(self, scope: TaskScope, key: str) -> Versioned | None:
        query = sa.select(state_table.c.value, state_table.c.version).where(self._where(scope, key))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        # Returned raw: a value that is not JSON is a corrupt record, which the caller reports.
        return None if row is None else Versioned(_loads(row.value), row.version)

    def put(self, scope: TaskScope, key: str, value: Any, expected_version: int | None) -> int:
        now = datetime.now(timezone.utc)
        text = json.dumps(value)
        with self.engine.begin() as conn:
            if expected_version is None:
                try:
                    conn.execute(
                        state_table.insert().values(
                            dag_id=scope.dag_id,
                            run_id=scope.run_id,
                            task_id=scope.task_id,
                            map_index=scope.map_index,
                            key=key,
                            value=text,
                            version=1,
                            updated_at=now,
                        )
                    )
                except IntegrityError as exc:
                    raise VersionConflict(f"{key!r} of {scope.describe()} already exists") from exc
                return 1
            result = conn.execute(
                state_table.update()
                .where(self._where(scope, key), state_table.c.version == expected_version)
                .values(value=text, version=expected_version + 1, updated_at=now)
            )
            if result.rowcount != 1:
                raise VersionConflict(
                    f"{key!r} of {scope.describe()} is no longer at version {expected_version}"
                )
            return expected_version + 1

    def delete(self, scope: TaskScope, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(state_table.delete().where(self._where(scope, key)))

    def delete_if_unchanged(self, scope: TaskScope, key: str, version: int) -> bool:
        """Delete ``key`` only while it still has ``version``; ``False`` when someone wrote it meanwhile."""
        with self.engine.begin() as conn:
            query = state_table.delete().where(self._where(scope, key), state_table.c.version == version)
            return bool(conn.execute(query).rowcount)

    def clear_hint(self, scope: TaskScope, key: str) -> str:
        return cli_clear_hint(scope, key, backend=self.name)


def _purge(engine: Engine, older_than: timedelta, *, dry_run: bool = False) -> int:
    """Count the expired rows first: a database with nothing to delete takes no write lock."""
    expired = state_table.c.updated_at < datetime.now(timezone.utc) - older_than
    count = sa.select(sa.func.count()).select_from(state_table).where(expired)
    with engine.begin() as conn:
        found = int(conn.execute(count).scalar_one())
        if dry_run or not found:
            return found
        return int(conn.execute(state_table.delete().where(expired)).rowcount)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
