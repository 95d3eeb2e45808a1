"""Chaos benchmark: random disruptions of running tasks on a real Airflow, ours beside the provider's.

Each trial starts one DAG run per contender at the same moment, on the same embedded Airflow
(LocalExecutor, SQLite) and the same emulated service, each running the same job. ``--system
databricks`` (the Databricks Jobs API emulator):

- ``resumable``: ``ResumableDatabricksSubmitRunOperator``;
- ``provider``: the provider's ``DatabricksSubmitRunOperator`` with its own ``durable`` persistence
  (Airflow 3.3's ResumableJobMixin);
- ``provider_nodurable``: the same with ``durable=False`` (what older Airflow and providers do).

``--system glue`` (moto with the kit's Glue driver): ``resumable`` (``ResumableGlueJobOperator``) and
``provider`` (``GlueJobOperator`` with its own ``durable``, on by default), each on a Glue job of its
own.

``--system sagemaker_training`` (moto with the kit's SageMaker driver): ``resumable``
(``ResumableSageMakerTrainingOperator``, which names the training job ``crash-resumable-<digest of
its token>``) and ``provider`` (``SageMakerTrainingOperator``, no ``durable``: with its defaults a
retry finds the job ``crash-provider`` exists and creates another under a timestamped name). The
emulator records no SageMaker polls, so the bench times the ``DescribeTrainingJob`` calls itself; a
poll is one made after the contender's newest job was created (the provider's existence check of
the job it is about to replace is not one).

``--system bigquery`` (the BigQuery emulator): ``resumable`` (``ResumableBigQueryInsertJobOperator``,
whose job id is its token) and ``provider`` (``BigQueryInsertJobOperator`` with its own ``durable``,
on by default, and its default ``force_rerun=True``: a random job id per insert); the jobs are told
apart by the ``airflow-dag`` label both put on them.

``--system snowflake`` (the SQL API emulator): ``resumable`` (``ResumableSnowflakeSqlApiOperator``,
whose request id comes from its token, sent with ``retry=true``) and ``provider``
(``SnowflakeSqlApiOperator`` with its own ``durable``); each statement names its contender.

``--system dbt_cloud`` (the dbt Cloud emulator): ``resumable`` (``ResumableDbtCloudRunJobOperator``,
whose token rides in the run's cause) and ``provider`` (``DbtCloudRunJobOperator``, which keeps no
state), each triggering runs of a dbt Cloud job of its own.

Then one disruption hits every contender at once: SIGKILL of the worker (task and supervisor) at a
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
    python bench/chaos.py --system glue --trials 9 --seed 7 --write docs/benchmarks.md
    python bench/chaos.py --system sagemaker_training --trials 6 --seed 7 --write docs/benchmarks.md
    python bench/chaos.py --system bigquery --trials 6 --seed 7 --write docs/benchmarks.md
    python bench/chaos.py --system snowflake --trials 6 --seed 7 --write docs/benchmarks.md
    python bench/chaos.py --system dbt_cloud --trials 6 --seed 7 --write docs/benchmarks.md
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

from resumable.testing.aws import JobScript
from resumable.testing.bigquery import JobScript as BigQueryJobScript
from resumable.testing.crash import GLUE_JOB, CrashLab
from resumable.testing.databricks import RunScript
from resumable.testing.dbt_cloud import RunScript as DbtRunScript
from resumable.testing.snowflake import StatementScript

DISRUPTIONS = ("sigkill", "sigterm", "kill_after_submit")
JOB_SECONDS = 30.0


class Service:
    """What the bench reads of one system's emulator, per contender."""

    system = ""
    contenders: tuple[str, ...] = ()
    provider_package = ""

    def __init__(self, lab: CrashLab) -> None:
        self.lab = lab

    def prepare(self) -> None:
        raise NotImplementedError

    def hold_submit(self, seconds: float) -> None:
        self.lab.hold_submit(self.system, seconds)

    def jobs(self, contender: str) -> list[str]:
        """Every job of ``contender``, oldest first."""
        raise NotImplementedError

    def cancels(self) -> set[str]:
        raise NotImplementedError

    def final(self, run: Any) -> str:
        """The job the DAG run's task finished with."""
        raise NotImplementedError

    def polls(self, job: str) -> list[float]:
        raise NotImplementedError

    def compute(self, job: str) -> float:
        raise NotImplementedError


class Databricks(Service):
    system = "databricks"
    contenders = ("resumable", "provider", "provider_nodurable")
    provider_package = "apache-airflow-providers-databricks"

    def prepare(self) -> None:
        self.lab.databricks.default_script = RunScript(duration=JOB_SECONDS, pending=1.0)

    def jobs(self, contender: str) -> list[str]:
        return [str(r["run_id"]) for r in self.lab.databricks.runs_named(f"crash-{contender}")]

    def cancels(self) -> set[str]:
        return {str(job) for job in self.lab.databricks.cancels}

    def final(self, run: Any) -> str:
        return str(self.lab.xcom(run, "run_id"))

    def polls(self, job: str) -> list[float]:
        return list(self.lab.databricks.polls.get(int(job), []))

    def compute(self, job: str) -> float:
        return float(self.lab.databricks.compute_seconds(run_id=int(job)))


class Glue(Service):
    system = "glue"
    contenders = ("resumable", "provider")
    provider_package = "apache-airflow-providers-amazon"

    def prepare(self) -> None:
        self.lab.aws.default_script = JobScript(duration=JOB_SECONDS, pending=1.0)

    def jobs(self, contender: str) -> list[str]:
        return self.lab.aws.glue_runs(f"{GLUE_JOB}-{contender}")

    def cancels(self) -> set[str]:
        return set(self.lab.aws.cancels)

    def final(self, run: Any) -> str:
        return str(self.lab.xcom(run, "return_value"))

    def polls(self, job: str) -> list[float]:
        return list(self.lab.aws.polls.get(job, []))

    def compute(self, job: str) -> float:
        return float(self.lab.aws.compute_seconds(job_id=job))


class SageMakerTraining(Service):
    system = "sagemaker_training"
    contenders = ("resumable", "provider")
    provider_package = "apache-airflow-providers-amazon"

    def prepare(self) -> None:
        aws = self.lab.aws
        aws.default_script = JobScript(duration=JOB_SECONDS, pending=1.0)
        # The emulator keeps no poll times for DescribeTrainingJob: note when each training job was
        # asked for (wall clock, as the tries' start dates) and when each was described.
        self.created: dict[str, float] = {}
        self.described: dict[str, list[float]] = {}
        answer = aws._sagemaker_call

        def record(operation: str, params: dict[str, Any]) -> Any:
            name = str(params.get("TrainingJobName", ""))
            if operation == "CreateTrainingJob":
                self.created.setdefault(name, time.time())
            elif operation == "DescribeTrainingJob":
                self.described.setdefault(name, []).append(time.time())
            return answer(operation, params)

        aws._sagemaker_call = record  # type: ignore[method-assign]

    def contender(self, job: str) -> str:
        return next(c for c in self.contenders if job == f"crash-{c}" or job.startswith(f"crash-{c}-"))

    def jobs(self, contender: str) -> list[str]:
        # The crash DAGs' TrainingJobName is crash-<contender>: ours appends a digest of its token, the
        # provider's a timestamp when the name is taken.
        base = f"crash-{contender}"
        return [j for j in self.lab.aws.job_ids("training") if j == base or j.startswith(f"{base}-")]

    def cancels(self) -> set[str]:
        return set(self.lab.aws.cancels)

    def final(self, run: Any) -> str:
        return self.lab.reported_job(run)

    def polls(self, job: str) -> list[float]:
        """Descriptions of ``job`` after the contender's newest job was created: the provider's retry
        describes the job it found to pick another name, then creates and polls that one."""
        newest = max(self.created.get(j, 0.0) for j in self.jobs(self.contender(job)))
        return [t for t in self.described.get(job, []) if t >= newest]

    def compute(self, job: str) -> float:
        return float(self.lab.aws.compute_seconds(job_id=job))


class BigQuery(Service):
    system = "bigquery"
    contenders = ("resumable", "provider")
    provider_package = "apache-airflow-providers-google"

    def prepare(self) -> None:
        self.lab.bigquery.default_script = BigQueryJobScript(duration=JOB_SECONDS, queued=1.0)

    def jobs(self, contender: str) -> list[str]:
        # Both operators label their jobs with the DAG's id (the provider's labels, kept by ours).
        emulator, dag = self.lab.bigquery, f"crash_bigquery_{contender}"
        return [job for job in emulator.jobs if emulator.labels(job).get("airflow-dag") == dag]

    def cancels(self) -> set[str]:
        return set(self.lab.bigquery.cancels)

    def final(self, run: Any) -> str:
        return str(self.lab.xcom(run, "return_value"))

    def polls(self, job: str) -> list[float]:
        return list(self.lab.bigquery.polls.get(job, []))

    def compute(self, job: str) -> float:
        return float(self.lab.bigquery.compute_seconds(job))


class Snowflake(Service):
    system = "snowflake"
    contenders = ("resumable", "provider")
    provider_package = "apache-airflow-providers-snowflake"

    def prepare(self) -> None:
        self.lab.snowflake.default_script = StatementScript(duration=JOB_SECONDS)

    def jobs(self, contender: str) -> list[str]:
        # The crash DAGs' statement names its contender.
        emulator = self.lab.snowflake
        return [h for h in emulator.handles if f"'{contender}'" in emulator.execution(h)["statement"]]

    def cancels(self) -> set[str]:
        return set(self.lab.snowflake.cancels)

    def final(self, run: Any) -> str:
        return self.lab.reported_job(run)

    def polls(self, job: str) -> list[float]:
        return list(self.lab.snowflake.polls.get(job, []))

    def compute(self, job: str) -> float:
        return float(self.lab.snowflake.compute_seconds(job))


class DbtCloud(Service):
    system = "dbt_cloud"
    contenders = ("resumable", "provider")
    provider_package = "apache-airflow-providers-dbt-cloud"

    def prepare(self) -> None:
        self.lab.dbt_cloud.default_script = DbtRunScript(duration=JOB_SECONDS, queued=1.0)

    def jobs(self, contender: str) -> list[str]:
        return [str(r) for r in self.lab.dbt_cloud.runs_of(self.lab.dbt_cloud_jobs[contender])]

    def cancels(self) -> set[str]:
        return {str(r) for r in self.lab.dbt_cloud.cancels}

    def final(self, run: Any) -> str:
        return str(self.lab.xcom(run, "return_value"))

    def polls(self, job: str) -> list[float]:
        return list(self.lab.dbt_cloud.polls.get(int(job), []))

    def compute(self, job: str) -> float:
        return float(self.lab.dbt_cloud.compute_seconds(int(job)))


SERVICES: dict[str, type[Service]] = {
    "databricks": Databricks,
    "glue": Glue,
    "sagemaker_training": SageMakerTraining,
    "bigquery": BigQuery,
    "snowflake": Snowflake,
    "dbt_cloud": DbtCloud,
}


def markers(system: str) -> tuple[str, str]:
    """The comments around the system's table in the Markdown file (Databricks keeps its old ones)."""
    tag = "chaos" if system == "databricks" else f"chaos-{system}"
    return f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"


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


def trial(service: Service, rng: random.Random, number: int, disruption: str) -> list[Outcome]:
    lab, contenders = service.lab, service.contenders
    at = rng.uniform(3.0, JOB_SECONDS - 8.0)
    # In the submit window the emulator holds its answer: the run exists, the worker has no id yet.
    service.hold_submit(3.0 if disruption == "kill_after_submit" else 0.0)
    before = {c: set(service.jobs(c)) for c in contenders}
    runs = {c: lab.start_run(service.system, c) for c in contenders}
    print(
        f"trial {number}: {disruption}" + ("" if disruption == "kill_after_submit" else f" at {at:.1f} s"),
        flush=True,
    )

    def new_jobs(contender: str) -> list[str]:
        return [job for job in service.jobs(contender) if job not in before[contender]]

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

    threads = [threading.Thread(target=disturb, args=(c,)) for c in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = []
    for contender in contenders:
        run = runs[contender]
        state = lab.finish(run, timeout=600)
        ids = new_jobs(contender)
        cancels = service.cancels()
        cancelled = sum(1 for i in ids if i in cancels)
        final = service.final(run) if state == "success" else None
        lost = sum(1 for i in ids if i not in cancels and i != final)
        tries = lab.stack.api("GET", f"dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/job/tries")
        second = [t for t in tries["task_instances"] if t["try_number"] == 2 and t.get("start_date")]
        resume = None
        if second:
            started = datetime.fromisoformat(second[0]["start_date"].replace("Z", "+00:00")).timestamp()
            polls = [p for i in ids for p in service.polls(i) if p >= started]
            resume = min(polls) - started if polls else None
        compute = sum(service.compute(i) for i in ids)
        outcomes.append(Outcome(contender, disruption, len(ids), cancelled, lost, state, compute, resume))
        print(f"  {contender:<20} jobs={len(ids)} cancelled={cancelled} lost={lost} run={state}", flush=True)
    return outcomes


def summarise(outcomes: list[Outcome], contenders: tuple[str, ...]) -> dict[str, Totals]:
    totals = {c: Totals() for c in contenders}
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
    service: Service,
    totals: dict[str, Totals],
    outcomes: list[Outcome],
    args: argparse.Namespace,
    took: float,
) -> str:
    begin, end = markers(service.system)
    by_kind = {
        d: sum(1 for o in outcomes if o.disruption == d) // len(service.contenders) for d in DISRUPTIONS
    }
    system = "" if service.system == "databricks" else f" --system {service.system}"
    lines = [
        begin,
        f"Run on {datetime.now().strftime('%Y-%m-%d')} with `python bench/chaos.py{system} --trials "
        f"{args.trials} --seed {args.seed}` in {took / 60:.1f} minutes: {args.trials} trials "
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
        f"{service.provider_package} {version(service.provider_package)}.",
        end,
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trials", type=int, default=9, help="trials (default %(default)s, about 100 seconds each)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--system", choices=sorted(SERVICES), default="databricks")
    parser.add_argument("--json", type=Path, help="write every outcome to this JSON file")
    parser.add_argument("--write", type=Path, help="replace the chaos section of this Markdown file")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    with CrashLab(env={"RESUMABLE_CRASH_RETRY_DELAY": "1"}) as lab:
        service = SERVICES[args.system](lab)
        service.prepare()
        # Each disruption as often as the others, in a random order.
        plan = [DISRUPTIONS[n % len(DISRUPTIONS)] for n in range(args.trials)]
        rng.shuffle(plan)
        outcomes = [o for n, kind in enumerate(plan, 1) for o in trial(service, rng, n, kind)]
    took = time.monotonic() - t0
    totals = summarise(outcomes, service.contenders)
    text = markdown(service, totals, outcomes, args, took)
    print(text)
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2))
    if args.write:
        page = args.write.read_text()
        begin, finish = markers(args.system)
        start, end = page.index(begin), page.index(finish) + len(finish)
        args.write.write_text(page[:start] + text + page[end:])
    ours = totals["resumable"]
    return 0 if (ours.duplicates, ours.cancelled, ours.lost, ours.failed_runs) == (0, 0, 0, 0) else 1


if __name__ == "__main__":
    sys.exit(main())
