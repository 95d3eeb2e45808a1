"""Chaos benchmark: random disruptions of running Databricks tasks on a real Airflow, three contenders.

Each trial starts one DAG run per contender at the same moment, on the same embedded Airflow
(LocalExecutor, SQLite) and the same Databricks Jobs API emulator, each running the same job:

- ``resumable``: ``ResumableDatabricksSubmitRunOperator``;
- ``provider``: the provider's ``DatabricksSubmitRunOperator`` with its own ``durable`` persistence
  (Airflow 3.3's ResumableJobMixin);
- ``provider_nodurable``: the same with ``durable=False`` (what older Airflow and providers do).

Then one disruption hits all three at once: SIGKILL of the worker (task and supervisor) at a
random moment of the job; SIGTERM to the supervisor (graceful shutdown, a pod eviction) at a random
moment; or SIGKILL while the submit request is in flight: the emulator has created the run and
holds its answer for three seconds (the crash window between submit and persist). Each disruption
comes up equally often, in a random order.

Per contender it reports duplicate submissions, healthy jobs cancelled by a disruption (no
disruption here asks for a stop), lost jobs (submitted, neither cancelled nor the job the task
finished with: left running with nobody watching), failed DAG runs, emulated compute-seconds
used divided by the ideal (one job per trial), and the time from the retry's start to its first
poll of a job.

    python bench/chaos.py --trials 12 --seed 7 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from resumable.testing.crash import CrashLab
from resumable.testing.databricks import RunScript

CONTENDERS = ("resumable", "provider", "provider_nodurable")
DISRUPTIONS = ("sigkill", "sigterm", "kill_after_submit")
JOB_SECONDS = 30.0
MARKER_BEGIN, MARKER_END = "<!-- chaos:begin -->", "<!-- chaos:end -->"


@dataclass
class Outcome:
    contender: str
    disruption: str
    jobs: int
    cancelled: int
    lost: int
    run_state: str
    compute: float
    resume_seconds: float | None


@dataclass
class Totals:
    trials: int = 0
    duplicates: int = 0
    cancelled: int = 0
    lost: int = 0
    failed_runs: int = 0
    compute: float = 0.0
    resume: list[float] = field(default_factory=list)


def trial(lab: CrashLab, rng: random.Random, number: int, disruption: str) -> list[Outcome]:
    at = rng.uniform(3.0, JOB_SECONDS - 8.0)
    # In the submit window the emulator holds its answer: the run exists, the worker has no id yet.
    lab.databricks.submit_delay = 3.0 if disruption == "kill_after_submit" else 0.0
    names = {c: f"crash-{c}" for c in CONTENDERS}
    before = {c: {r["run_id"] for r in lab.databricks.runs_named(names[c])} for c in CONTENDERS}
    runs = {c: lab.start_run("databricks", c) for c in CONTENDERS}
    print(
        f"trial {number}: {disruption}" + ("" if disruption == "kill_after_submit" else f" at {at:.1f} s"),
        flush=True,
    )

    def new_jobs(contender: str) -> list[dict[str, Any]]:
        return [
            r for r in lab.databricks.runs_named(names[contender]) if r["run_id"] not in before[contender]
        ]

    def disturb(contender: str) -> None:
        run = runs[contender]
        lab.wait(lambda: bool(new_jobs(contender)), f"the first job of {contender}", 120, interval=0.01)
        if disruption != "kill_after_submit":
            time.sleep(at)
        processes = lab.processes(run)
        if disruption == "sigterm":
            processes.signal(signal.SIGTERM, which="supervisor")
        else:
            processes.signal(signal.SIGKILL)

    threads = [threading.Thread(target=disturb, args=(c,)) for c in CONTENDERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = []
    for contender in CONTENDERS:
        run = runs[contender]
        state = lab.finish(run, timeout=600)
        jobs = new_jobs(contender)
        ids = [int(j["run_id"]) for j in jobs]
        cancelled = sum(1 for i in ids if i in lab.databricks.cancels)
        final = None
        if state == "success":
            final = int(lab.xcom(run, "run_id"))
        lost = sum(1 for i in ids if i not in lab.databricks.cancels and i != final)
        tries = lab.stack.api("GET", f"dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/job/tries")
        second = [t for t in tries["task_instances"] if t["try_number"] == 2 and t.get("start_date")]
        resume = None
        if second:
            started = datetime.fromisoformat(second[0]["start_date"].replace("Z", "+00:00")).timestamp()
            polls = [p for i in ids for p in lab.databricks.polls.get(i, []) if p >= started]
            resume = min(polls) - started if polls else None
        compute = sum(lab.databricks.compute_seconds(run_id=i) for i in ids)
        outcomes.append(Outcome(contender, disruption, len(ids), cancelled, lost, state, compute, resume))
        print(f"  {contender:<20} jobs={len(ids)} cancelled={cancelled} lost={lost} run={state}", flush=True)
    return outcomes


def summarise(outcomes: list[Outcome]) -> dict[str, Totals]:
    totals = {c: Totals() for c in CONTENDERS}
    for o in outcomes:
        t = totals[o.contender]
        t.trials += 1
        t.duplicates += max(0, o.jobs - 1)
        t.cancelled += o.cancelled
        t.lost += o.lost
        t.failed_runs += o.run_state != "success"
        t.compute += o.compute
        if o.resume_seconds is not None:
            t.resume.append(o.resume_seconds)
    return totals


def markdown(
    totals: dict[str, Totals], outcomes: list[Outcome], args: argparse.Namespace, took: float
) -> str:
    by_kind = {d: sum(1 for o in outcomes if o.disruption == d) // len(CONTENDERS) for d in DISRUPTIONS}
    lines = [
        MARKER_BEGIN,
        f"Run on {datetime.now().strftime('%Y-%m-%d')} with `python bench/chaos.py --trials {args.trials} "
        f"--seed {args.seed}` in {took / 60:.1f} minutes: {args.trials} trials "
        f"({', '.join(f'{n} {d}' for d, n in by_kind.items())}), a {JOB_SECONDS:.0f}-second job each.",
        "",
        "| contender | duplicate submissions | healthy jobs cancelled | lost jobs | failed DAG runs "
        "| compute used / ideal | retry start to first poll (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for contender, t in totals.items():
        ratio = t.compute / (JOB_SECONDS * t.trials) if t.trials else 0.0
        resume = f"{statistics.median(t.resume):.1f} s" if t.resume else "n/a"
        lines.append(
            f"| {contender} | {t.duplicates} | {t.cancelled} | {t.lost} | {t.failed_runs} "
            f"| {ratio:.2f} | {resume} |"
        )
    lines += [
        "",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, "
        f"apache-airflow {version('apache-airflow')}, "
        f"apache-airflow-providers-databricks {version('apache-airflow-providers-databricks')}.",
        MARKER_END,
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trials", type=int, default=9, help="trials (default %(default)s, about 100 seconds each)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write every outcome to this JSON file")
    parser.add_argument("--write", type=Path, help="replace the chaos section of this Markdown file")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    with CrashLab(env={"RESUMABLE_CRASH_RETRY_DELAY": "1"}) as lab:
        lab.databricks.default_script = RunScript(duration=JOB_SECONDS, pending=1.0)
        # Each disruption as often as the others, in a random order.
        plan = [DISRUPTIONS[n % len(DISRUPTIONS)] for n in range(args.trials)]
        rng.shuffle(plan)
        outcomes = [o for n, kind in enumerate(plan, 1) for o in trial(lab, rng, n, kind)]
    took = time.monotonic() - t0
    totals = summarise(outcomes)
    text = markdown(totals, outcomes, args, took)
    print(text)
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2))
    if args.write:
        page = args.write.read_text()
        start, end = page.index(MARKER_BEGIN), page.index(MARKER_END) + len(MARKER_END)
        args.write.write_text(page[:start] + text + page[end:])
    ours = totals["resumable"]
    return 0 if (ours.duplicates, ours.cancelled, ours.lost, ours.failed_runs) == (0, 0, 0, 0) else 1


if __name__ == "__main__":
    sys.exit(main())
