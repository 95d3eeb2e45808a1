"""Installing the package next to each supported Airflow leaves that Airflow working.

Airflow imports every provider's entry point while it loads its own configuration, so a package
that fails to import there takes down every ``airflow`` command, ``airflow db migrate`` first.
For each Airflow version whose virtualenv exists (``make .venvs/airflow-3.X``; ``.venv`` is 3.3),
this runs, in a fresh AIRFLOW_HOME: the package's imports, ``airflow db migrate``,
``airflow providers list`` (the package is listed), and the example DAGs parsed into the database
(``airflow dags reserialize``) with ``airflow dags list`` showing every file's DAG and
``airflow dags list-import-errors`` showing none.

A missing virtualenv skips with the command that creates it, and fails when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = ROOT / "example_dags"

#: Airflow minor version -> (its virtualenv, the make target that creates it).
VENVS: dict[str, tuple[Path, str]] = {
    "3.0": (ROOT / ".venvs" / "airflow-3.0", "make .venvs/airflow-3.0"),
    "3.1": (ROOT / ".venvs" / "airflow-3.1", "make .venvs/airflow-3.1"),
    "3.2": (ROOT / ".venvs" / "airflow-3.2", "make .venvs/airflow-3.2"),
    "3.3": (ROOT / ".venv", "make .venv"),
}

IMPORTS = "import resumable, resumable.operators.databricks, resumable.operators.emr, resumable.mixin"


def _bin(version: str) -> Path:
    venv, make = VENVS[version]
    airflow = venv / "bin" / "airflow"
    if not airflow.exists():
        message = f"no virtualenv with Airflow {version} at {venv.relative_to(ROOT)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true requires it (`{make}` creates it)", pytrace=False)
        pytest.skip(f"{message}; create it with `{make}`")
    return venv / "bin"


def _env(home: Path) -> dict[str, str]:
    """This environment without the test session's Airflow settings, for a fresh AIRFLOW_HOME."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "RESUMABLE_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(EXAMPLE_DAGS),
    )
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = (done.stdout[-3000:] + "\n" + done.stderr[-6000:]).strip()
        pytest.fail(f"`{' '.join(args[-3:])}` exited {done.returncode}:\n{tail}", pytrace=False)
    return done.stdout


def _json(stdout: str) -> Any:
    """The JSON document of an ``-o json`` command; Airflow may log lines to stdout before it."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(("[", "{")):
            return json.loads(line)
    raise AssertionError(f"no JSON in the output:\n{stdout[-3000:]}")


@pytest.mark.parametrize("version", list(VENVS))
def test_airflow_works_with_the_package_installed(version: str, tmp_path: Path) -> None:
    bin_dir = _bin(version)
    home = tmp_path / "airflow"
    home.mkdir()
    env = _env(home)
    python, airflow = str(bin_dir / "python"), str(bin_dir / "airflow")

    found = _run([python, "-c", "import airflow; print(airflow.__version__)"], env, tmp_path).split()
    assert found and found[-1].startswith(version + "."), f"{bin_dir.parent} has Airflow {found}"
    _run([python, "-c", IMPORTS], env, tmp_path)

    _run([airflow, "db", "migrate"], env, tmp_path)

    providers = _json(_run([airflow, "providers", "list", "-o", "json"], env, tmp_path))
    assert "airflow-resumable" in {p["package_name"] for p in providers}

    _run([airflow, "dags", "reserialize"], env, tmp_path)
    dags = _json(_run([airflow, "dags", "list", "-o", "json"], env, tmp_path))
    files = {Path(d["fileloc"]).name for d in dags}
    assert files == {p.name for p in EXAMPLE_DAGS.glob("*.py")}, dags
    errors = _json(_run([airflow, "dags", "list-import-errors", "-o", "json"], env, tmp_path))
    assert errors == []


def test_the_provider_entry_point_imports_no_task_machinery(tmp_path: Path) -> None:
    """Airflow calls ``get_provider_info`` while it loads its configuration: that import must
    not reach Airflow's task machinery (the SDK's operators, models), nor fail on any version."""
    code = (
        "import sys\n"
        "from resumable.provider import get_provider_info\n"
        "assert get_provider_info()['package-name'] == 'airflow-resumable'\n"
        "loaded = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "print(loaded)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
