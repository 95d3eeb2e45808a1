"""The demo's verdict: every figure readable at 80 columns, and as JSON with ``resumable demo --json``.

The verdict used to be a rich table of eight columns. At 80 columns, the width of a small
terminal and what rich assumes for a file or a CI log, rich cut the columns that carry the
result (disruption, jobs, cancelled, compute, wall, final) to ``…``, and the table's title ran
into the last line of the live view. No Airflow here: the verdicts are built by hand, or from a
fake emulator.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from resumable import demo
from resumable.cli import build_parser, main
from resumable.demo import Demo, Verdict, passed, render_verdicts, verdict_document

#: A verdict of each kind the demo prints: ours and the provider's, the longest operator name and
#: task id of the demo, three-digit seconds, a failure of ours, and a task that never ran.
VERDICTS = [
    Verdict(
        "provider_sigterm",
        "provider (durable)",
        "SIGTERM (eviction)",
        2,
        1,
        95.3,
        130.4,
        "success",
        False,
        False,
    ),
    Verdict("resumable_sigterm", "resumable", "SIGTERM (eviction)", 1, 0, 61.0, 70.2, "success", True, True),
    Verdict(
        "provider_sigkill",
        "provider (durable)",
        "SIGKILL (lost node)",
        1,
        0,
        62.0,
        101.0,
        "success",
        False,
        True,
    ),
    Verdict(
        "provider_nodurable_sigkill",
        "provider, durable=False",
        "SIGKILL (lost node)",
        2,
        0,
        120.0,
        133.6,
        "success",
        False,
        False,
    ),
    Verdict(
        "resumable_sigkill", "resumable", "SIGKILL (lost node)", 3, 2, 180.9, 1234.5, "failed", True, False
    ),
    Verdict("provider", "provider", "a person marks it failed", 0, 0, 0.0, 600.0, "no status", False, False),
]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def rendered(verdicts: list[Verdict], *, terminal: bool, width: int = 80) -> list[str]:
    out = io.StringIO()
    render_verdicts(verdicts, Console(file=out, width=width, force_terminal=terminal))
    return ANSI.sub("", out.getvalue()).splitlines()


@pytest.mark.parametrize("terminal", [False, True], ids=["file", "terminal"])
def test_every_figure_of_every_task_is_printed_whole_at_80_columns(terminal: bool) -> None:
    lines = rendered(VERDICTS, terminal=terminal)
    text = "\n".join(lines)
    assert "…" not in text
    assert max(len(line) for line in lines) <= 80, text
    assert "What each operator did" in lines[0]
    for v in VERDICTS:
        # Its header names the task and the operator, the line after it carries every figure, and
        # the disruption heading above it names what hit it.
        header = next(i for i, line in enumerate(lines) if line.startswith(f"  {v.task} · {v.operator}  "))
        assert lines[header + 1] == (
            f"    jobs {v.jobs} · cancelled {v.cancelled} · compute {v.compute_seconds:.0f} s · "
            f"wall {v.wall_seconds:.0f} s · final {v.final}"
        ), text
        heading = [line for line in lines[:header] if line.startswith("disruption: ")][-1]
        assert heading == f"disruption: {v.disruption}", text
        assert ("✓ as expected" if v.as_expected else "✗ not as expected") in lines[header], text


def test_a_wide_terminal_prints_the_same_lines() -> None:
    narrow, wide = rendered(VERDICTS, terminal=True), rendered(VERDICTS, terminal=True, width=200)
    assert narrow[1:] == wide[1:]  # all but the rule, which spans the width


def test_a_narrow_terminal_wraps_the_figures_and_cuts_none() -> None:
    text = "\n".join(rendered(VERDICTS, terminal=True, width=50))
    assert "…" not in text
    words = " ".join(text.split())
    assert "provider_nodurable_sigkill · provider, durable=False" in words
    assert "jobs 3 · cancelled 2 · compute 181 s · wall 1234 s · final failed" in words


def test_the_json_document_carries_every_field_and_ok_looks_at_ours_only() -> None:
    document = json.loads(json.dumps(verdict_document("databricks", "resumable_demo_databricks", VERDICTS)))
    assert (document["scenario"], document["dag_id"], document["ok"]) == (
        "databricks",
        "resumable_demo_databricks",
        False,  # resumable_sigkill submitted three jobs
    )
    assert document["tasks"][3] == {
        "task": "provider_nodurable_sigkill",
        "operator": "provider, durable=False",
        "disruption": "SIGKILL (lost node)",
        "jobs": 2,
        "cancelled": 0,
        "compute_seconds": 120.0,
        "wall_seconds": 133.6,
        "final": "success",
        "ours": False,
        "as_expected": False,
    }
    assert [Verdict(**row) for row in document["tasks"]] == VERDICTS
    # The provider's operator doing worse than the scenario calls for is the demo's point, not a failure.
    assert passed(VERDICTS[:4])
    assert verdict_document("emr", "resumable_demo_emr", VERDICTS[:4])["ok"] is True


class FakeDatabricks:
    """The part of the Databricks emulator the verdict reads: runs by name, cancels, compute."""

    def __init__(self) -> None:
        self.runs = {
            "demo-provider_sigterm": [(1, "CANCELED"), (2, "SUCCESS")],
            "demo-resumable_sigterm": [(3, "SUCCESS")],
        }
        self.cancels = [1]

    def runs_named(self, name: str) -> list[dict[str, Any]]:
        return [
            {"run_id": run_id, "state": {"result_state": state, "life_cycle_state": "TERMINATED"}}
            for run_id, state in self.runs[name]
        ]

    def compute_seconds(self, name: str) -> float:
        return {"demo-provider_sigterm": 95.34, "demo-resumable_sigterm": 61.0}[name]


def test_the_verdicts_are_read_from_the_emulator_and_the_task_states() -> None:
    scenario = demo.Scenario(
        "resumable_demo_databricks",
        "databricks",
        [
            demo.Pair(
                ("provider_sigterm", "resumable_sigterm"), "SIGTERM (eviction)", "sigterm", 8, 1, "success"
            )
        ],
        "success",
    )
    run = Demo(SimpleNamespace(databricks=FakeDatabricks()), scenario)  # type: ignore[arg-type]
    run.states = {"provider_sigterm": {"state": "success"}, "resumable_sigterm": {"state": "success"}}
    run.first_seen = {"provider_sigterm": run.t0 + 1.0, "resumable_sigterm": run.t0 + 1.0}
    run.ended = {"provider_sigterm": run.t0 + 131.0, "resumable_sigterm": run.t0 + 71.25}
    assert run.verdicts() == [
        Verdict(
            "provider_sigterm",
            "provider (durable)",
            "SIGTERM (eviction)",
            2,
            1,
            95.3,
            130.0,
            "success",
            False,
            False,
        ),
        Verdict(
            "resumable_sigterm", "resumable", "SIGTERM (eviction)", 1, 0, 61.0, 70.2, "success", True, True
        ),
    ]


@pytest.mark.parametrize("terminal", [False, True], ids=["file", "terminal"])
def test_the_live_view_and_the_verdict_never_share_a_line(terminal: bool) -> None:
    """Off a terminal, rich's Live leaves its last line open: the verdict's rule used to join it."""
    stack = SimpleNamespace(trigger=lambda dag_id: "run", dag_run=lambda dag_id, run_id: {"state": "success"})
    run = Demo(SimpleNamespace(stack=stack), demo.Scenario("d", "databricks", [], "success"))  # type: ignore[arg-type]
    out = io.StringIO()
    assert run.run(Console(file=out, width=80, force_terminal=terminal)) == []
    lines = ANSI.sub("", out.getvalue()).splitlines()
    rule = next(i for i, line in enumerate(lines) if "What each operator did" in line)
    assert set(lines[rule]) <= {"─", " ", *"What each operator did"}, lines
    assert "waiting for every job to run" in lines[rule - 1 - terminal], lines


@pytest.mark.parametrize("ours_right, code", [(True, 0), (False, 1)])
def test_demo_json_writes_the_document_alone_to_stdout(
    monkeypatch, capsys, ours_right: bool, code: int
) -> None:
    """Everything but the document goes to stderr: the console's output and stray prints alike."""
    verdicts = [VERDICTS[0], replace(VERDICTS[1], as_expected=ours_right)]
    stopped = []
    lab = SimpleNamespace(
        databricks=SimpleNamespace(),
        aws=SimpleNamespace(),
        stack=SimpleNamespace(wait_for_dags=lambda dag_ids: None, url="http://localhost:1", home="/nowhere"),
        stop=lambda: stopped.append(True),
    )
    monkeypatch.setattr(demo, "CrashLab", lambda **kwargs: SimpleNamespace(start=lambda: lab))

    def run(self: Demo, console: Console) -> list[Verdict]:
        print("a stray print")
        console.print("the live view")
        render_verdicts(verdicts, console)
        return verdicts

    monkeypatch.setattr(Demo, "run", run)
    assert demo.main("databricks", keep=False, as_json=True) == code
    out, err = capsys.readouterr()
    assert json.loads(out) == verdict_document("databricks", "resumable_demo_databricks", verdicts)
    assert "a stray print" in err and "the live view" in err and "What each operator did" in err
    assert stopped == [True]


def test_demo_json_is_parsed_and_passed_to_the_demo_process(monkeypatch) -> None:
    assert build_parser().parse_args(["demo", "--json"]).json is True
    assert build_parser().parse_args(["demo"]).json is False
    calls: list[list[str]] = []

    def call(command: list[str], env: dict[str, str]) -> int:
        calls.append(command)
        return 1

    monkeypatch.setattr("resumable.cli.subprocess.call", call)
    assert main(["demo", "--scenario", "emr", "--json"]) == 1
    assert main(["demo", "--keep"]) == 1
    assert "d.main('emr', False, True)" in calls[0][-1]
    assert "d.main('databricks', True, False)" in calls[1][-1]
