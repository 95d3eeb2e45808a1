"""A SQLAlchemy state backend: a version column and a conditional UPDATE give compare-and-set.

SQLite (the embedded default) serves one machine; PostgreSQL serves many workers. It works on
any Airflow, including versions whose workers cannot reach the metadata database.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from resumable.errors import StateBackendError, VersionConflict
from resumable.state.base import StateBackend, TaskScope, Versioned, cli_clear_hint

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

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


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
            metadata.create_all(engine, checkfirst=True)
            _engines[url] = engine
        return engine


class SqlBackend(StateBackend):
    """Records in the ``resumable_state`` table of any SQLAlchemy database."""

    name: ClassVar[str] = "sql"
    atomic_compare_and_set: ClassVar[bool] = True

    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def engine(self) -> Engine:
        try:
            return _engine(self.url)
        except SQLAlchemyError as exc:
            raise StateBackendError(
                f"The sql state backend cannot use {self._safe_url()}: {exc}. Nothing was submitted. "
                "Fix [resumable] sql_alchemy_conn (AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN) or make the "
                "database reachable from the worker."
            ) from exc

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

    def clear_hint(self, scope: TaskScope, key: str) -> str:
        return cli_clear_hint(scope, key)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
