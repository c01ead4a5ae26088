"""What installing fastobj gives: the library, every module of it importable, and nothing else.

The package is assembled from three folders (setup.py): ``fastobj/`` itself, ``kernels/`` as
``fastobj.kernels`` and ``benchmarks/`` as ``fastobj.benchmarks``. The wheel is built here,
offline, from a copy of the repository, and must hold exactly those folders' modules: no test
file, no ``conftest.py``. The pytest-benchmark suite, kept out of the package in
``tests/bench`` and out of the test run, must still collect.
"""
from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Source folder -> the package it installs as.
SOURCE_PACKAGES = {"fastobj": "fastobj", "kernels": "fastobj.kernels",
                   "benchmarks": "fastobj.benchmarks"}


def installed_files():
    """Path inside the wheel of every Python file the source folders install."""
    files = set()
    for folder, package in SOURCE_PACKAGES.items():
        prefix = package.replace(".", "/")
        for source in (REPO / folder).glob("*.py" if folder != "fastobj" else "**/*.py"):
            files.add(f"{prefix}/{source.relative_to(REPO / folder).as_posix()}")
    return files


def module_names():
    names = []
    for path in sorted(installed_files()):
        name = path[:-len(".py")].replace("/", ".").removesuffix(".__init__")
        if not name.endswith("__main__"):  # running it is the command, tested in test_cli.py
            names.append(name)
    return names


@pytest.mark.parametrize("name", module_names())
def test_every_module_imports(name):
    """A module that does not import fails here (and in the tests that use it), never skips.
    Only the kernel modules wait for an optional extra: Triton."""
    if name.startswith("fastobj.kernels."):
        pytest.importorskip("triton")
    importlib.import_module(name)


def test_wheel_holds_the_library_and_nothing_else(tmp_path):
    """``pip wheel`` without network or build isolation, from a copy of the repository (a build
    in place could pick up stale files of an earlier build)."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".*", "build", "dist", "*.egg-info", "__pycache__", "*-out"))
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                          "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (wheel,) = tmp_path.glob("fastobj-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    print("\n".join(names))  # `pytest -s` shows the wheel's contents
    metadata = {n for n in names if n.split("/")[0].endswith(".dist-info")}
    assert {n.split("/")[0] for n in metadata} == {wheel.name.split("-py")[0] + ".dist-info"}
    library = set(names) - metadata
    assert all(n.startswith("fastobj/") for n in library)
    assert {n for n in library if n.endswith(".py")} == installed_files()
    # the data files the library reads at run time (MACO's natural spectrum)
    assert {n for n in library if not n.endswith(".py")} == {
        "fastobj/render/data/natural_spectrum.npy"}
    assert not [n for n in library
                if Path(n).name == "conftest.py" or Path(n).name.startswith("test_")]


def test_benchmark_suite_collects():
    """tests/bench, left out of the test run, still imports and collects its cases."""
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "tests/bench"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " tests collected" in run.stdout and "tests/bench/test_time_diversity.py" in run.stdout
