"""The "Resumable jobs" page on a big backend: the database orders, filters and limits, and Python
gets one page of rows, not the table. The first page is the one the page showed when it read every
row and sorted in Python (:func:`resumable.records.page_of`, which :class:`ApiSource` still uses)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from resumable.records import Entry, MetadataSource, PageQuery, SqlSource, page_of
from resumable.state.sql import state_table
from resumable.ui import app
from resumable.ui.app import PHASES, Filters, page_query

#: Rows in the big table. Filling it takes about 15 s here (printed by the fixture).
ROWS = 1_000_000
#: The big table's DAGs, and the ones the user of the page may read.
DAGS = [f"dag_{n}" for n in range(10)]
READABLE = set(DAGS[:5])
BASE = datetime(2025, 1, 1, tzinfo=timezone.utc)


def record(phase: str, state: str | None) -> dict[str, Any]:
    return {
        "v": 1,
        "lineage": 1,
        "owner": 1,
        "seq": 1,
        "phase": phase,
        "token": "rsm-t",
        "operator": "m.Op",
        "handle": None if phase == "submitting" else {"system": "fake", "job_id": "7", "url": None},
        "last_status": {"state": state, "raw": state} if state else None,
    }


def run_id(i: int) -> str:
    """Row ``i``'s run: the three rows of one second are in another order by run id than by ``i``."""
    return f"r{i // 3:06d}-{(1, 0, 2)[i % 3]}"


def phase_of(i: int) -> str:
    """The phase the page shows for row ``i``."""
    return "unusable" if i % 101 == 0 else "done" if i % 2 else "submitted"


BIG_VALUES = {
    "done": json.dumps(record("done", "SUCCEEDED")),
    "submitted": json.dumps(record("submitted", "RUNNING")),
    "unusable": '{"v": 1, "phase": "submi',  # not JSON: listed as unusable, never a crash
}


def big_row(i: int) -> dict[str, Any]:
    """Row ``i``: three rows per second, so each timestamp is shared by three rows."""
    return {
        "dag_id": DAGS[i % len(DAGS)],
        "run_id": run_id(i),
        "task_id": "job",
        "map_index": -1,
        "key": "resumable.job",
        "value": BIG_VALUES[phase_of(i)],
        "version": 1,
        "updated_at": BASE + timedelta(seconds=i // 3),
    }


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> SqlSource:
    """A sql backend of :data:`ROWS` rows, filled with SQLAlchemy Core's executemany."""
    url = f"sqlite:///{tmp_path_factory.mktemp('big') / 'state.db'}"
    source = SqlSource(url)
    source.check()  # creates the table and its updated_at index
    started = time.perf_counter()
    with source.backend.engine.begin() as conn:
        for start in range(0, ROWS, 100_000):
            conn.execute(state_table.insert(), [big_row(i) for i in range(start, min(start + 100_000, ROWS))])
    print(f"\nfilled {ROWS} rows in {time.perf_counter() - started:.1f} s")
    return source


@contextmanager
def statements(engine: sa.engine.Engine) -> Iterator[list[tuple[str, Any]]]:
    """Every statement sent to ``engine`` meanwhile, with its parameters."""
    sent: list[tuple[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)


class _AuthManager:
    def __init__(self, readable: set[str]) -> None:
        self.readable = readable

    def get_authorized_dag_ids(self, user: Any, method: str) -> set[str]:
        return set(self.readable)


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, Any]]:
    """The page's :func:`~resumable.ui.app.rows` on a source of the test's, for a user who may read
    ``readable`` (Airflow's auth manager and metadata database are not involved)."""

    def rows(source: Any, filters: Filters, readable: set[str] = READABLE) -> dict[str, Any]:
        monkeypatch.setattr(app, "source", lambda: source)
        monkeypatch.setattr(app, "_auth_manager", lambda: _AuthManager(readable))
        return app.rows(object(), filters)

    monkeypatch.setattr(app, "_may_edit", lambda user, dag_id: False)
    monkeypatch.setattr(app, "_with_task_states", lambda entries: entries)
    return rows


def counting_entries(monkeypatch: pytest.MonkeyPatch, cls: type) -> list[int]:
    """Count the rows ``cls`` turns into entries: the rows that reached Python."""
    made = [0]
    real = cls.__dict__["_entry"].__func__

    def entry(row: Any) -> Entry:
        made[0] += 1
        return real(row)

    monkeypatch.setattr(cls, "_entry", staticmethod(entry))
    return made


def test_the_first_page_of_a_million_rows_is_read_with_order_by_and_limit(big, page, monkeypatch) -> None:
    made = counting_entries(monkeypatch, SqlSource)
    with statements(big.backend.engine) as sent:
        started = time.perf_counter()
        view = page(big, Filters(limit=100))
        took = time.perf_counter() - started
    print(f"first page of {ROWS} rows in {took:.2f} s")

    assert view["error"] is None
    # Newest first; rows of one second in run id order; only the DAGs the user may read.
    newest = sorted(
        (i for i in range(ROWS - 1000, ROWS) if DAGS[i % len(DAGS)] in READABLE),
        key=lambda i: (-(i // 3), run_id(i)),
    )[:100]
    assert [(r["dag_id"], r["run_id"], r["phase"]) for r in view["rows"]] == [
        (DAGS[i % len(DAGS)], run_id(i), phase_of(i)) for i in newest
    ]
    assert view["matched"] == ROWS // 2

    # The database was asked for one page, and only that page reached Python.
    assert made[0] == 100
    reads = [(s, p) for s, p in sent if "resumable_state.value" in s]
    assert len(reads) == 1, reads
    statement, parameters = reads[0]
    assert "ORDER BY resumable_state.updated_at DESC" in statement and "LIMIT" in statement
    assert 100 in parameters
    assert any("count(*)" in s.lower() for s, _ in sent)
    # SQLite walks the updated_at index newest first and stops at the limit: it sorts only the
    # rows of one second (ties), not the half million that match.
    with big.backend.engine.connect() as conn:
        steps = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    plan = " | ".join(str(step[3]) for step in steps)
    assert "USING INDEX ix_resumable_state_updated_at" in plan and "RIGHT PART OF ORDER BY" in plan, plan


def test_a_dag_and_a_run_of_a_million_rows_are_filtered_in_sql(big, page, monkeypatch) -> None:
    made = counting_entries(monkeypatch, SqlSource)
    i = ROWS - 10  # dag_0
    with statements(big.backend.engine) as sent:
        view = page(big, Filters(dag_id=DAGS[i % len(DAGS)], run_id=run_id(i), limit=5))
    assert [(r["dag_id"], r["run_id"]) for r in view["rows"]] == [(DAGS[i % len(DAGS)], run_id(i))]
    assert view["matched"] == 1 and made[0] == 1
    [(statement, _)] = [(s, p) for s, p in sent if "resumable_state.value" in s]
    assert "LIMIT" in statement

    # A DAG the user may not read: nothing, even when asked for by name.
    hidden = page(big, Filters(dag_id=DAGS[-1], limit=5))
    assert (hidden["rows"], hidden["matched"]) == ([], 0)


# ---- the same page as when Python sorted every row -------------------------------------------


def mixed_value(rng: random.Random, key: str) -> str:
    """Every kind of stored text: records of each phase and status, checkpoints, and unusable ones."""
    if key.startswith("checkpoint:"):
        return rng.choice([json.dumps({"cursor": rng.randint(0, 9)}), "{not json"])
    return rng.choice(
        [
            json.dumps(record("submitting", None)),
            json.dumps(record("submitted", "RUNNING")),
            json.dumps(record("submitted", "PENDING")),
            json.dumps(record("done", "SUCCEEDED")),
            json.dumps(record("done", "FAILED")),
            json.dumps({**record("done", "SUCCEEDED"), "v": 99}),
            '{"v": 1, "phase": "submi',
            json.dumps(json.dumps(record("submitted", "RUNNING"))),  # double-encoded
            json.dumps([1, 2]),
            "null",
        ]
    )


def mixed_rows(count: int) -> list[dict[str, Any]]:
    """``count`` rows over three DAGs with many ties on ``updated_at`` (ten distinct instants)."""
    rng = random.Random(20250101)
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    while len(rows) < count:
        scope = (
            f"d{rng.randint(0, 2)}",
            f"r{rng.randint(0, 9)}",
            f"t{rng.randint(0, 2)}",
            rng.choice([-1, 0, 1]),
            rng.choice(["resumable.job", "other.job", "checkpoint:c"]),
        )
        rows[scope] = {
            "dag_id": scope[0],
            "run_id": scope[1],
            "task_id": scope[2],
            "map_index": scope[3],
            "key": scope[4],
            "value": mixed_value(rng, scope[4]),
            "updated_at": BASE + timedelta(seconds=rng.randint(0, 9), microseconds=rng.choice([0, 500_000])),
        }
    return list(rows.values())


FILTERS = [
    Filters(),
    Filters(limit=7),
    Filters(limit=0),
    Filters(limit=-1),
    Filters(dag_id="d1", limit=20),
    Filters(dag_id="d2"),  # not readable
    Filters(run_id="r3", limit=15),
    Filters(dag_id="d0", run_id="r4"),
    *(Filters(phase=phase, limit=25) for phase in PHASES),
    Filters(status="RUNNING", limit=10),
    Filters(phase="done", status="FAILED"),
    Filters(dag_id="d1", phase="unusable", limit=3),
]


def same_page(source: Any, query: PageQuery) -> None:
    """``source.newest(query)`` is what Python made of every row, in :meth:`entries` order."""
    listed = source.entries(None, None, None, None)
    # The order entries() lists in, made total (ties across DAGs were the database's choice).
    listed.sort(key=lambda e: (e.scope.run_id, e.scope.task_id, e.scope.map_index, e.key, e.scope.dag_id))
    if isinstance(source, MetadataSource):
        listed.sort(key=lambda e: e.scope.dag_id)
    expected = page_of(listed, query)
    got = source.newest(query)

    def seen(entries: list[Entry]) -> list[tuple[Any, ...]]:
        return [(e.scope, e.key, e.updated_at, e.problem, e.phase) for e in entries]

    assert seen(got.entries) == seen(expected.entries)
    assert got.matched == expected.matched


@pytest.fixture(scope="module")
def mixed_sql(tmp_path_factory: pytest.TempPathFactory) -> SqlSource:
    """A sql backend of :func:`mixed_rows`."""
    source = SqlSource(f"sqlite:///{tmp_path_factory.mktemp('mixed') / 'state.db'}")
    source.check()
    with source.backend.engine.begin() as conn:
        conn.execute(state_table.insert(), [{**row, "version": 1} for row in mixed_rows(800)])
    return source


@pytest.mark.parametrize("filters", FILTERS, ids=repr)
def test_sql_source_pages_are_the_pages_python_made(mixed_sql, filters) -> None:
    same_page(mixed_sql, page_query(filters, {"d0", "d1"}))


@pytest.fixture(scope="module")
def metadata_engine(tmp_path_factory: pytest.TempPathFactory) -> sa.engine.Engine:
    """A SQLite file with Airflow's tables, its task state store filled with :func:`mixed_rows`."""
    pytest.importorskip(
        "airflow.models.task_state_store",
        reason="Airflow's task state store, which MetadataSource reads, exists from Airflow 3.3",
    )
    from airflow.models import import_all_models
    from airflow.models.base import Base
    from airflow.models.task_state_store import TaskStateStoreModel as S

    import_all_models()
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('airflow') / 'airflow.db'}")
    Base.metadata.create_all(engine)

    def enveloped(text: str) -> str:
        """As the airflow backend writes a value, when it is JSON."""
        try:
            return json.dumps({"__resumable_version__": 3, "value": json.loads(text)})
        except ValueError:
            return text

    rows = [
        {**row, "dag_run_id": n, "value": enveloped(row["value"]) if n % 2 else row["value"]}
        for n, row in enumerate(mixed_rows(800))
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(S.__table__), rows)
    return engine


@pytest.fixture
def metadata_source(metadata_engine: sa.engine.Engine, monkeypatch: pytest.MonkeyPatch) -> MetadataSource:
    """A :class:`MetadataSource` whose sessions are on :func:`metadata_engine`."""
    import airflow.utils.session
    from sqlalchemy.orm import Session

    @contextmanager
    def create_session() -> Iterator[Session]:
        with Session(metadata_engine) as session, session.begin():
            yield session

    monkeypatch.setattr(airflow.utils.session, "create_session", create_session)
    return MetadataSource("http://localhost:8080")


@pytest.mark.parametrize("filters", FILTERS, ids=repr)
def test_metadata_source_pages_are_the_pages_python_made(metadata_source, filters) -> None:
    same_page(metadata_source, page_query(filters, {"d0", "d1"}))


def test_metadata_source_reads_one_page_with_order_by_and_limit(
    metadata_source, metadata_engine, page, monkeypatch
) -> None:
    made = counting_entries(monkeypatch, MetadataSource)
    with statements(metadata_engine) as sent:
        view = page(metadata_source, Filters(limit=9), {"d0", "d1"})
    assert len(view["rows"]) == 9 and made[0] == 9
    [(statement, parameters)] = [(s, p) for s, p in sent if "task_state_store.value" in s]
    assert "ORDER BY task_state_store.updated_at DESC" in statement and "LIMIT" in statement
    assert 9 in parameters
