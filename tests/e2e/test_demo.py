"""`resumable demo` as a user runs it: a real Airflow, workers killed, a verdict per operator."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.e2e


def test_demo_kills_workers_and_our_operator_keeps_one_job_each_time() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "resumable", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    # With --json, stdout is the verdict alone: the live view and the messages went to stderr.
    document = json.loads(done.stdout)
    assert (document["scenario"], document["ok"]) == ("databricks", True), document
    rows: dict[str, dict[str, Any]] = {row["task"]: row for row in document["tasks"]}
    assert set(rows) == {
        "provider_sigterm",
        "resumable_sigterm",
        "provider_sigkill",
        "provider_nodurable_sigkill",
        "resumable_sigkill",
    }
    for ours in ("resumable_sigterm", "resumable_sigkill"):
        row = rows[ours]
        assert (row["jobs"], row["cancelled"], row["final"], row["ours"]) == (1, 0, "success", True), row
    # The provider's operator, durable: it cancels its healthy job on SIGTERM and reattaches after a
    # SIGKILL; without durable (as before Airflow 3.3) it loses its job on SIGKILL and submits again.

    def first(task: str) -> tuple[Any, ...]:
        row = rows[task]
        return (row["operator"], row["disruption"], row["jobs"], row["cancelled"])

    assert first("provider_sigterm") == ("provider (durable)", "SIGTERM (eviction)", 2, 1), rows
    assert first("provider_sigkill") == ("provider (durable)", "SIGKILL (lost node)", 1, 0), rows
    nodurable = first("provider_nodurable_sigkill")
    assert nodurable[:3] == ("provider, durable=False", "SIGKILL (lost node)", 2), rows
