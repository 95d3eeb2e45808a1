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
    ours = fleet.Row(
        "resumable",
        tasks=40,
        deferrable=20,
        compute_ratio=1.0,
        repoll=[3.0, 9.0],
        airflow_part=[2.0, 7.0],
        load_part=[0.5],
        operator_part=[0.2, 0.4],
    )
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
    assert (
        "| resumable | 40 | 0 | 0 | 0 | 0 | 20 | 1.00 | 3.0 s / 9.0 s | 2.0 s / 7.0 s | 0.5 s / 0.5 s "
        "| 0.2 s / 0.4 s | 0 |" in text
    )
    assert "| provider | 40 | 10 | 0 | 10 | 0 | 20 | 1.25 | n/a | n/a | n/a | n/a |" in text
    assert "![Fleet figures by tasks](images/fleet.svg)" in text

    svg = ET.fromstring(fleet.svg_plot(rounds))
    assert svg.tag.endswith("svg")
    assert len([e for e in svg.iter() if e.tag.endswith("polyline")]) == 3 + 3 * 2  # axes + a line each


def test_the_time_to_poll_again_splits_into_airflows_part_and_the_operators() -> None:
    # A polling task: restart at 100, its retry's process at 130, execute at 133, first poll at 133.4.
    airflow, load, operator = fleet.split_repoll(100.0, 133.4, 130.0, 133.0)
    assert (airflow, load, round(operator, 3)) == (30.0, 3.0, 0.4)
    # A deferred task: its trigger started in the new triggerer at 112, and polled at 112.25.
    assert fleet.split_repoll(100.0, 112.25, 112.0, None) == (12.0, None, 0.25)
    # Nothing known past the restart: nothing to split.
    assert fleet.split_repoll(100.0, None, None, None) == (None, None, None)


def test_a_triggers_start_is_read_from_its_log_after_the_restart(tmp_path: Path) -> None:
    restart = fleet._timestamp("2026-12-06T07:00:00Z")
    (tmp_path / "attempt=1.log.trigger.3.log").write_text(
        '{"timestamp":"2026-12-06T06:59:00.000000Z","event":"trigger fleet/x/job/0/1 (ID 5) starting"}\n'
    )
    (tmp_path / "attempt=1.log.trigger.9.log").write_text(
        "not json\n"
        '{"timestamp":"2026-12-06T07:00:11.500000Z","event":"trigger fleet/x/job/0/1 (ID 5) starting"}\n'
        '{"timestamp":"2026-12-06T07:00:12.000000Z","event":"Trigger fired event"}\n'
    )
    assert fleet.trigger_started(tmp_path, restart) == restart + 11.5
    assert fleet.trigger_started(tmp_path, restart + 60) is None
