"""The wheel, installed next to each supported Airflow, leaves that Airflow working.

Airflow imports every provider's entry point while it loads its own configuration, so a package
that fails to import there takes down every ``airflow`` command, ``airflow db migrate`` first.
For each Airflow version whose virtualenv exists (``make .venvs/airflow-3.X``; ``.venv`` is 3.3),
the wheel built by ``tests/compat/test_wheel.py`` (not the editable install of the repository) is
installed with its ``databricks``, ``amazon``, ``dbt-cloud``, ``google`` and ``snowflake`` extras
into a new virtualenv, on that version's Python, from that version's constraints file; then, in a
fresh AIRFLOW_HOME (SQLite), with no PYTHONPATH and outside the repository: the operators import,
from the new virtualenv's site-packages; ``airflow db migrate``; ``airflow providers list`` lists the
package at its version; ``airflow plugins`` lists the ``resumable`` plugin; ``resumable doctor`` finds nothing
to fix (it parses the example DAGs too, and fails on an import error); and the example DAGs,
parsed into the database (``airflow dags reserialize``), are each listed by ``airflow dags list``
(when one is not, ``airflow dags list-import-errors`` says why).

A missing virtualenv skips with the command that creates it, and fails when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import resumable
from tests.compat.test_wheel import built_dists

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = ROOT / "example_dags"

#: Airflow minor version -> (its virtualenv, the make target that creates it).
VENVS: dict[str, tuple[Path, str]] = {
    "3.0": (ROOT / ".venvs" / "airflow-3.0", "make .venvs/airflow-3.0"),
    "3.1": (ROOT / ".venvs" / "airflow-3.1", "make .venvs/airflow-3.1"),
    "3.2": (ROOT / ".venvs" / "airflow-3.2", "make .venvs/airflow-3.2"),
    "3.3": (ROOT / ".venv", "make .venv"),
}

#: Airflow minor version -> the constraints file its virtualenv is made from (see the Makefile).
CONSTRAINTS: dict[str, Path] = {
    "3.0": ROOT / "constraints" / "airflow-3.0.txt",
    "3.1": ROOT / "constraints" / "airflow-3.1.txt",
    "3.2": ROOT / "constraints" / "airflow-3.2.txt",
    "3.3": ROOT / "constraints.txt",
}

EXTRAS = "databricks,amazon,dbt-cloud,google,snowflake"

#: Prints where the package and its operators were imported from, as JSON (the BigQuery and Snowflake
#: operators on Python 3.11+, where the google and snowflake extras install their providers).
IMPORTS = (
    "import json, sys, sysconfig, airflow, resumable, resumable.operators.databricks, "
    "resumable.operators.emr, resumable.operators.dbt_cloud, resumable.mixin\n"
    "modules = [resumable, resumable.operators.databricks, resumable.operators.emr, "
    "resumable.operators.dbt_cloud]\n"
    "if sys.version_info >= (3, 11):\n"
    "    import resumable.operators.bigquery, resumable.operators.snowflake\n"
    "    modules += [resumable.operators.bigquery, resumable.operators.snowflake]\n"
    "print(json.dumps({'airflow': airflow.__version__, 'site': sysconfig.get_paths()['purelib'], "
    "'files': [m.__file__ for m in modules]}))"
)


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
    """This environment without the test session's Airflow settings, for a fresh AIRFLOW_HOME, and
    with Python's bytecode cache on: where PYTHONDONTWRITEBYTECODE is set, each of the new
    virtualenv's commands below would compile Airflow from source again."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "RESUMABLE_"))
        and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(EXAMPLE_DAGS),
    )
    return env


def _tail(output: str) -> str:
    return output[-6000:].strip()


def _run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = (done.stdout[-3000:] + "\n" + done.stderr[-6000:]).strip()
        command = " ".join([Path(args[0]).name, *args[1:]])
        pytest.fail(f"`{command}` exited {done.returncode}:\n{tail}", pytrace=False)
    return done.stdout


def _json(stdout: str) -> Any:
    """The JSON document of an ``-o json`` command; Airflow may log lines to stdout before it."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(("[", "{")):
            return json.loads(line)
    raise AssertionError(f"no JSON in the output:\n{stdout[-3000:]}")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_dists(tmp_path_factory).wheel


def _install(version: str, bin_dir: Path, wheel: Path, venv: Path, env: dict[str, str]) -> Path:
    """A new virtualenv, on the Python of the one at ``bin_dir``, with the wheel and its extras
    from ``version``'s constraints file; its ``bin``. (The Makefile installs uv in every virtualenv.)"""
    uv, cwd = str(bin_dir / "uv"), venv.parent
    _run([uv, "venv", "--quiet", "--python", str(bin_dir / "python"), str(venv)], env, cwd)
    target = ["--python", str(venv / "bin" / "python"), "-c", str(CONSTRAINTS[version])]
    _run([uv, "pip", "install", "--quiet", *target, f"{wheel}[{EXTRAS}]"], env, cwd)
    return venv / "bin"


@pytest.mark.parametrize("version", list(VENVS))
def test_airflow_works_with_the_wheel_installed(version: str, wheel: Path, tmp_path: Path) -> None:
    dev_bin = _bin(version)
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = _env(home)
    bin_dir = _install(version, dev_bin, wheel, tmp_path / "venv", env)
    python, airflow = str(bin_dir / "python"), str(bin_dir / "airflow")

    out = _run([python, "-c", IMPORTS], env, cwd)
    found = _json(out)
    assert found["airflow"].startswith(version + "."), f"{bin_dir.parent} has Airflow {found['airflow']}"
    site = Path(found["site"]).resolve()
    assert site.is_relative_to((tmp_path / "venv").resolve()), (
        f"site-packages outside the new virtualenv: {site}"
    )
    elsewhere = [f for f in found["files"] if not Path(f).resolve().is_relative_to(site)]
    assert not elsewhere, f"imported from outside {site} (not the wheel): {elsewhere}\n{_tail(out)}"

    _run([airflow, "db", "migrate"], env, cwd)

    out = _run([airflow, "providers", "list", "-o", "json"], env, cwd)
    providers = {p["package_name"]: p["version"] for p in _json(out)}
    assert providers.get("airflow-resumable") == resumable.__version__, (
        f"airflow providers list: airflow-resumable {resumable.__version__} is not listed:\n{_tail(out)}"
    )

    out = _run([airflow, "plugins", "-o", "json"], env, cwd)
    assert "resumable" in {p["name"] for p in _json(out)}, (
        f"airflow plugins: the resumable plugin is not listed:\n{_tail(out)}"
    )

    # The bare set-up has nothing to fix (on 3.3 the API server's absence is a warning); the API
    # URL is a closed port, so that the check never reaches another Airflow on this machine.
    doctor_env = {**env, "AIRFLOW__API__BASE_URL": "http://127.0.0.1:9", "COLUMNS": "200", "NO_COLOR": "1"}
    out = _run([str(bin_dir / "resumable"), "doctor"], doctor_env, cwd)
    assert "Nothing to fix." in out and re.search(r"ok resumable tasks: [1-9]\d* found", out), (
        f"resumable doctor: expected nothing to fix and the example DAGs' tasks found:\n{_tail(out)}"
    )

    _run([airflow, "dags", "reserialize"], env, cwd)
    out = _run([airflow, "dags", "list", "-o", "json"], env, cwd)
    files = {Path(d["fileloc"]).name for d in _json(out)}
    expected = {p.name for p in EXAMPLE_DAGS.glob("*.py")}
    if files != expected:  # a file that fails to import has no DAG: say why
        errors = _run([airflow, "dags", "list-import-errors", "-o", "json"], env, cwd)
        pytest.fail(
            f"airflow dags list: missing {sorted(expected - files)}, unexpected {sorted(files - expected)}"
            f":\n{_tail(out)}\nairflow dags list-import-errors:\n{_tail(errors)}",
            pytrace=False,
        )


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
