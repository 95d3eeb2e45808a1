"""Fixtures of the model checker's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.model.world import World


@pytest.fixture(params=["memory", "sql", "airflow"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., World]]:
    """Makes a World on each backend (the sql one on a SQLite file of the test's own; the airflow one
    on a model of Airflow's task state store)."""
    made: list[World] = []

    def make(**options: Any) -> World:
        url = f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sql" else None
        made.append(World(request.param, sql_url=url, **options))
        return made[-1]

    yield make
    for w in made:
        w.close()
