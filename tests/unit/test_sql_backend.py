"""The ``sql`` state backend on SQLite and PostgreSQL: retention and purge, and concurrent first use.

Every test gets a database nobody used before (a new SQLite file, a new PostgreSQL schema), so
that "first use" really is the first: the table does not exist until the backend creates it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.schema import CreateTable

from resumable.state import SqlBackend, TaskScope
from resumable.state import sql as sql_module
from resumable.state.sql import ensure_table, state_table, updated_at_index

SCOPE = TaskScope("d", "r", "t")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / f'state-{uuid.uuid4().hex}.db'}"


@contextlib.contextmanager
def new_schema(postgres_url: str) -> Iterator[str]:
    """A URL whose connections live in a new, empty schema (``search_path``), dropped afterwards."""
    schema = f"resumable_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_url(postgres_url) -> Iterator[str]:
    with new_schema(postgres_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


def backdate(url: str, key: str, days: float) -> None:
    """Pretend ``key`` was last written ``days`` ago."""
    engine = sa.create_engine(url)
    when = datetime.now(timezone.utc) - timedelta(days=days)
    with engine.begin() as conn:
        conn.execute(state_table.update().where(state_table.c.key == key).values(updated_at=when))
    engine.dispose()


def keys(url: str) -> set[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = {row.key for row in conn.execute(sa.select(state_table.c.key))}
    engine.dispose()
    return found


# ---- retention and purge --------------------------------------------------------------------


def test_purge_deletes_only_what_was_not_written_for_longer_than_asked(url: str) -> None:
    backend = SqlBackend(url, auto_purge=False)
    for key in ("old.job", "checkpoint:old", "fresh.job", "edge.job"):
        backend.put(SCOPE, key, {"k": key}, None)
    backdate(url, "old.job", 120)
    backdate(url, "checkpoint:old", 91)
    backdate(url, "edge.job", 89)

    assert backend.purge(timedelta(days=90), dry_run=True) == 2
    assert keys(url) == {"old.job", "checkpoint:old", "fresh.job", "edge.job"}  # a dry run deletes nothing
    assert backend.purge(timedelta(days=90)) == 2
    assert keys(url) == {"fresh.job", "edge.job"}
    assert backend.purge(timedelta(days=90)) == 0
    # What is left still works as before: compare-and-set on the surviving record.
    assert backend.put(SCOPE, "edge.job", {"k": "again"}, 1) == 2


def test_purge_refuses_a_retention_that_would_delete_live_records(sqlite_url: str) -> None:
    backend = SqlBackend(sqlite_url, auto_purge=False)
    backend.put(SCOPE, "k", 1, None)
    for bad in (timedelta(0), timedelta(days=-1)):
        with pytest.raises(ValueError, match="must be positive"):
            backend.purge(bad)
    assert keys(sqlite_url) == {"k"}


def test_first_use_purges_expired_records_then_not_again_within_the_hour(url: str, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_RETENTION_DAYS", "30")
    writer = SqlBackend(url, auto_purge=False)
    writer.put(SCOPE, "expired", 1, None)
    writer.put(SCOPE, "kept", 1, None)
    backdate(url, "expired", 31)
    backdate(url, "kept", 29)
    monkeypatch.setattr(sql_module, "_purged_at", {})

    assert SqlBackend(url).get(SCOPE, "kept") is not None  # first use in this process: purges
    assert keys(url) == {"kept"}

    writer.put(SCOPE, "expired", 1, None)
    backdate(url, "expired", 31)
    SqlBackend(url).get(SCOPE, "kept")  # within the hour: no second purge
    assert keys(url) == {"kept", "expired"}

    sql_module._purged_at[url] -= sql_module.PURGE_EVERY_SECONDS + 1  # an hour later
    SqlBackend(url).get(SCOPE, "kept")
    assert keys(url) == {"kept"}


def test_a_failing_purge_never_fails_the_task(sqlite_url: str, monkeypatch, caplog) -> None:
    def broken(*args, **kwargs):
        raise OperationalError("DELETE ...", {}, Exception("database is locked"))

    monkeypatch.setattr(sql_module, "_purge", broken)
    monkeypatch.setattr(sql_module, "_purged_at", {})
    backend = SqlBackend(sqlite_url)
    with caplog.at_level(logging.WARNING, logger="resumable.state.sql"):
        assert backend.put(SCOPE, "k", {"a": 1}, None) == 1
        assert backend.get(SCOPE, "k").value == {"a": 1}  # type: ignore[union-attr]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # tried once per hour, not on every call
    assert "could not delete" in warnings[0] and "database is locked" in warnings[0]
    assert "every record was kept" in warnings[0] and "resumable state purge" in warnings[0]


def test_a_bad_retention_setting_deletes_nothing_and_says_so(sqlite_url: str, monkeypatch, caplog) -> None:
    writer = SqlBackend(sqlite_url, auto_purge=False)
    writer.put(SCOPE, "old", 1, None)
    backdate(sqlite_url, "old", 400)
    for value, says in (("0", "no record"), ("ninety", "could not delete")):
        monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_RETENTION_DAYS", value)
        monkeypatch.setattr(sql_module, "_purged_at", {})
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="resumable.state.sql"):
            assert SqlBackend(sqlite_url).get(SCOPE, "old") is not None
        assert says in caplog.text
    assert keys(sqlite_url) == {"old"}


# ---- concurrent first use -------------------------------------------------------------------


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_many_threads_with_fresh_engines_create_the_table_at_once(request, tmp_path, db: str) -> None:
    for _ in range(3):  # a new database each round: every round is a first use
        with contextlib.ExitStack() as stack:
            if db == "postgres":
                target = stack.enter_context(new_schema(request.getfixturevalue("postgres_url")))
            else:
                target = f"sqlite:///{tmp_path / f'race-{uuid.uuid4().hex}.db'}"
            errors = _race_threads(target, 8)
            assert errors == [], errors
            assert SqlBackend(target, auto_purge=False).put(SCOPE, "k", 1, None) == 1


def _race_threads(url: str, count: int) -> list[str]:
    barrier, errors = threading.Barrier(count), []

    def create() -> None:
        engine = sa.create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
        try:
            barrier.wait()
            ensure_table(engine)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            engine.dispose()

    threads = [threading.Thread(target=create) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def _first_write_in_a_new_process(url: str, barrier, results) -> None:
    try:
        barrier.wait(60)
        scope = TaskScope("d", f"r-{uuid.uuid4().hex}", "t")
        SqlBackend(url).put(scope, "resumable.job", {"n": 1}, None)
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put(f"{type(exc).__name__}: {str(exc)[:300]}")


def test_many_processes_write_their_first_record_at_once(url: str) -> None:
    """Each process creates its own engine and finds no table: only one CREATE may win, none may fail.

    Before the fix, about half of six processes failed here with "table resumable_state already
    exists" (SQLite) or a unique violation on ``pg_type_typname_nsp_index`` (PostgreSQL).
    """
    count = 6
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(count), context.Queue()
    processes = [
        context.Process(target=_first_write_in_a_new_process, args=(url, barrier, results))
        for _ in range(count)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    assert outcomes == ["ok"] * count
    assert keys(url) == {"resumable.job"}
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(state_table)).scalar_one() == count
    engine.dispose()


def test_a_table_created_by_an_older_version_gets_the_retention_index(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(CreateTable(state_table))  # the table alone, as before the index existed
    assert updated_at_index.name not in {i["name"] for i in sa.inspect(engine).get_indexes(state_table.name)}
    ensure_table(engine)
    ensure_table(engine)  # a second look finds both and changes nothing
    assert updated_at_index.name in {i["name"] for i in sa.inspect(engine).get_indexes(state_table.name)}
    engine.dispose()


def test_a_table_whose_index_cannot_be_added_is_used_without_it(tmp_path, caplog) -> None:
    """A worker that may read and write rows but not change the schema (here: a read-only file)."""
    path = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(CreateTable(state_table))
    engine.dispose()
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    with caplog.at_level(logging.WARNING, logger="resumable.state.sql"):
        assert SqlBackend(read_only, auto_purge=False).get(SCOPE, "k") is None
    assert "could not add index ix_resumable_state_updated_at" in caplog.text
    assert "CREATE INDEX ix_resumable_state_updated_at ON resumable_state (updated_at)" in caplog.text
