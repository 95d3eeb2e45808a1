"""``bench/fleet.py``'s arithmetic and report, without the fleet: how jobs seen by the emulators
become duplicates, lost jobs and times to polling again, and the table's columns in the order the
docs promise."""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.helpers import load_bench

fleet = load_bench("fleet")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert fleet.percentile(values, 0.5) == 50.0
    assert fleet.percentile(values, 0.99) == 99.0
    assert fleet.percentile([7.0], 0.99) == 7.0
    assert fleet.percentile([], 0.5) is None


def test_a_reattached_job_is_neither_a_duplicate_nor_lost() -> None:
    jobs = [{"cancelled": False, "polls": [5.0, 15.0, 112.0, 122.0]}]
    assert fleet.job_figures(jobs, restarted_at=100.0) == {
        "duplicates": 0,
        "cancelled": 0,
        "lost": 0,
        "repoll": 12.0,
    }


def test_a_resubmitting_retry_leaves_the_first_job_running_unwatched() -> None:
    first = {"cancelled": False, "polls": [5.0, 15.0]}
    second = {"cancelled": False, "polls": [130.0, 140.0]}
    assert fleet.job_figures([first, second], restarted_at=100.0) == {
        "duplicates": 1,
        "cancelled": 0,
        "lost": 1,
        "repoll": 30.0,
    }


def test_a_cancelled_job_counts_as_cancelled_not_lost_and_a_task_that_never_polls_has_no_time() -> None:
    jobs = [{"cancelled": True, "polls": [5.0]}]
    assert fleet.job_figures(jobs, restarted_at=100.0) == {
        "duplicates": 0,
        "cancelled": 1,
        "lost": 0,
        "repoll": None,
    }


def test_the_report_starts_with_the_promised_columns_and_marks_its_section(tmp_path: Path) -> None:
    ours = fleet.Row("resumable", tasks=40, deferrable=20, compute_ratio=1.0, repoll=[3.0, 9.0])
    theirs = fleet.Row("provider", tasks=40, deferrable=20, duplicates=10, lost=10, compute_ratio=1.25)
    rounds = [fleet.Round(1, [ours, theirs], worker_peak_mb=5000.0, triggerer_peak_mb=400.0, seconds=600.0)]
    args = argparse.Namespace(
        tasks=40,
        scales="1",
        workers=2,
        concurrency=28,
        poll=10.0,
        rate=30.0,
        plot=tmp_path / "images" / "fleet.svg",
        write=tmp_path / "benchmarks.md",
    )
    text = fleet.markdown(rounds, args, took=900.0)
    assert text.startswith(fleet.MARKER_BEGIN) and text.endswith(fleet.MARKER_END)
    header = next(line for line in text.splitlines() if line.startswith("| contender"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:6] == [
        "contender",
        "tasks",
        "duplicate submissions",
        "healthy jobs cancelled",
        "lost jobs",
        "failed task instances",
    ]
    assert "| resumable | 40 | 0 | 0 | 0 | 0 | 20 | 1.00 | 3.0 s / 9.0 s | 0 |" in text
    assert "| provider | 40 | 10 | 0 | 10 | 0 | 20 | 1.25 | n/a |" in text
    assert "![Fleet figures by tasks](images/fleet.svg)" in text

    svg = ET.fromstring(fleet.svg_plot(rounds))
    assert svg.tag.endswith("svg")
    assert len([e for e in svg.iter() if e.tag.endswith("polyline")]) == 3 + 3 * 2  # axes + a line each
