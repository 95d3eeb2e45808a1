"""The state layer's backends: versioned get, compare-and-set put, delete, async twins, selection."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest

from resumable.errors import StateBackendError, VersionConflict
from resumable.state import MemoryBackend, SqlBackend, StateBackend, TaskScope, backend_for


def new_scope() -> TaskScope:
    return TaskScope("dag", f"run-{uuid.uuid4().hex}", "task", -1)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request, tmp_path) -> Iterator[StateBackend]:
    if request.param == "memory":
        yield MemoryBackend()
    elif request.param == "sqlite":
        yield SqlBackend(f"sqlite:///{tmp_path / 'state.db'}")
    else:
        yield SqlBackend(request.getfixturevalue("postgres_url"))


def test_put_get_delete_with_versions(backend: StateBackend) -> None:
    scope = new_scope()
    assert backend.get(scope, "k") is None
    assert backend.put(scope, "k", {"a": 1}, None) == 1
    found = backend.get(scope, "k")
    assert found is not None and (found.value, found.version) == ({"a": 1}, 1)
    assert backend.put(scope, "k", {"a": 2}, 1) == 2
    assert backend.get(scope, "k").value == {"a": 2}  # type: ignore[union-attr]
    backend.delete(scope, "k")
    assert backend.get(scope, "k") is None
    backend.delete(scope, "k")  # absent: no error


def test_stale_version_is_refused_and_nothing_changes(backend: StateBackend) -> None:
    scope = new_scope()
    backend.put(scope, "k", "first", None)
    with pytest.raises(VersionConflict):
        backend.put(scope, "k", "second", None)
    backend.put(scope, "k", "second", 1)
    with pytest.raises(VersionConflict):
        backend.put(scope, "k", "stale", 1)
    assert backend.get(scope, "k").value == "second"  # type: ignore[union-attr]


def test_scopes_and_keys_are_separate(backend: StateBackend) -> None:
    scope, other = new_scope(), new_scope()
    backend.put(scope, "k", 1, None)
    backend.put(scope, "j", 2, None)
    backend.put(TaskScope(scope.dag_id, scope.run_id, scope.task_id, 0), "k", 3, None)
    assert backend.get(other, "k") is None
    assert [backend.get(scope, k).value for k in ("k", "j")] == [1, 2]  # type: ignore[union-attr]


def test_async_twins(backend: StateBackend) -> None:
    scope = new_scope()

    async def flow() -> object:
        await backend.aput(scope, "k", [1], None)
        found = await backend.aget(scope, "k")
        await backend.adelete(scope, "k")
        return found

    found = asyncio.run(flow())
    assert found is not None and found.value == [1]
    assert backend.get(scope, "k") is None


def _race(backend: StateBackend, writers: int, increments: int) -> tuple[int, int]:
    scope = new_scope()
    backend.put(scope, "counter", 0, None)
    conflicts = 0
    lock = threading.Lock()
    start = threading.Barrier(writers)

    def writer() -> None:
        nonlocal conflicts
        start.wait()
        for _ in range(increments):
            while True:
                found = backend.get(scope, "counter")
                assert found is not None
                try:
                    backend.put(scope, "counter", found.value + 1, found.version)
                    break
                except VersionConflict:
                    with lock:
                        conflicts += 1

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return backend.get(scope, "counter").value, conflicts  # type: ignore[union-attr]


def test_compare_and_set_holds_under_concurrent_writers_on_postgres(postgres_url: str) -> None:
    # Every increment is a read-modify-write; without a real compare-and-set some would be lost.
    total, conflicts = _race(SqlBackend(postgres_url), writers=8, increments=25)
    assert total == 8 * 25
    assert conflicts > 0, "the writers never collided, so the test proved nothing"


def test_only_one_of_many_concurrent_first_writers_wins_on_postgres(postgres_url: str) -> None:
    backend, scope = SqlBackend(postgres_url), new_scope()
    winners: list[int] = []
    start = threading.Barrier(8)

    def first(i: int) -> None:
        start.wait()
        try:
            backend.put(scope, "intent", i, None)
            winners.append(i)
        except VersionConflict:
            pass

    threads = [threading.Thread(target=first, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert backend.get(scope, "intent").value == winners[0]  # type: ignore[union-attr]


def test_compare_and_set_holds_under_concurrent_writers_on_sqlite(tmp_path) -> None:
    total, _ = _race(SqlBackend(f"sqlite:///{tmp_path / 'race.db'}"), writers=4, increments=10)
    assert total == 40


class _Ti:
    dag_id, run_id, task_id, map_index = "d", "r", "t", -1


def test_unknown_backend_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "redis")
    with pytest.raises(StateBackendError, match="not one of auto, airflow, sql, memory"):
        backend_for({"ti": _Ti()})


def test_airflow_backend_without_task_state_store_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "airflow")
    with pytest.raises(StateBackendError, match="needs Airflow >= 3.3"):
        backend_for({"ti": _Ti()})


def test_unreachable_sql_backend_is_a_clear_error_at_task_start(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "sql")
    monkeypatch.setenv(
        "AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://nobody@127.0.0.1:1/none"
    )
    with pytest.raises(StateBackendError, match="unreachable|cannot use") as info:
        backend_for({"ti": _Ti()})
    assert "AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN" in str(info.value)
    assert "postgresql+psycopg2://nobody@127.0.0.1:1/none" in str(info.value)


def test_auto_picks_sql_where_there_is_no_task_state_store(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "auto")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", f"sqlite:///{tmp_path / 'auto.db'}")
    assert isinstance(backend_for({"ti": _Ti()}), SqlBackend)


class _CountingStore:
    """The shape of Airflow's task_state_store accessor (get / set / delete), counting calls."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.calls: list[str] = []

    def get(self, key: str, default: object = None) -> object:
        self.calls.append("get")
        return self.values.get(key, default)

    def set(self, key: str, value: object, retention: object = None) -> None:
        self.calls.append("set")
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.calls.append("delete")
        self.values.pop(key, None)


def test_airflow_backend_reads_once_then_writes_without_reading_again(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "airflow")
    store = _CountingStore()
    backend = backend_for({"ti": _Ti(), "task_state_store": store})
    scope = TaskScope.from_context({"ti": _Ti()})
    assert backend.get(scope, "job") is None
    assert backend.put(scope, "job", "intent", None) == 1
    assert backend.put(scope, "job", "submitted", 1) == 2
    assert backend.put(scope, "job", "done", 2) == 3
    assert store.calls == ["get", "set", "set", "set"]
    with pytest.raises(VersionConflict, match="at version 3, not 1"):
        backend.put(scope, "job", "stale", 1)
    assert store.calls[-1] == "set"  # the stale write was refused without touching the store


def test_airflow_backend_reads_before_writing_a_key_it_has_not_seen(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "airflow")
    store = _CountingStore()
    earlier = backend_for({"ti": _Ti(), "task_state_store": store})
    scope = TaskScope.from_context({"ti": _Ti()})
    earlier.put(scope, "job", "first", None)
    later = backend_for({"ti": _Ti(), "task_state_store": store})
    with pytest.raises(VersionConflict, match="at version 1, not None"):
        later.put(scope, "job", "second", None)
    assert later.put(scope, "job", "second", 1) == 2
    assert later.get(scope, "job").value == "second"  # type: ignore[union-attr]


def test_a_sqlite_file_is_refused_under_an_executor_whose_workers_run_on_many_machines(
    monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("AIRFLOW__RESUMABLE__STATE_BACKEND", "sql")
    monkeypatch.setenv("AIRFLOW__RESUMABLE__SQL_ALCHEMY_CONN", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    with pytest.raises(StateBackendError, match="SQL_ALCHEMY_CONN.*PostgreSQL") as refused:
        backend_for({})
    assert "CeleryExecutor" in str(refused.value)
    assert "Nothing was submitted" in str(refused.value)

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    assert backend_for({}).name == "sql"
