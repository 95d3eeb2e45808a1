"""Test session set-up: a private AIRFLOW_HOME with a fresh SQLite metadata database.

The environment is set at import time, before anything imports Airflow, because Airflow reads
its configuration once, on import.
"""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="resumable-tests-airflow-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(_HOME, "dags"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.makedirs(os.path.join(_HOME, "dags"), exist_ok=True)
for var in (
    "RESUMABLE_FAULT_POINT",
    "RESUMABLE_FAULT_MODE",
    "RESUMABLE_FAULT_TRY",
    "RESUMABLE_FAULT_TASK",
    "RESUMABLE_FAULT_DAG",
    "RESUMABLE_FAULT_FILE",
):
    os.environ.pop(var, None)

import pytest  # noqa: E402

pytest_plugins = ["resumable.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def airflow_db(airflow_metadata_db: str) -> str:
    """An initialised metadata database (the kit's own fixture, as a DAG author's tests use it)."""
    return airflow_metadata_db


def _absent(name: str, why: str, variable: str) -> None:
    """Skip when a server is absent on a user's machine; fail instead when CI=true."""
    message = f"{name} is not reachable ({why})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(f"{message}; start it (or set {variable}) to run this test")


def postgres_server() -> tuple[str, str | None]:
    """The PostgreSQL server of the machine (``RESUMABLE_TEST_POSTGRES_URL`` to use another), and
    why it cannot be reached (``None`` when it can)."""
    import sqlalchemy as sa

    url = os.environ.get("RESUMABLE_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "absent"
        return url, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return url, None


@pytest.fixture(scope="session")
def postgres_reachability() -> tuple[str, str | None]:
    """:func:`postgres_server`'s answer, asked once per session."""
    return postgres_server()


@pytest.fixture(scope="session")
def postgres_url(postgres_reachability: tuple[str, str | None]) -> str:
    """The PostgreSQL server of the machine; the test skips without it (fails when CI=true)."""
    url, problem = postgres_reachability
    if problem:
        _absent("PostgreSQL", problem, "RESUMABLE_TEST_POSTGRES_URL")
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis server of the machine (``RESUMABLE_TEST_REDIS_URL`` to use another)."""
    import redis

    url = os.environ.get("RESUMABLE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "absent"
        _absent("Redis", f"{type(exc).__name__}: {str(exc).splitlines()[0]}", "RESUMABLE_TEST_REDIS_URL")
    return url
