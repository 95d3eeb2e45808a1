"""``resumable demo``: a real Airflow loses workers; the provider's operator and ours side by side.

Starts an embedded Airflow (temporary AIRFLOW_HOME, SQLite, LocalExecutor, Airflow's own
``api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` commands) and the Databricks
Jobs API emulator (or moto for EMR) in this process, triggers a DAG whose tasks run the same
emulated one-minute job, disturbs them part way through, and prints what each operator did.

Scenarios (``--scenario``):

- ``databricks`` (default): SIGTERM to the workers of one pair of tasks (a pod eviction, a worker
  restart), later SIGKILL to three more (a lost node): the provider's operator with its ``durable``
  persistence (its best, on Airflow 3.3), the same with ``durable=False``, and ours.
- ``emr``: the same with EMR Serverless job runs.
- ``clear``: a person clears both running tasks through the REST API (the job should be rerun).
- ``mark-failed``: a person marks both running tasks failed (the job should be stopped).

It ends with a verdict per task (jobs submitted and cancelled, compute, wall time, final state),
printed in short lines that fit 80 columns, what rich assumes for a file or a CI log. With
``as_json`` the verdict is one JSON document on stdout and everything else goes to stderr.

Exits 1 if our operator submitted more jobs than the scenario calls for, lost its job, or did
not end as the scenario expects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from resumable.testing.aws import JobScript
from resumable.testing.crash import DEMO_DAG_FILE, CrashLab
from resumable.testing.databricks import RunScript

#: Emulated seconds per real second: the one-minute job takes 30 s.
SPEED = 2.0
JOB_SECONDS = 60.0


@dataclass
class Pair:
    """Tasks disturbed together, and what the scenario expects of ours."""

    tasks: tuple[str, ...]
    disruption: str
    action: str  # "sigterm", "sigkill", "clear", "mark-failed"
    after: float  # real seconds of the job's run before the disruption
    expect_runs: int
    expect_state: str


@dataclass
class Scenario:
    dag_id: str
    system: str
    pairs: list[Pair]
    expect_run: str
    done: set[str] = field(default_factory=set)


SCENARIOS = {
    "databricks": lambda: Scenario(
        "resumable_demo_databricks",
        "databricks",
        [
            Pair(("provider_sigterm", "resumable_sigterm"), "SIGTERM (eviction)", "sigterm", 8, 1, "success"),
            Pair(
                ("provider_sigkill", "provider_nodurable_sigkill", "resumable_sigkill"),
                "SIGKILL (lost node)",
                "sigkill",
                14,
                1,
                "success",
            ),
        ],
        "success",
    ),
    "emr": lambda: Scenario(
        "resumable_demo_emr",
        "emr",
        [
            Pair(("provider_sigterm", "resumable_sigterm"), "SIGTERM (eviction)", "sigterm", 8, 1, "success"),
            Pair(
                ("provider_sigkill", "resumable_sigkill"), "SIGKILL (lost node)", "sigkill", 14, 1, "success"
            ),
        ],
        "success",
    ),
    "clear": lambda: Scenario(
        "resumable_demo_people",
        "databricks",
        [Pair(("provider", "resumable"), "a person clears it", "clear", 8, 2, "success")],
        "success",
    ),
    "mark-failed": lambda: Scenario(
        "resumable_demo_people",
        "databricks",
        [Pair(("provider", "resumable"), "a person marks it failed", "mark-failed", 8, 1, "failed")],
        "failed",
    ),
}


#: How the demo DAGs configure each provider task (see resumable/testing/dags/resumable_demo_dags.py).
OPERATORS = {
    "resumable_demo_databricks": {
        "provider_sigterm": "provider (durable)",
        "provider_sigkill": "provider (durable)",
        "provider_nodurable_sigkill": "provider, durable=False",
    },
    "resumable_demo_emr": {},
    "resumable_demo_people": {},
}


@dataclass(frozen=True)
class Verdict:
    """What one task's operator did, as the demo measured it.

    ``compute_seconds`` are the emulated seconds its jobs ran; ``wall_seconds`` run from the
    task's first run to its end. ``as_expected``: the task submitted the jobs and ended in the
    state the scenario calls for (what counts for ours; for the provider's, it shows the
    difference).
    """

    task: str
    operator: str
    disruption: str
    jobs: int
    cancelled: int
    compute_seconds: float
    wall_seconds: float
    final: str
    ours: bool
    as_expected: bool


def passed(verdicts: Sequence[Verdict]) -> bool:
    """Whether each of our tasks did what the scenario calls for (the demo's exit code)."""
    return all(v.as_expected for v in verdicts if v.ours)


def render_verdicts(verdicts: Sequence[Verdict], console: Console, job_seconds: float = JOB_SECONDS) -> None:
    """Print the verdicts under a rule: per disruption, the tasks it hit, two short lines each.

    Not a table: eight columns do not fit 80, the width rich assumes for a file or a CI log, and
    rich then cut the figures to ``…``. With the demo's names every line here fits 80 columns; a
    narrower terminal wraps them, and nothing is ever cut. Text objects, not markup, so that no
    name is read as a style.
    """
    console.rule("What each operator did")
    disruption = None
    for v in verdicts:
        if v.disruption != disruption:
            disruption = v.disruption
            console.print(Text.assemble("disruption: ", (disruption, "bold")))
        mark = ("✓ as expected", "green") if v.as_expected else ("✗ not as expected", "red")
        console.print(Text.assemble("  ", (v.task, "bold" if v.ours else ""), " · ", v.operator, "  ", mark))
        final_style = {"success": "green", "failed": "red"}.get(v.final, "")
        console.print(
            Text.assemble(
                f"    jobs {v.jobs} · cancelled {v.cancelled} · compute {v.compute_seconds:.0f} s · "
                f"wall {v.wall_seconds:.0f} s · final ",
                (v.final, final_style),
            )
        )
    for note in (
        f"compute: emulated seconds the jobs ran (the job needs {job_seconds:.0f} s)",
        "wall: from the task's first run to its end",
        "as expected: the number of jobs and the final state the scenario calls for",
    ):
        console.print(Text(note, style="dim"))


def verdict_document(scenario: str, dag_id: str, verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """The verdicts as ``resumable demo --json`` prints them: one document, ``ok`` as the exit code."""
    return {
        "scenario": scenario,
        "dag_id": dag_id,
        "ok": passed(verdicts),
        "tasks": [asdict(v) for v in verdicts],
    }


class Demo:
    def __init__(self, lab: CrashLab, scenario: Scenario) -> None:
        self.lab, self.scenario = lab, scenario
        self.run_id = ""
        self.first_seen: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.events: list[str] = []
        self.t0 = time.monotonic()

    # ---- the emulated jobs of one task ------------------------------------------------------

    def jobs(self, task_id: str) -> list[dict[str, Any]]:
        name = f"demo-{task_id}"
        if self.scenario.system == "databricks":
            cancels = set(self.lab.databricks.cancels)
            return [
                {
                    "id": str(run["run_id"]),
                    "state": run["state"].get("result_state") or run["state"]["life_cycle_state"],
                    "cancelled": run["run_id"] in cancels,
                }
                for run in self.lab.databricks.runs_named(name)
            ]
        return self.lab.aws.jobs_named(name)

    def compute(self, task_id: str) -> float:
        name = f"demo-{task_id}"
        if self.scenario.system == "databricks":
            return self.lab.databricks.compute_seconds(name)
        return self.lab.aws.compute_seconds(name)

    # ---- the live view ------------------------------------------------------------------------

    def refresh(self) -> None:
        for pair in self.scenario.pairs:
            for task in pair.tasks:
                ti = self.lab.stack.task_instance(self.scenario.dag_id, self.run_id, task)
                self.states[task] = ti
                if ti["state"] == "running":
                    self.first_seen.setdefault(task, time.monotonic())
                if ti["state"] in ("success", "failed") and task not in self.ended:
                    self.ended[task] = time.monotonic()

    def view(self) -> Table:
        table = Table(
            title=f"{self.scenario.dag_id}, {time.monotonic() - self.t0:.0f} s",
            caption="\n".join(self.events) or "waiting for every job to run",
        )
        for column in ("task", "state", "try", "emulated jobs"):
            table.add_column(column, no_wrap=column != "emulated jobs")
        for pair in self.scenario.pairs:
            for task in pair.tasks:
                ti = self.states.get(task, {})
                jobs = ", ".join(
                    f"{j['id']} {j['state']}" + (" (cancel asked)" if j["cancelled"] else "")
                    for j in self.jobs(task)
                )
                table.add_row(task, str(ti.get("state")), str(ti.get("try_number", "")), jobs)
        return table

    # ---- disturbing the tasks -----------------------------------------------------------------

    def running_since(self, task: str) -> float | None:
        jobs = self.jobs(task)
        if not jobs or self.states.get(task, {}).get("state") != "running":
            return None
        return self.first_seen.get(task)

    def disturb(self, pair: Pair) -> None:
        dag_id, run_id = self.scenario.dag_id, self.run_id
        for task in pair.tasks:
            if pair.action in ("sigterm", "sigkill"):
                processes = self.lab.stack.running_task(dag_id, run_id, task)
                if pair.action == "sigterm":
                    processes.signal(signal.SIGTERM, which="supervisor")
                else:
                    processes.signal(signal.SIGKILL)
            elif pair.action == "clear":
                self.lab.stack.clear(dag_id, run_id, [task])
            else:
                self.lab.stack.mark(dag_id, run_id, task, "failed")
            self.events.append(f"{time.monotonic() - self.t0:.0f} s: {pair.disruption} -> {task}")

    def run(self, console: Console) -> list[Verdict]:
        self.run_id = self.lab.stack.trigger(self.scenario.dag_id)
        pending = list(self.scenario.pairs)
        with Live(self.view(), console=console, refresh_per_second=2) as live:
            while True:
                self.refresh()
                for pair in list(pending):
                    since = [s for s in (self.running_since(t) for t in pair.tasks) if s is not None]
                    if len(since) == len(pair.tasks) and time.monotonic() - max(since) >= pair.after:
                        self.disturb(pair)
                        pending.remove(pair)
                live.update(self.view())
                state = self.lab.stack.dag_run(self.scenario.dag_id, self.run_id)["state"]
                if state in ("success", "failed") and not pending:
                    break
                if time.monotonic() - self.t0 > 600:
                    self.events.append("the DAG run did not finish within 10 minutes")
                    break
                time.sleep(0.5)
            self.refresh()
            live.update(self.view())
        # Off a terminal, Live leaves its last line open: without this the verdict's first line
        # would join it. On a terminal it is the blank line between the two.
        console.line()
        return self.report(console)

    def verdicts(self) -> list[Verdict]:
        """What each task's operator did, from the jobs of the emulators and the task states seen."""
        verdicts: list[Verdict] = []
        for pair in self.scenario.pairs:
            for task in pair.tasks:
                jobs = self.jobs(task)
                state = self.states.get(task, {}).get("state")
                wall = self.ended.get(task, time.monotonic()) - self.first_seen.get(task, self.t0)
                ours = task.startswith("resumable")
                verdicts.append(
                    Verdict(
                        task=task,
                        operator=OPERATORS[self.scenario.dag_id].get(
                            task, "resumable" if ours else "provider"
                        ),
                        disruption=pair.disruption,
                        jobs=len(jobs),
                        cancelled=sum(1 for j in jobs if j["cancelled"]),
                        compute_seconds=round(self.compute(task), 1),
                        wall_seconds=round(wall, 1),
                        final=str(state) if state else "no status",
                        ours=ours,
                        as_expected=len(jobs) == pair.expect_runs and state == pair.expect_state,
                    )
                )
        return verdicts

    def report(self, console: Console) -> list[Verdict]:
        """Print the verdict of every task and return it (``passed`` says whether ours did right)."""
        verdicts = self.verdicts()
        render_verdicts(verdicts, console)
        return verdicts


def main(scenario_name: str = "databricks", keep: bool = False, as_json: bool = False) -> int:
    """Run the demo; 0 if our operator did what the scenario calls for, 1 if not.

    With ``as_json`` stdout carries only the verdict, one JSON document (``verdict_document``),
    so that ``resumable demo --json | python -m json.tool`` works: the console (status, live
    view, rendered verdict, messages) writes to stderr, and so does anything else that prints
    to stdout while the demo runs.
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stdout = sys.stdout
    with contextlib.ExitStack() as stack:
        if as_json:
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        return _run(scenario_name, keep, Console(stderr=as_json), stdout if as_json else None)


def _run(scenario_name: str, keep: bool, console: Console, json_out: TextIO | None) -> int:
    """The demo of ``main``; the JSON document goes to ``json_out`` when it is given."""
    scenario = SCENARIOS[scenario_name]()
    t0 = time.monotonic()
    with console.status("Starting an embedded Airflow (SQLite, LocalExecutor) and the emulators ..."):
        lab = CrashLab(speed=SPEED, dag_files=[DEMO_DAG_FILE], keep_home=keep).start()
    try:
        lab.databricks.default_script = RunScript(duration=JOB_SECONDS, pending=2.0)
        lab.aws.default_script = JobScript(duration=JOB_SECONDS, pending=2.0)
        lab.stack.wait_for_dags([scenario.dag_id])
        console.print(
            f"Airflow is up at {lab.stack.url} after {time.monotonic() - t0:.0f} s; each task runs the same "
            f"emulated {JOB_SECONDS:.0f}-second job ({SPEED:g}x real time).\n"
            "Tasks named provider_* run the provider's operator, resumable_* ours."
        )
        verdicts = Demo(lab, scenario).run(console)
        ok = passed(verdicts)
        if ok:
            console.print(
                "[green]Our operator kept one job per disruption that did not ask for a stop, and "
                "stopped or reran it when a person asked.[/green]"
            )
        else:
            console.print(
                "[red]FAILED: our operator submitted a job too many, lost its job, or ended wrong.[/red]"
            )
        console.print(f"Total time: {time.monotonic() - t0:.0f} s")
        if json_out is not None:
            # Before --keep waits: a reader of stdout gets the verdict as soon as there is one.
            json_out.write(
                json.dumps(verdict_document(scenario_name, scenario.dag_id, verdicts), indent=2) + "\n"
            )
            json_out.flush()
        if keep:
            console.print(
                f"\nAirflow stays up at {lab.stack.url} (no login: every visitor is an admin in this "
                f"embedded Airflow). Its home, with the task logs, is {lab.stack.home}.\n"
                "Press Ctrl+C to stop it."
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0 if ok else 1
    finally:
        lab.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "databricks"))
