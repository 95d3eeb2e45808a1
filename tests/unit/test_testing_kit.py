"""The testing kit is public API: its names, its outcome words, and what its docs point at."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import resumable.testing
from resumable.testing.aws import JobScript
from resumable.testing.databricks import RunScript

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_resolves_and_importing_the_kit_loads_none_of_them() -> None:
    code = (
        "import sys, resumable.testing as kit\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('resumable.testing.'))\n"
        "assert loaded == [], loaded\n"
        "missing = [name for name in kit.__all__ if getattr(kit, name, None) is None]\n"
        "assert missing == [], missing\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert {"AwsEmulator", "DatabricksEmulator", "CrashLab", "run_dag"} <= set(resumable.testing.__all__)


@pytest.mark.parametrize(
    ("outcome", "result"), [("succeed", "SUCCESS"), ("fail", "FAILED"), ("hang", "HANG")]
)
def test_both_emulators_take_the_same_outcomes(outcome: str, result: str) -> None:
    assert RunScript(outcome=outcome).result == result
    assert JobScript(outcome=outcome).outcome == outcome


def test_an_unknown_outcome_or_result_is_refused_with_the_words_it_takes() -> None:
    with pytest.raises(ValueError, match="'succeed', 'fail' or 'hang'"):
        RunScript(outcome="success")
    with pytest.raises(ValueError, match="'succeed', 'fail' or 'hang'"):
        JobScript(outcome="success")
    with pytest.raises(ValueError, match="not a Databricks result state"):
        RunScript(result="SUCCEEDED")


#: A repository path in source text: a folder, a slash and a file name (URLs like s3://… excluded).
REPO_PATH = re.compile(r"(?<![\w:/.-])((?:[\w-]+/)+[\w.-]+\.(?:py|md|txt|toml|yml|yaml|cfg))\b")


def test_every_file_the_source_cites_is_in_the_repository() -> None:
    cited = {
        (path.relative_to(ROOT), match)
        for folder in ("resumable", "operators", "bench", "example_dags")
        for path in (ROOT / folder).rglob("*.py")
        for match in REPO_PATH.findall(path.read_text())
    }
    assert cited, "the pattern finds the paths the docstrings cite"
    missing = sorted(f"{source}: {target}" for source, target in cited if not (ROOT / target).exists())
    assert missing == []


def test_the_lazy_table_and_all_name_the_same_things() -> None:
    assert sorted(resumable.testing._WHERE) == sorted(resumable.testing.__all__)


def test_the_testing_extra_brings_what_the_kit_imports_and_the_plugin_makes_the_database() -> None:
    from importlib.metadata import requires

    from resumable.testing import pytest_plugin

    declared = requires("airflow-resumable") or []
    testing = {r.split(";")[0].strip() for r in declared if 'extra == "testing"' in r}
    assert {"moto[server]>=5.0", "pytest"} <= testing, testing
    assert callable(pytest_plugin.airflow_metadata_db)


def _undocumented(cls: type) -> list[str]:
    """The arguments of ``cls.__init__`` (its own, not ``**kwargs``) its ``Args:`` section leaves out; none
    for a class that takes its ``__init__`` as it is from its bases."""
    import inspect

    if "__init__" not in vars(cls):
        return []
    doc = inspect.getdoc(cls) or ""
    args = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    names = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
    return [n for n in names if f"\n    {n}:" not in "\n" + args]


def test_every_argument_of_the_mixin_is_documented_in_its_args_section() -> None:
    from resumable.mixin import ResumableMixin

    assert _undocumented(ResumableMixin) == []


def test_every_operators_own_arguments_are_documented_in_its_args_section() -> None:
    import importlib
    import pkgutil
    import sys

    import resumable.operators
    from resumable.mixin import ResumableMixin

    modules = []
    for info in pkgutil.iter_modules(resumable.operators.__path__):
        try:
            modules.append(importlib.import_module(f"resumable.operators.{info.name}"))
        except ModuleNotFoundError as missing:  # BigQuery's and Snowflake's providers: Python 3.11+ only
            assert sys.version_info < (3, 11) and str(missing.name).startswith("airflow.providers"), missing
    operators = [
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ResumableMixin)
        and value.__name__.endswith("Operator")
        and value.__module__ == module.__name__
    ]
    # Databricks' two, EMR's four, Glue, SageMaker's two, Athena, Redshift Data, Batch, dbt Cloud,
    # BigQuery and Snowflake (those two where their providers are installed: Python 3.11+)
    assert len(operators) == (15 if sys.version_info >= (3, 11) else 13), operators
    assert {op.__name__: _undocumented(op) for op in operators} == {op.__name__: [] for op in operators}
