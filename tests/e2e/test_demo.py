"""`resumable demo` as a user runs it: a real Airflow, workers killed, one table per operator."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def report_rows(output: str) -> dict[str, list[str]]:
    """The rows of the final table, by task: operator, disruption, jobs, cancelled, compute, wall, final."""
    final = output[output.rindex("What each operator did") :]
    rows = {}
    for line in final.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 8 and cells[0] and cells[0] != "task":
            rows[cells[0]] = cells[1:]
    return rows


def test_demo_kills_workers_and_our_operator_keeps_one_job_each_time() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "resumable", "demo"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    rows = report_rows(done.stdout)
    assert set(rows) == {
        "provider_sigterm",
        "resumable_sigterm",
        "provider_sigkill",
        "provider_nodurable_sigkill",
        "resumable_sigkill",
    }
    for ours in ("resumable_sigterm", "resumable_sigkill"):
        operator, disruption, jobs, cancelled, compute, wall, final = rows[ours]
        assert (jobs, cancelled, final) == ("1", "0", "success"), rows[ours]
    # The provider's operator, durable: it cancels its healthy job on SIGTERM and reattaches after a
    # SIGKILL; without durable (as before Airflow 3.3) it loses its job on SIGKILL and submits again.
    assert rows["provider_sigterm"][:4] == ["provider (durable)", "SIGTERM (eviction)", "2", "1"], rows
    assert rows["provider_sigkill"][:4] == ["provider (durable)", "SIGKILL (lost node)", "1", "0"], rows
    nodurable = rows["provider_nodurable_sigkill"]
    assert nodurable[:3] == ["provider, durable=False", "SIGKILL (lost node)", "2"], rows
