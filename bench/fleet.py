"""Fleet benchmark: a whole worker pool and the triggerer lost while every task's job runs.

On the distributed tier (PostgreSQL metadata database, CeleryExecutor on Redis, ``--workers``
Celery workers, the triggerer), each round starts, per contender, four mapped tasks
(``bench/fleet_dags.py``): Databricks and EMR Serverless, each polling and deferrable:

- ``resumable``: ours (``ResumableDatabricksSubmitRunOperator``, ``ResumableEmrServerlessStartJobOperator``);
- ``provider``: the provider's operators (Databricks with its own ``durable`` persistence, Airflow
  3.3's ResumableJobMixin; EMR Serverless, which has none).

``--tasks`` N per contender: N/2 polling, and N/2 times the round's scale deferrable (``--scales``
1,2,4: the deferrable half grows). Once every job runs and every task polls it (or waits in the
triggerer), every Celery worker and the triggerer are SIGKILLed with all their task processes, then
started again. The jobs outlast that (``--job-seconds`` emulated seconds); once every task is polling
again, the bench measures a minute of polling, then moves the emulators' clocks to the jobs' end and
waits for every DAG run.

Per contender and round: duplicate submissions (jobs per task beyond one), healthy jobs cancelled
(no stop is asked for here), lost jobs (neither cancelled nor polled again after the restart: left
running with nobody watching), failed task instances, compute used / ideal (emulated running
seconds of all jobs over one job per task), time from the restart until a task polls its job again
(p50/p99 over tasks), status calls to the service per task per minute while polling, state-store
calls per task (the whole round, and per minute while polling) and the task state store's rows
afterwards. Per round: peak memory of the Celery workers (with their task processes) and of the
triggerer.

    python bench/fleet.py --tasks 48 --scales 1,2,4 --write docs/benchmarks.md --plot docs/images/fleet.svg
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
import requests
import sqlalchemy as sa

from resumable.testing.aws import JobScript
from resumable.testing.crash import CrashLab
from resumable.testing.databricks import RunScript
from resumable.testing.stack import postgres_database

CONTENDERS = ("resumable", "provider")
SYSTEMS = ("databricks", "emr_serverless")
MODES = ("poll", "deferrable")
DAG_FILE = Path(__file__).with_name("fleet_dags.py")
MARKER_BEGIN, MARKER_END = "<!-- fleet:begin -->", "<!-- fleet:end -->"
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379"
#: Seconds of polling the request rates are measured over.
WINDOW = 60.0


@dataclass
class Row:
    """One contender's figures in one round."""

    contender: str
    tasks: int
    deferrable: int
    duplicates: int = 0
    cancelled: int = 0
    lost: int = 0
    failed: int = 0
    compute_ratio: float = 0.0
    repoll: list[float] = field(default_factory=list)
    #: The time to poll again, split (seconds per task): from the restart until Airflow started the
    #: try's task process (polling) or the trigger in the new triggerer (deferrable); from the
    #: process start until Airflow called ``execute`` (it loads the DAG file; polling only); from
    #: ``execute`` or the trigger's start until the first status call (the operator's own part).
    airflow_part: list[float] = field(default_factory=list)
    load_part: list[float] = field(default_factory=list)
    operator_part: list[float] = field(default_factory=list)
    not_repolled: int = 0
    service_per_task_min: float = 0.0
    state_calls_per_task: float = 0.0
    state_per_task_min: float = 0.0
    state_rows: int = 0


@dataclass
class Round:
    scale: int
    rows: list[Row]
    worker_peak_mb: float
    triggerer_peak_mb: float
    seconds: float
    #: Requests the emulators refused with a throttling error during the round.
    throttled: int = 0


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by the nearest-rank method; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def job_figures(jobs: list[dict[str, Any]], restarted_at: float) -> dict[str, Any]:
    """Duplicates, cancels, lost jobs and the time to the first poll after the restart, for one task.

    ``jobs``: every job the task's name made, each ``{"cancelled": bool, "polls": [times]}``.
    """
    repolls = [p for j in jobs for p in j["polls"] if p >= restarted_at]
    lost = sum(1 for j in jobs if not j["cancelled"] and not any(p >= restarted_at for p in j["polls"]))
    return {
        "duplicates": max(0, len(jobs) - 1),
        "cancelled": sum(1 for j in jobs if j["cancelled"]),
        "lost": lost,
        "repoll": (min(repolls) - restarted_at) if repolls else None,
    }


class MemoryPeaks(threading.Thread):
    """Samples the memory of the Celery workers' and the triggerer's process trees: the proportional
    set size (PSS) of each process, so that pages a forked pool child shares with its parent count once."""

    def __init__(self, lab: CrashLab) -> None:
        super().__init__(daemon=True)
        self.lab, self.stopped = lab, threading.Event()
        self.workers = self.triggerer = 0.0

    @staticmethod
    def _tree_mb(pid: int) -> float:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_full_info().pss
            except (psutil.Error, AttributeError):  # PSS is Linux's; elsewhere the resident size
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
        return total / 2**20

    def run(self) -> None:
        while not self.stopped.wait(3.0):
            processes = dict(self.lab.stack.processes)
            workers = sum(
                self._tree_mb(p.pid) for n, p in processes.items() if n.startswith("celery-worker-")
            )
            triggerer = self._tree_mb(processes["triggerer"].pid) if "triggerer" in processes else 0.0
            self.workers, self.triggerer = max(self.workers, workers), max(self.triggerer, triggerer)


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def trigger_started(log_dir: Path, after: float) -> float | None:
    """When a triggerer started the trigger of the task instance whose logs are in ``log_dir``, the
    first time at or after ``after`` (Airflow's "trigger ... starting" line in the trigger's log)."""
    found = []
    for path in log_dir.glob("*.trigger.*.log"):
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            event = str(entry.get("event", ""))
            if event.startswith("trigger ") and event.endswith(" starting") and "timestamp" in entry:
                at = _timestamp(entry["timestamp"])
                if at >= after:
                    found.append(at)
    return min(found) if found else None


def split_repoll(
    restarted_at: float, first_poll: float | None, started: float | None, executed: float | None
) -> tuple[float | None, float | None, float | None]:
    """(Airflow's part, loading the DAG file, the operator's part) of one task's time to poll again:
    ``started`` is its process's or trigger's start, ``executed`` when ``execute`` began (``None`` for
    a trigger); each part is ``None`` where a moment it spans is unknown."""
    airflow = started - restarted_at if started is not None else None
    load = executed - started if executed is not None and started is not None else None
    handed = executed if executed is not None else started
    operator = first_poll - handed if first_poll is not None and handed is not None else None
    return airflow, load, operator


class Fleet:
    def __init__(
        self, lab: CrashLab, args: argparse.Namespace, calls_file: Path, db_url: str, starts_file: Path
    ) -> None:
        self.lab, self.args, self.calls_file, self.db_url = lab, args, calls_file, db_url
        self.starts_file = starts_file

    def executed_after(self, dag_id: str, map_index: int, after: float) -> float | None:
        """When a try of the task began ``execute``, the first time at or after ``after``."""
        if not self.starts_file.exists():
            return None
        found = []
        for line in self.starts_file.read_text().splitlines():
            dag, index, _try, at = line.split()
            if dag == dag_id and int(index) == map_index and float(at) >= after:
                found.append(float(at))
        return min(found) if found else None

    def process_started_after(self, dag_id: str, run_id: str, map_index: int, after: float) -> float | None:
        """When Airflow started a try's task process (the try's ``start_date``), the first at or after
        ``after``."""
        tries = self.lab.stack.api(
            "GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/job/{map_index}/tries"
        )["task_instances"]
        starts = [_timestamp(t["start_date"]) for t in tries if t.get("start_date")]
        later = [at for at in starts if at >= after]
        return min(later) if later else None

    def started_after(
        self, key: tuple[str, str, str], run_id: str, map_index: int, after: float
    ) -> float | None:
        dag_id = "fleet_" + "_".join(key)
        if key[2] == "poll":
            return self.process_started_after(dag_id, run_id, map_index, after)
        assert self.lab.stack.home is not None
        log_dir = (
            self.lab.stack.home
            / "logs"
            / f"dag_id={dag_id}"
            / f"run_id={run_id}"
            / "task_id=job"
            / f"map_index={map_index}"
        )
        return trigger_started(log_dir, after)

    # ---- what the emulators saw, per job name --------------------------------------------------

    def jobs_of(self, system: str, name: str) -> list[dict[str, Any]]:
        if system == "databricks":
            db = self.lab.databricks
            found = []
            for run in db.runs_named(name):
                run_id = int(run["run_id"])
                found.append(
                    {
                        "id": run_id,
                        "cancelled": run_id in db.cancels,
                        "polls": list(db.polls.get(run_id, [])),
                        "compute": db.compute_seconds(run_id=run_id),
                    }
                )
            return found
        aws = self.lab.aws
        jobs = aws.jobs_named(name)
        compute = aws.compute_seconds(name=name)
        return [
            {
                "id": j["id"],
                "cancelled": j["cancelled"],
                "polls": list(aws.polls.get(j["id"], [])),
                "compute": compute / len(jobs),
            }
            for j in jobs
        ]

    # ---- one round -------------------------------------------------------------------------------

    def groups(self, scale: int) -> dict[tuple[str, str, str], int]:
        """Tasks per (contender, system, mode): N/2 polling and N/2 x scale deferrable, split by system."""
        half = self.args.tasks // 2
        return {
            (c, s, m): (half if m == "poll" else half * scale) // len(SYSTEMS)
            for c in CONTENDERS
            for s in SYSTEMS
            for m in MODES
        }

    def run_round(self, number: int, scale: int) -> Round:
        lab, stack = self.lab, self.lab.stack
        t0 = time.monotonic()
        throttled_before = self.throttled()
        groups = self.groups(scale)
        runs: dict[tuple[str, str, str], str] = {}
        names: dict[tuple[str, str, str], list[str]] = {}
        for (contender, system, mode), n in groups.items():
            prefix = f"fleet{number}-{contender}-{system}-{mode}"
            dag_id = f"fleet_{contender}_{system}_{mode}"
            runs[(contender, system, mode)] = stack.trigger(dag_id, conf={"prefix": prefix, "n": n})
            names[(contender, system, mode)] = [f"{prefix}-{i}" for i in range(n)]
        total = sum(groups.values())
        print(f"round {number} (x{scale}): {total} tasks started", flush=True)
        peaks = MemoryPeaks(lab)
        peaks.start()

        def every_job_runs() -> bool:
            submitted = sum(
                1 for (_, system, _), ns in names.items() for name in ns if self.jobs_of(system, name)
            )
            print(f"  {submitted}/{total} jobs submitted", flush=True)
            return submitted == total

        lab.wait(every_job_runs, "every task to submit its job", self.args.timeout, interval=10)
        lab.wait(lambda: self.all_waiting(runs), "every task to poll or defer", self.args.timeout, interval=5)
        time.sleep(2 * self.args.poll)  # every task polls at least once more
        print("  killing every Celery worker and the triggerer", flush=True)
        doomed = [n for n in stack.processes if n.startswith("celery-worker-") or n == "triggerer"]
        for name in doomed:
            stack.kill(name, signal.SIGKILL)
        restarted_at = time.time()
        for name in doomed:
            stack.restart(name)

        def all_repolled() -> bool:
            waiting = sum(
                1
                for (_, system, _), ns in names.items()
                for name in ns
                if not any(p >= restarted_at for j in self.jobs_of(system, name) for p in j["polls"])
            )
            print(f"  {total - waiting}/{total} tasks polling again", flush=True)
            return waiting == 0

        try:
            lab.wait(all_repolled, "every task to poll its job again", self.args.timeout, interval=10)
        except Exception as error:  # noqa: BLE001 - reported as tasks that never polled again
            print(f"  {error}", flush=True)
        window_start = time.time()
        time.sleep(WINDOW)
        window_end = time.time()
        self.end_every_job(runs)
        peaks.stopped.set()
        peaks.join()
        calls = self.state_calls()
        rows = []
        for contender in CONTENDERS:
            keys = [k for k in groups if k[0] == contender]
            row = Row(contender, sum(groups[k] for k in keys), sum(groups[k] for k in keys if k[2] != "poll"))
            compute = 0.0
            polls_in_window = 0
            for key in keys:
                system = key[1]
                for map_index, name in enumerate(names[key]):
                    jobs = self.jobs_of(system, name)
                    figures = job_figures(jobs, restarted_at)
                    dag_id = "fleet_" + "_".join(key)
                    started = self.started_after(key, runs[key], map_index, restarted_at)
                    executed = (
                        self.executed_after(dag_id, map_index, restarted_at) if key[2] == "poll" else None
                    )
                    first_poll = None if figures["repoll"] is None else restarted_at + figures["repoll"]
                    for part, value in zip(
                        (row.airflow_part, row.load_part, row.operator_part),
                        split_repoll(restarted_at, first_poll, started, executed),
                        strict=True,
                    ):
                        if value is not None:
                            part.append(value)
                    row.duplicates += figures["duplicates"]
                    row.cancelled += figures["cancelled"]
                    row.lost += figures["lost"]
                    if figures["repoll"] is None:
                        row.not_repolled += 1
                    else:
                        row.repoll.append(figures["repoll"])
                    compute += sum(j["compute"] for j in jobs)
                    polls_in_window += sum(
                        1 for j in jobs for p in j["polls"] if window_start <= p < window_end
                    )
                row.failed += self.failed_tis("fleet_" + "_".join(key), runs[key])
            minutes = (window_end - window_start) / 60
            row.compute_ratio = compute / (row.tasks * self.args.job_seconds)
            row.service_per_task_min = polls_in_window / row.tasks / minutes
            mine = [c for c in calls if c[0].startswith(f"fleet_{contender}_") and c[2] >= t0_wall(t0)]
            row.state_calls_per_task = len(mine) / row.tasks
            row.state_per_task_min = (
                sum(1 for c in mine if window_start <= c[2] < window_end) / row.tasks / minutes
            )
            row.state_rows = self.state_rows(contender, [runs[k] for k in keys])
            rows.append(row)
            shown = {"repoll": summary(row.repoll), "airflow_part": summary(row.airflow_part)}
            shown |= {"load_part": summary(row.load_part), "operator_part": summary(row.operator_part)}
            print(f"  {contender}: {asdict(row) | shown}", flush=True)
        seconds = time.monotonic() - t0
        throttled = self.throttled() - throttled_before
        return Round(scale, rows, peaks.workers, peaks.triggerer, seconds, throttled)

    def end_every_job(self, runs: dict[tuple[str, str, str], str]) -> None:
        """End every job and wait for every DAG run. A job submitted after the emulators' clocks moved
        (a contender that submits again when its deferred task resumes) is ended too: the clocks move
        again every few seconds until every DAG run has finished."""
        deadline = time.monotonic() + self.args.timeout
        pending = {"fleet_" + "_".join(key): run_id for key, run_id in runs.items()}
        while pending:
            self.lab.databricks.advance(self.args.job_seconds)
            self.lab.aws.advance(self.args.job_seconds)
            for dag_id, run_id in list(pending.items()):
                try:
                    state = self.lab.stack.dag_run(dag_id, run_id)["state"]
                except requests.RequestException as error:  # an API server busy with every task ending
                    print(f"  could not read DAG run {dag_id}/{run_id} ({error}); asking again", flush=True)
                    continue
                if state in ("success", "failed"):
                    del pending[dag_id]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(
                    f"DAG runs still running after {self.args.timeout:.0f} s: {sorted(pending)}"
                )
            if pending:
                time.sleep(5)

    def throttled(self) -> int:
        return sum(self.lab.databricks.throttled.values()) + sum(self.lab.aws.throttled.values())

    def all_waiting(self, runs: dict[tuple[str, str, str], str]) -> bool:
        states: Counter[str] = Counter()
        for key, run_id in runs.items():
            for ti in self.task_instances("fleet_" + "_".join(key), run_id):
                states[str(ti["state"])] += 1
        print(f"  task states: {dict(states)}", flush=True)
        return set(states) <= {"running", "deferred"}

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        found = self.lab.stack.api(
            "GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 10_000}
        )["task_instances"]
        return [ti for ti in found if ti["task_id"] == "job"]

    def failed_tis(self, dag_id: str, run_id: str) -> int:
        return sum(1 for ti in self.task_instances(dag_id, run_id) if ti["state"] != "success")

    def state_calls(self) -> list[tuple[str, str, float]]:
        if not self.calls_file.exists():
            return []
        found = []
        for line in self.calls_file.read_text().splitlines():
            dag_id, call, at = line.split()
            found.append((dag_id, call, float(at)))
        return found

    def state_rows(self, contender: str, run_ids: list[str]) -> int:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return int(
                    conn.execute(
                        sa.text(
                            "SELECT count(*) FROM task_state_store "
                            "WHERE dag_id LIKE :dags AND run_id = ANY(:runs)"
                        ),
                        {"dags": f"fleet\\_{contender}\\_%", "runs": run_ids},
                    ).scalar_one()
                )
        finally:
            engine.dispose()


def t0_wall(t0_monotonic: float) -> float:
    """The wall-clock time of a ``time.monotonic()`` reading."""
    return time.time() - (time.monotonic() - t0_monotonic)


def summary(values: list[float]) -> str:
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    return "n/a" if p50 is None or p99 is None else f"{p50:.1f} s / {p99:.1f} s"


def markdown(rounds: list[Round], args: argparse.Namespace, took: float) -> str:
    lines = [
        MARKER_BEGIN,
        f"Run on {datetime.now().strftime('%Y-%m-%d')} with `python bench/fleet.py --tasks {args.tasks} "
        f"--scales {args.scales}` in {took / 60:.1f} minutes: {args.workers} Celery workers of "
        f"{args.concurrency} slots and the triggerer, all SIGKILLed and started again while every job ran; "
        f"jobs polled every {args.poll:g} s; each emulator throttles above {args.rate:g} requests a second.",
        "",
        "| contender | tasks | duplicate submissions | healthy jobs cancelled | lost jobs "
        "| failed task instances | deferrable tasks | compute used / ideal "
        "| restart to polling again (p50 / p99) | of which Airflow's: restart to process or trigger start "
        "| Airflow's: loading the DAG file | the operator's: to its first status call "
        "| never polled again | service calls per task-minute "
        "| state calls per task | state calls per task-minute | state rows after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        for row in r.rows:
            lines.append(
                f"| {row.contender} | {row.tasks} | {row.duplicates} | {row.cancelled} | {row.lost} "
                f"| {row.failed} "
                f"| {row.deferrable} | {row.compute_ratio:.2f} | {summary(row.repoll)} "
                f"| {summary(row.airflow_part)} | {summary(row.load_part)} | {summary(row.operator_part)} "
                f"| {row.not_repolled} "
                f"| {row.service_per_task_min:.1f} | {row.state_calls_per_task:.1f} "
                f"| {row.state_per_task_min:.2f} | {row.state_rows} |"
            )
    lines += [""]
    for r in rounds:
        lines.append(
            f"- Deferrable half x{r.scale}: peak memory {r.worker_peak_mb:,.0f} MB in the Celery workers "
            f"(with their task processes), {r.triggerer_peak_mb:,.0f} MB in the triggerer; "
            f"{r.throttled:,} requests throttled by the emulators; {r.seconds / 60:.1f} minutes."
        )
    if args.plot:
        lines += ["", f"![Fleet figures by tasks]({Path(args.plot).relative_to(Path(args.write).parent)})"]
    lines += [
        "",
        f"Machine: {platform.platform()}, {psutil.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GB, Python {platform.python_version()}, "
        f"apache-airflow {version('apache-airflow')}, "
        f"apache-airflow-providers-databricks {version('apache-airflow-providers-databricks')}, "
        f"apache-airflow-providers-amazon {version('apache-airflow-providers-amazon')}.",
        MARKER_END,
    ]
    return "\n".join(lines)


def svg_plot(rounds: list[Round]) -> str:
    """Two small line charts (tasks on x): restart-to-polling p99, and state calls per task."""
    panels = [
        ("restart to polling again, p99 (s)", lambda row: percentile(row.repoll, 0.99) or 0.0),
        ("state calls per task", lambda row: row.state_calls_per_task),
        ("duplicate submissions + lost jobs", lambda row: float(row.duplicates + row.lost)),
    ]
    colours = {"resumable": "#2b6cb0", "provider": "#c05621"}
    width, height, pad = 300, 220, 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * len(panels)}" height="{height + 30}" '
        'font-family="sans-serif" font-size="11">'
    ]
    for index, (title, value) in enumerate(panels):
        x0 = index * width
        series = {
            c: [(row.tasks, value(row)) for r in rounds for row in r.rows if row.contender == c]
            for c in CONTENDERS
        }
        xs = [x for points in series.values() for x, _ in points] or [1]
        ys = [y for points in series.values() for _, y in points] or [1.0]
        xmax, ymax = max(xs) * 1.05, (max(ys) * 1.1) or 1.0

        def at(x: float, y: float, x0: int = x0, xmax: float = xmax, ymax: float = ymax) -> str:
            px = x0 + pad + x / xmax * (width - 2 * pad)
            py = height - pad + 20 - y / ymax * (height - 2 * pad)
            return f"{px:.1f},{py:.1f}"

        parts.append(f'<text x="{x0 + pad}" y="14">{title}</text>')
        parts.append(f'<polyline fill="none" stroke="#999" points="{at(0, ymax)} {at(0, 0)} {at(xmax, 0)}"/>')
        parts.append(f'<text x="{x0 + pad - 4}" y="{height - pad + 34}">0</text>')
        parts.append(
            f'<text x="{x0 + width - pad - 30}" y="{height - pad + 34}">{xmax / 1.05:.0f} tasks</text>'
        )
        parts.append(f'<text x="{x0 + 2}" y="{pad + 20:.0f}">{ymax / 1.1:.1f}</text>')
        for contender, points in series.items():
            if points:
                line = " ".join(at(x, y) for x, y in sorted(points))
                parts.append(
                    f'<polyline fill="none" stroke="{colours[contender]}" stroke-width="2" points="{line}"/>'
                )
                for x, y in points:
                    cx, cy = at(x, y).split(",")
                    parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colours[contender]}"/>')
    for n, (contender, colour) in enumerate(colours.items()):
        parts.append(
            f'<text x="{pad + n * 120}" y="{height + 24}" fill="{colour}">&#9632; {contender}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", type=int, default=200, help="tasks per contender at scale 1 (default %(default)s)"
    )
    parser.add_argument(
        "--scales", default="1,2,4", help="multipliers of the deferrable half (default %(default)s)"
    )
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (default %(default)s)")
    parser.add_argument(
        "--concurrency",
        type=int,
        help="slots per worker (default: every polling task of both contenders, plus room)",
    )
    parser.add_argument(
        "--poll", type=float, default=10.0, help="seconds between status calls (default %(default)s)"
    )
    parser.add_argument("--job-seconds", type=float, default=3600.0, help="emulated length of every job")
    parser.add_argument(
        "--rate",
        type=float,
        default=30.0,
        help="requests per second each emulator answers before it throttles (default %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for each phase")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--write", type=Path, help="replace the fleet section of this Markdown file")
    parser.add_argument("--plot", type=Path, help="write the plot (SVG) here")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    polling = args.tasks // 2 * len(CONTENDERS)
    # Room for every polling task of both contenders, and a few slots more for the deferrable ones,
    # which hold a slot only until they defer.
    args.concurrency = args.concurrency or math.ceil(polling / args.workers) + 3
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    marks = Path(tempfile.mkdtemp(prefix="resumable-fleet-"))
    calls_file, starts_file = marks / "state-calls.txt", marks / "starts.txt"
    most = args.tasks // 2 * (1 + max(scales)) * len(CONTENDERS)
    env = {
        "RESUMABLE_FLEET_POLL": str(args.poll),
        "RESUMABLE_FLEET_CALLS": str(calls_file),
        "RESUMABLE_FLEET_STARTS": str(starts_file),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(most),
        "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": str(most),
        "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "512",
        "AIRFLOW__TRIGGERER__CAPACITY": str(most),
    }
    t0 = time.monotonic()
    rounds: list[Round] = []
    with (
        postgres_database(POSTGRES, prefix="resumable_fleet") as db_url,
        CrashLab(
            executor="CeleryExecutor",
            sql_alchemy_conn=db_url,
            broker_url=f"{REDIS}/10",
            celery_workers=args.workers,
            celery_concurrency=args.concurrency,
            parallelism=most,
            env=env,
            dag_files=[DAG_FILE],
        ) as lab,
    ):
        lab.databricks.default_script = RunScript(duration=args.job_seconds, pending=1.0)
        lab.databricks.rate_limit(args.rate)
        lab.aws.rate_limit(args.rate)
        lab.aws.default_script = JobScript(duration=args.job_seconds, pending=1.0)
        lab.stack.wait_for_dags([f"fleet_{c}_{s}_{m}" for c in CONTENDERS for s in SYSTEMS for m in MODES])
        fleet = Fleet(lab, args, calls_file, db_url, starts_file)
        for number, scale in enumerate(scales, 1):
            rounds.append(fleet.run_round(number, scale))
    took = time.monotonic() - t0
    text = markdown(rounds, args, took)
    print(text)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rounds], indent=2))
    if args.plot:
        args.plot.write_text(svg_plot(rounds))
    if args.write:
        page = args.write.read_text()
        start, end = page.index(MARKER_BEGIN), page.index(MARKER_END) + len(MARKER_END)
        args.write.write_text(page[:start] + text + page[end:])
    ours = [row for r in rounds for row in r.rows if row.contender == "resumable"]
    clean = all((r.duplicates, r.cancelled, r.lost, r.failed) == (0, 0, 0, 0) for r in ours)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
