"""The built artifacts ship what the package declares.

The sdist and the wheel are built once per session with ``build`` (``--no-isolation``: the
setuptools pinned in constraints.txt, no download) and checked with ``twine check --strict``. The
wheel carries the type marker, the operators under ``resumable.operators`` (and no top-level
``operators`` package), the page's templates and every module of the source tree; the sdist
carries every file the wheel is built from, and a wheel built from the sdist has the same files
and metadata as the one built from the repository. ``tests/compat/test_airflow_install.py``
installs this wheel next to each supported Airflow.

``build`` and ``twine`` come with the ``release`` extra, which ``make .venv`` installs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import resumable

ROOT = Path(__file__).resolve().parents[2]
DIST = "airflow_resumable"
#: Where each source folder lands in the wheel (pyproject.toml's [tool.setuptools] package-dir).
PACKAGE_DIRS = {"resumable": "resumable", "operators": "resumable/operators"}
#: Package data (pyproject.toml's [tool.setuptools.package-data]), besides the modules.
DATA = ("resumable/py.typed", "resumable/ui/templates/*.html")


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stdout[-3000:] + "\n" + done.stderr[-6000:]).strip()


def _run(what: str, args: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["NO_COLOR"] = "1"
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"{what}: `{' '.join(args)}` exited {done.returncode}:\n{_tail(done)}", pytrace=False)
    return done.stdout


def _build(source: Path, outdir: Path, *kinds: str) -> None:
    """``python -m build`` without isolation: the build backend is this virtualenv's setuptools
    (``--skip-dependency-check``: [build-system] also names ``wheel``, which setuptools >= 70.1
    no longer needs and the virtualenv does not install)."""
    args = ["--no-isolation", "--skip-dependency-check", "--outdir", str(outdir), str(source)]
    command = [sys.executable, "-m", "build", *kinds, *args]
    _run(f"building {' and '.join(kinds)} from {source}", command, outdir)


def built_dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist and the wheel of the repository, built once per session (both test modules ask)."""
    for module in ("build", "twine"):
        if importlib.util.find_spec(module) is None:
            pytest.fail(
                f"{module} is not installed in {sys.prefix}: the release extra brings it "
                "(`make .venv`, or `uv pip install -c constraints.txt -e '.[dev,release]'`)",
                pytrace=False,
            )
    out = tmp_path_factory.getbasetemp() / "dists"
    sdists, wheels = list(out.glob(f"{DIST}-*.tar.gz")), list(out.glob(f"{DIST}-*.whl"))
    if len(sdists) == 1 and len(wheels) == 1:
        return Dists(sdists[0], wheels[0])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    _build(ROOT, out, "--sdist", "--wheel")
    sdists, wheels = list(out.glob(f"{DIST}-*.tar.gz")), list(out.glob(f"{DIST}-*.whl"))
    found = sorted(p.name for p in out.iterdir())
    assert len(sdists) == 1 and len(wheels) == 1, f"expected one sdist and one wheel in {out}: {found}"
    return Dists(sdists[0], wheels[0])


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    return built_dists(tmp_path_factory)


def _wheel_files(wheel: Path) -> set[str]:
    return set(zipfile.ZipFile(wheel).namelist())


def _sdist_files(sdist: Path) -> set[str]:
    """The sdist's files, relative to its top folder (``airflow_resumable-X.Y.Z/``)."""
    with tarfile.open(sdist) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    return {name.split("/", 1)[1] for name in names if "/" in name}


def _shipped(files: set[str]) -> set[str]:
    """The package's files among a wheel's (without its .dist-info)."""
    return {name for name in files if not name.startswith(f"{DIST}-")}


def _in_wheel(source_path: str) -> str | None:
    """Where a source file (``operators/emr.py``) lands in the wheel, or None if it is no package's."""
    folder, _, rest = source_path.partition("/")
    return f"{PACKAGE_DIRS[folder]}/{rest}" if folder in PACKAGE_DIRS and rest else None


def test_twine_check_strict_passes_on_the_sdist_and_the_wheel(dists: Dists) -> None:
    out = _run(
        "twine check --strict",
        [sys.executable, "-m", "twine", "check", "--strict", str(dists.sdist), str(dists.wheel)],
        dists.wheel.parent,
    )
    assert out.count("PASSED") == 2, f"twine check --strict did not pass both files:\n{out[-3000:]}"


def test_the_wheel_carries_the_type_marker_and_the_operators_under_resumable(dists: Dists) -> None:
    wheel = dists.wheel
    assert wheel.name.startswith(f"{DIST}-{resumable.__version__}-py3-none-any"), wheel.name
    names = _wheel_files(wheel)
    listing = "\n".join(sorted(names))
    assert "resumable/py.typed" in names, listing
    assert "resumable/operators/databricks.py" in names, listing
    assert "resumable/operators/emr.py" in names, listing
    top_level = sorted(name for name in names if name.startswith("operators/"))
    assert not top_level, f"a top-level operators package: {top_level}"
    assert any(name.startswith("resumable/ui/templates/") for name in names), listing


def test_the_wheel_carries_every_module_and_data_file_of_the_source_tree(dists: Dists) -> None:
    """A subpackage missing from pyproject.toml's ``packages`` would be left out of both artifacts."""
    source = {
        p.relative_to(ROOT).as_posix()
        for folder in PACKAGE_DIRS
        for p in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    source |= {p.relative_to(ROOT).as_posix() for pattern in DATA for p in ROOT.glob(pattern)}
    expected = {_in_wheel(path) for path in source}
    missing = sorted(str(name) for name in expected - _wheel_files(dists.wheel))
    assert not missing, f"in the source tree but not in {dists.wheel.name}: {missing}"


def test_the_sdist_carries_every_file_the_wheel_is_built_from(dists: Dists) -> None:
    files = _sdist_files(dists.sdist)
    listing = "\n".join(sorted(files))
    needs = ("pyproject.toml", "README.md", "PKG-INFO", "resumable/py.typed", "operators/databricks.py")
    for needed in needs:
        assert needed in files, f"{needed} is not in {dists.sdist.name}:\n{listing}"
    from_sdist = {_in_wheel(path) for path in files} - {None}
    missing = sorted(_shipped(_wheel_files(dists.wheel)) - from_sdist)
    assert not missing, f"in {dists.wheel.name} but not in {dists.sdist.name}: {missing}"


def test_a_wheel_built_from_the_sdist_is_the_wheel_built_from_the_repository(
    dists: Dists, tmp_path: Path
) -> None:
    """A difference means the repository's build leaks something the sdist does not carry (a stale
    ``build/lib`` file: remove ``build/``) or the sdist misses something the wheel needs."""
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12
    with tarfile.open(dists.sdist) as tar:
        tar.extractall(tmp_path / "src", **safe)
    (source,) = (tmp_path / "src").iterdir()
    out = tmp_path / "dist"
    out.mkdir()
    _build(source, out, "--wheel")
    (again,) = out.glob(f"{DIST}-*.whl")
    assert again.name == dists.wheel.name
    ours, theirs = _wheel_files(dists.wheel), _wheel_files(again)
    assert ours == theirs, (
        f"only in the wheel built from the repository: {sorted(ours - theirs)}; "
        f"only in the one built from the sdist: {sorted(theirs - ours)}"
    )
    metadata = f"{DIST}-{resumable.__version__}.dist-info/METADATA"
    for name in (metadata, f"{DIST}-{resumable.__version__}.dist-info/entry_points.txt"):
        assert zipfile.ZipFile(dists.wheel).read(name) == zipfile.ZipFile(again).read(name), name
