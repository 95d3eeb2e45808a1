"""Helpers the test modules share (fixtures live in the conftest files)."""

from __future__ import annotations

import uuid
from datetime import datetime

from airflow.sdk import DAG


def new_dag(prefix: str) -> DAG:
    """An empty DAG with a unique id, for tests that add their own operators."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    return DAG(name, schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
