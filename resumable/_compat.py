"""The few Airflow names that moved between Airflow 2.10 and 3.x, imported from wherever they live."""

from __future__ import annotations

import contextlib
from typing import Any

try:
    from airflow.sdk.bases.operator import BaseOperatorMeta
    from airflow.sdk.exceptions import AirflowTaskTimeout
except ImportError:  # Airflow 2.10
    from airflow.exceptions import AirflowTaskTimeout  # type: ignore[no-redef]
    from airflow.models.baseoperator import BaseOperatorMeta  # type: ignore[no-redef]

try:
    from airflow.sdk.observability.stats import Stats
except ImportError:  # Airflow < 3.1
    from airflow.stats import Stats  # type: ignore[no-redef,attr-defined]

try:
    from airflow.triggers.base import BaseTrigger, TriggerEvent
except ImportError:  # pragma: no cover - every supported Airflow has it
    BaseTrigger = Any  # type: ignore[misc,assignment]


def stats_incr(name: str, tags: dict[str, str]) -> None:
    """Count an event with Airflow's metrics; a metrics outage never fails a task."""
    with contextlib.suppress(Exception):  # metrics are best effort by design
        Stats.incr(name, tags=tags)


__all__ = ["AirflowTaskTimeout", "BaseOperatorMeta", "BaseTrigger", "TriggerEvent", "stats_incr"]
