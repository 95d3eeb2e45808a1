"""What resumability costs per attempt: state round trips and milliseconds, per backend.

Starts an embedded Airflow (the real API server, scheduler and LocalExecutor) with
``bench/overhead_dags.py`` and runs its DAG ``--runs`` times. In every run, side by side, one task
per contender runs one job that ends at its first status call and reports the round trips to its
state store and the milliseconds they took:

- ``ours_airflow``: ResumableMixin on Airflow's task_state_store (through the API server);
- ``ours_sqlite`` / ``ours_postgres``: ResumableMixin on the sql backend (SQLite file; PostgreSQL
  on 127.0.0.1:5432, skipped when unreachable);
- ``airflow33``: Airflow 3.3's own ResumableJobMixin on the task_state_store.

    python bench/overhead.py --runs 20 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import sqlalchemy as sa

from resumable.testing.stack import AirflowStack

#: How many status calls find the ``_polled`` tasks' jobs running (passed to bench/overhead_dags.py).
POLLS = 10

DAG_FILE = Path(__file__).with_name("overhead_dags.py")
MARKER_BEGIN, MARKER_END = "<!-- overhead:begin -->", "<!-- overhead:end -->"
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def postgres_database() -> tuple[str | None, str | None]:
    """A fresh database on the local PostgreSQL server, or (None, reason) when it is unreachable."""
    try:
        server = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        name = f"resumable_bench_{uuid.uuid4().hex[:8]}"
        with server.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        server.dispose()
    except Exception as error:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        return None, f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return sa.make_url(POSTGRES).set(database=name).render_as_string(hide_password=False), None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="DAG runs (default %(default)s)")
    parser.add_argument("--write", type=Path, help="replace the overhead section of this Markdown file")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="resumable-bench-")
    env = {"BENCH_SQL_OURS_SQLITE": f"sqlite:///{scratch}/state.db", "BENCH_POLLS": str(POLLS)}
    pg_url, pg_absent = postgres_database()
    if pg_url:
        env["BENCH_SQL_OURS_POSTGRES"] = pg_url
    else:
        print(f"PostgreSQL is not reachable ({pg_absent}); ours_postgres is left out.", file=sys.stderr)
    tasks = ["ours_airflow", "ours_sqlite", *(["ours_postgres"] if pg_url else []), "airflow33"]
    t0 = time.monotonic()
    samples: dict[str, list[dict[str, float]]] = {t + s: [] for t in tasks for s in ("", "_polled")}
    with AirflowStack(dags=[DAG_FILE], env=env) as stack:
        stack.wait_for_dags(["resumable_overhead"])
        run_ids = [stack.trigger("resumable_overhead") for _ in range(args.runs)]
        for run_id in run_ids:
            state = stack.wait_for_run("resumable_overhead", run_id, timeout=600)
            if state != "success":
                raise SystemExit(f"DAG run {run_id} ended {state}; see the task logs under {stack.home}")
            for task in tasks:
                path = (
                    f"dags/resumable_overhead/dagRuns/{run_id}/taskInstances/{task}/xcomEntries/return_value"
                )
                samples[task].append(stack.api("GET", path, params={"deserialize": True})["value"])
                twin = path.replace(f"/taskInstances/{task}/", f"/taskInstances/{task}_polled/")
                samples[f"{task}_polled"].append(
                    stack.api("GET", twin, params={"deserialize": True})["value"]
                )
    if pg_url:
        server = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        with server.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {sa.make_url(pg_url).database} WITH (FORCE)"))
        server.dispose()
    took = time.monotonic() - t0
    base = statistics.median(s["state_ms"] for s in samples["airflow33"])
    lines = [
        MARKER_BEGIN,
        f"Run on {datetime.now().strftime('%Y-%m-%d')} with `python bench/overhead.py --runs {args.runs}` "
        f"in {took / 60:.1f} minutes; medians over {args.runs} attempts per contender, "
        "all in the same DAG runs.",
        "",
        "| contender | state round trips per attempt | state ms per attempt | ms vs Airflow 3.3's mixin "
        f"| round trips with a job polled {POLLS} times |",
        "|---|---|---|---|---|",
    ]
    for task in tasks:
        trips = statistics.median(s["round_trips"] for s in samples[task])
        ms = statistics.median(s["state_ms"] for s in samples[task])
        polled = statistics.median(s["round_trips"] for s in samples[f"{task}_polled"])
        lines.append(f"| {task} | {trips:g} | {ms:.1f} | {ms / base:.1f}x | {polled:g} |")
    lines += [
        "",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, "
        f"apache-airflow {version('apache-airflow')}, SQLAlchemy {version('sqlalchemy')}"
        + (f", PostgreSQL at {sa.make_url(POSTGRES).host}." if pg_url else "."),
        MARKER_END,
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        page = args.write.read_text()
        start, end = page.index(MARKER_BEGIN), page.index(MARKER_END) + len(MARKER_END)
        args.write.write_text(page[:start] + text + page[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
