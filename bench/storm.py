"""A reattach storm: many retries reattach at once to jobs that still run, against a throttled service.

What a lost worker pool leaves behind when the pool comes back: every task's retry starts in the
same second and asks the service about its job. The Databricks emulator answers at most
``--rate`` requests a second (429 ``REQUEST_LIMIT_EXCEEDED`` above it, as the Jobs API does);
each task is the real ``ResumableDatabricksSubmitRunOperator`` with the provider's real
``DatabricksHook``, and its record is what a first try writes once its job was submitted. Then
``--tasks`` second tries start together, each in its own thread, and run until their jobs end.

The figures: tasks that failed, jobs submitted during the storm (a reattach submits none) and
cancelled, the 429s the service answered, and the time from the storm's start until each task
had its job's status again (p50, p99, max): until then its retries back off with jitter
(tenacity, in the hook and in the operator).

The state backend is ``memory`` (the storm is about the service; the state round trips of an
attempt are measured by ``bench/overhead.py``).

    python bench/storm.py --tasks 500 --rate 30 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

MARKER_BEGIN, MARKER_END = "<!-- storm:begin -->", "<!-- storm:end -->"
DAG_ID, RUN_ID = "storm", "scheduled__2026-01-01T00:00:00+00:00"
RUN_AFTER = datetime(2026, 1, 1, tzinfo=timezone.utc)
#: Retries the tasks have (``max_tries``, the lineage, is this).
RETRIES = 2


class _Ti:
    """``context["ti"]`` of one try (what the operator reads of it, and the XComs it pushes)."""

    def __init__(self, task_id: str, try_number: int, task: Any) -> None:
        self.dag_id, self.run_id, self.task_id, self.map_index = DAG_ID, RUN_ID, task_id, -1
        self.try_number, self.max_tries, self.task = try_number, RETRIES, task

    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> None:
        pass


@dataclass
class _DagRun:
    dag_id: str = DAG_ID
    run_id: str = RUN_ID
    run_after: datetime = RUN_AFTER
    clear_number: int = 0
    start_date: datetime = RUN_AFTER


@dataclass
class StormResult:
    pacing: str
    tasks: int
    rate: float
    #: ``task_id: error`` of the tasks whose second try failed.
    failed: dict[str, str]
    submitted: int
    cancelled: int
    throttled: int
    calls: int
    #: Seconds from the storm's start until each task had its job's status again.
    repolled: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.repolled)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


#: The two ways of waiting the storm compares, side by side in one run.
PACINGS = {
    "backoff": "exponential backoff with jitter, Retry-After ignored",
    "retry-after": "Retry-After honoured, spread with jitter",
}


@functools.cache
def _ignoring_retry_after() -> type:
    """The operator waiting as it did before it read ``Retry-After``: exponential backoff with jitter
    in the operator, the provider's default backoff in the hook."""
    from resumable.operators.databricks import ResumableDatabricksSubmitRunOperator

    class IgnoresRetryAfter(ResumableDatabricksSubmitRunOperator):
        def retry_after(self, error: BaseException) -> float | None:
            return None

    return IgnoresRetryAfter


def _operator(task_id: str, poll_interval: float, pacing: str = "retry-after", **kwargs: Any) -> Any:
    from tenacity import stop_after_attempt, wait_exponential

    from resumable.operators.databricks import ResumableDatabricksSubmitRunOperator

    cls: type = ResumableDatabricksSubmitRunOperator
    if pacing == "backoff":
        cls = _ignoring_retry_after()
        # The provider hook's default retries (3 tries, exponential backoff), as the hook builds them.
        kwargs.setdefault(
            "databricks_retry_args", {"stop": stop_after_attempt(3), "wait": wait_exponential(min=0.5, max=8)}
        )
    return cls(
        **kwargs,
        task_id=task_id,
        json={"run_name": task_id, "tasks": [{"task_key": "main", "notebook_task": {"notebook_path": "/x"}}]},
        polling_period_seconds=poll_interval,
        retries=RETRIES,
        databricks_retry_delay=0.5,
    )


def _context(op: Any, try_number: int) -> dict[str, Any]:
    return {"ti": _Ti(op.task_id, try_number, op), "dag_run": _DagRun(), "run_id": RUN_ID}


def _first_try_left(task_id: str, run_id: int, url: str, poll_interval: float, pacing: str) -> None:
    """Write the record a first try writes once its job is submitted (then its worker was lost)."""
    from resumable.attempt import Attempt
    from resumable.job import JobHandle
    from resumable.record import Phase, Record

    op = _operator(task_id, poll_interval, pacing)
    attempt = Attempt.begin(
        _context(op, 1),
        key=op.state_key,
        operator=type(op),
        job_system=op.job_system,
        on_prior_failure="resubmit",
    )
    attempt.read()
    handle = JobHandle("databricks", str(run_id), url)
    record = Record(
        lineage=RETRIES, owner=1, seq=1, phase=Phase.SUBMITTED, token=f"storm-{task_id}", operator=""
    )
    attempt.write(attempt.stamp(record.evolve(operator=attempt.operator, handle=handle)))


def storm(
    tasks: int,
    rate: float,
    *,
    pacing: str = "retry-after",
    job_seconds: float = 40.0,
    poll_interval: float = 20.0,
    **operator_kwargs: Any,
) -> StormResult:
    """Run one storm of ``tasks`` reattaches against a service limited to ``rate`` requests a second,
    the second tries waiting out throttled calls as ``pacing`` says (a key of :data:`PACINGS`;
    ``operator_kwargs`` go to their operators)."""
    os.environ["AIRFLOW__RESUMABLE__STATE_BACKEND"] = "memory"
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

    from resumable.state.memory import MemoryBackend
    from resumable.testing.databricks import DatabricksEmulator, RunScript

    MemoryBackend._shared.clear()
    script = RunScript(duration=job_seconds, pending=0.0)
    with DatabricksEmulator(default_script=script) as emu, emu.use_as("databricks_default"):
        hook = DatabricksHook()
        ids = [f"t{i:04d}" for i in range(tasks)]
        for task_id in ids:
            run_id = hook.submit_run({"run_name": task_id, "tasks": [{"task_key": "main"}]})
            _first_try_left(task_id, run_id, hook.get_run_page_url(run_id), poll_interval, pacing)
        before = emu.stats()
        emu.rate_limit(rate, burst=max(1, int(rate)))

        failed: dict[str, str] = {}
        gate = threading.Barrier(tasks + 1)

        def second_try(task_id: str) -> None:
            op = _operator(task_id, poll_interval, pacing, **operator_kwargs)
            gate.wait()
            try:
                op.execute(_context(op, 2))
            except Exception as error:  # noqa: BLE001 - any failure is what the bench counts
                failed[task_id] = f"{type(error).__name__}: {error}"

        threads = [threading.Thread(target=second_try, args=(t,), daemon=True) for t in ids]
        for thread in threads:
            thread.start()
        gate.wait()
        started = time.time()
        for thread in threads:
            thread.join()
        seconds = time.time() - started
        after = emu.stats()
        runs = [int(r) for r in before["runs"]]
        answered = [[t for t in emu.polls.get(r, []) if t >= started] for r in runs]
        repolled = [min(times) - started for times in answered if times]
        return StormResult(
            pacing=pacing,
            tasks=tasks,
            rate=rate,
            failed=failed,
            submitted=len(after["runs"]) - len(before["runs"]),
            cancelled=len(after["cancels"]) - len(before["cancels"]),
            throttled=after["throttled"],
            calls=sum(after["calls"].values()) - sum(before["calls"].values()),
            repolled=repolled,
            seconds=seconds,
        )


def markdown(results: list[StormResult], command: str, seconds: float) -> str:
    first = results[0]
    floor = first.tasks / first.rate
    rows = [
        f"| {PACINGS[r.pacing]} | {r.tasks} | {r.rate:g}/s | {len(r.failed)} | {r.submitted} | {r.cancelled} "
        f"| {r.throttled} | {r.calls} | {r.quantile(0.5):.1f} s | {r.quantile(0.99):.1f} s "
        f"| {max(r.repolled, default=0):.1f} s | {r.quantile(0.99) / floor:.2f}x |"
        for r in results
    ]
    return "\n".join(
        [
            MARKER_BEGIN,
            f"Run on {datetime.now(timezone.utc):%Y-%m-%d} with `{command}` in {seconds / 60:.1f} minutes, "
            "one storm after the other.",
            "",
            "| waiting out a throttled call | tasks reattaching | service limit | tasks failed "
            "| jobs submitted | jobs cancelled | 429s answered | requests | back to polling: p50 | p99 | max "
            "| p99 / floor |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Floor: {first.tasks} status calls at {first.rate:g}/s take {floor:.1f} s. "
            f"Machine: {platform.platform()}, Python {platform.python_version()}, "
            f"apache-airflow-providers-databricks {version('apache-airflow-providers-databricks')}.",
            MARKER_END,
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=500, help="tasks whose retries reattach at once")
    parser.add_argument("--rate", type=float, default=30.0, help="requests a second the service answers")
    parser.add_argument("--job-seconds", type=float, default=40.0, help="how long each job runs")
    parser.add_argument(
        "--poll-interval", type=float, default=20.0, help="the operators' first poll interval"
    )
    parser.add_argument(
        "--pacing",
        nargs="+",
        choices=list(PACINGS),
        default=list(PACINGS),
        help="the ways of waiting out a throttled call to compare, one storm each (default: both)",
    )
    parser.add_argument("--write", type=Path, help="replace the storm section of this Markdown file")
    args = parser.parse_args()
    os.environ.setdefault(
        "AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"
    )  # one line per task would drown the table
    started = time.monotonic()
    results = [
        storm(
            args.tasks,
            args.rate,
            pacing=pacing,
            job_seconds=args.job_seconds,
            poll_interval=args.poll_interval,
        )
        for pacing in args.pacing
    ]
    command = f"python bench/storm.py --tasks {args.tasks} --rate {args.rate:g}"
    text = markdown(results, command, time.monotonic() - started)
    print(text)
    for result in results:
        for task_id, error in sorted(result.failed.items())[:10]:
            print(f"failed ({result.pacing}): {task_id}: {error}", file=sys.stderr)
    if args.write:
        page = args.write.read_text()
        start, end = page.index(MARKER_BEGIN), page.index(MARKER_END) + len(MARKER_END)
        args.write.write_text(page[:start] + text + page[end:])
    return 1 if any(r.failed or r.submitted or r.cancelled for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
