"""The metrics the docs name are the ones the tasks count, through Airflow's own ``Stats``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from resumable.job import JobState
from resumable.protocol import Action
from resumable.testing.airflow import run_dag, task_states
from resumable.testing.fake import FakeJobService

ROOT = Path(__file__).resolve().parents[2]


def documented() -> set[str]:
    """Every metric name ``docs/concepts.md`` lists, its ``<a|b>`` alternatives spelled out."""
    text = (ROOT / "docs" / "concepts.md").read_text()
    text = text[text.index("counted with Airflow's metrics") :].split("\n\n")[0]
    names: set[str] = set()
    for name in re.findall(r"`(resumable\.[a-z_.]+(?:<[a-z_|]+>)?)`", text):
        stem, _, choices = name.partition("<")
        names.update(stem + c for c in choices.rstrip(">").split("|")) if choices else names.add(name)
    return names


def test_the_docs_name_every_metric_the_code_can_count() -> None:
    assert documented() == {
        *(f"resumable.decision.{a.value}" for a in Action),
        "resumable.submit",
        "resumable.reattach",
        "resumable.repair",
        *(f"resumable.job.{s.value.lower()}" for s in JobState if not s.is_active),
        "resumable.kill.cancel",
        "resumable.kill.keep",
    }


def test_a_retry_that_reattaches_counts_what_the_docs_say(make_dag, fault, monkeypatch) -> None:
    from resumable import _compat

    counted: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        _compat.Stats, "incr", lambda name, *args, tags=None, **kw: counted.append((name, tags or {}))
    )
    fault("while_polling")
    dag, svc = make_dag(FakeJobService(polls=3))
    assert task_states(run_dag(dag)) == {"job": "success"}

    names = [name for name, _ in counted if name.startswith("resumable.")]
    assert set(names) <= documented()
    for name in (
        "resumable.decision.submit",
        "resumable.submit",
        "resumable.decision.reattach",
        "resumable.reattach",
        "resumable.job.succeeded",
    ):
        assert names.count(name) == 1, (name, names)
    assert {tags.get("operator") for name, tags in counted if name.startswith("resumable.")} == {
        "FakeJobOperator"
    }
