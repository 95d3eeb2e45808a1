"""Fixtures for DAG runs with ``dag.test()`` against the in-process fake job service."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.sdk import DAG

from resumable.testing.fake import FakeJobOperator, FakeJobService


@pytest.fixture
def make_dag(airflow_db: str) -> Iterator[Callable[..., tuple[DAG, FakeJobService]]]:
    """Build a one-task DAG with a fresh fake service; keyword arguments go to the operator."""

    def build(service: FakeJobService | None = None, **op_kwargs: Any) -> tuple[DAG, FakeJobService]:
        name = f"t{uuid.uuid4().hex[:10]}"
        svc = service or FakeJobService()
        svc.name = name
        FakeJobService._registry[name] = svc
        op_kwargs.setdefault("retries", 2)
        op_kwargs.setdefault("retry_delay", timedelta(0))
        op_kwargs.setdefault("poll_interval", 0.01)
        with DAG(f"dag_{name}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
            FakeJobOperator(task_id="job", service=name, **op_kwargs)
        return dag, svc

    yield build


@pytest.fixture
def logical_date() -> datetime:
    return datetime(2025, 6, 1, tzinfo=timezone.utc) + timedelta(seconds=uuid.uuid4().int % 10**6)


@pytest.fixture
def fault(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Arm a fault point (see resumable.faults) for the first try of every resumable task."""

    def arm(point: str, mode: str = "raise") -> None:
        monkeypatch.setenv("RESUMABLE_FAULT_POINT", point)
        monkeypatch.setenv("RESUMABLE_FAULT_MODE", mode)

    return arm


@pytest.fixture
def aws(airflow_db: str) -> Iterator[Any]:
    """moto with the EMR driver, as the Airflow connection ``aws_default``; jobs take 4 emulated seconds."""
    from resumable.testing.aws import AwsEmulator, JobScript

    emulator = AwsEmulator(speed=40.0, default_script=JobScript(duration=4.0, pending=1.0))
    with emulator as emu, emu.use_as("aws_default"):
        yield emu
