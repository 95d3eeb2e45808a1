"""The built wheel ships what the package declares: the type marker, the operators under
``resumable.operators`` (and no top-level ``operators`` package), the page's templates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import resumable

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_the_type_marker_and_the_operators_under_resumable(tmp_path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = tmp_path.glob("airflow_resumable-*.whl")
    assert wheel.name.startswith(f"airflow_resumable-{resumable.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "resumable/py.typed" in names
    assert "resumable/operators/databricks.py" in names
    assert "resumable/operators/emr.py" in names
    assert not any(name.startswith("operators/") for name in names), "no top-level operators package"
    assert any(name.startswith("resumable/ui/templates/") for name in names)
