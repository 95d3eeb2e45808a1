"""The embedded Airflow's processes: a process killed alone leaves no database lock behind, and
nothing it started outlives the stack."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import psutil
import pytest
import requests
import sqlalchemy as sa

from resumable.testing.stack import AirflowStack, postgres_database

# A process that locks a row in an open transaction and forks a child that inherits its database
# socket and lives on: a scheduler inside its critical section, with the LocalExecutor's workers.
_HOLDER = textwrap.dedent(
    """
    import os, sys, time
    import sqlalchemy as sa
    engine = sa.create_engine(sys.argv[1])
    conn = engine.connect()
    conn.execute(sa.text("SELECT id FROM slot FOR UPDATE"))
    if os.fork() == 0:
        while True:
            time.sleep(60)
    print("locked", flush=True)
    while True:
        time.sleep(60)
    """
)


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    with postgres_database(postgres_url, prefix="resumable_kit") as url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE slot (id integer primary key)"))
            conn.execute(sa.text("INSERT INTO slot VALUES (1)"))
        engine.dispose()
        yield url


def _lockable(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT id FROM slot FOR UPDATE NOWAIT"))
        return True
    except sa.exc.OperationalError as error:
        assert "could not obtain lock" in str(error)
        return False
    finally:
        engine.dispose()


def test_a_process_killed_alone_leaves_no_lock_and_its_children_end_with_the_stack(database: str) -> None:
    stack = AirflowStack(sql_alchemy_conn=database)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, database], stdout=subprocess.PIPE, start_new_session=True
    )
    stack.processes["scheduler"] = holder  # type: ignore[assignment]
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        (child,) = psutil.Process(holder.pid).children()
        assert not _lockable(database)

        stack.kill("scheduler", tree=False)

        assert holder.returncode is not None
        assert child.is_running()  # the workers go on running
        assert _lockable(database)  # but the dead process's transaction is over
    finally:
        stack.stop()
    assert not child.is_running()


def test_a_stack_whose_port_another_server_took_starts_on_another_one(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port a stack picked is taken before its API server binds it, by a server that answers the
    health check (another stack's): the stack does not take that server for its own; it starts again
    on another port, and its API is its own."""
    import http.server
    import threading

    from resumable.testing import stack as stack_module

    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    foreign = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Healthy)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    taken = foreign.server_address[1]
    stack = AirflowStack(sql_alchemy_conn=database)
    ports = iter([taken])  # the port start() picks first
    real = stack_module.free_port
    monkeypatch.setattr(stack_module, "free_port", lambda: next(ports, None) or real())
    try:
        stack.start()
        assert stack.port != taken
        assert stack._listening()
        assert requests.get(f"{stack.url}/api/v2/monitor/health", timeout=10).status_code == 200
    finally:
        stack.stop()
        foreign.shutdown()
        foreign.server_close()
