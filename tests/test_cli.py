"""The installed ``fastobj`` command and ``python -m fastobj`` behave the same."""
import importlib.metadata
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastobj
from fastobj.cli import main

FACTORY = textwrap.dedent("""
    import torch.nn as nn

    def build():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
""")


def _commands():
    """The two ways to run the command. The console script is part of installing fastobj
    (``pip install -e .`` adds it), not an optional extra: its absence fails, never skips."""
    script = Path(sys.executable).with_name("fastobj")
    found = str(script) if script.exists() else shutil.which("fastobj")
    assert found is not None, "the fastobj console script is not installed (pip install -e .)"
    return {"console script": [found], "python -m": [sys.executable, "-m", "fastobj"]}


@pytest.mark.parametrize("how", ["console script", "python -m"])
def test_model_factory_is_imported_from_the_working_directory(how, tmp_path):
    (tmp_path / "my_net.py").write_text(FACTORY)
    command = _commands()[how] + [
        "render", "ChannelActivation('0', 1)", "--model", "my_net:build", "--batch-size", "2",
        "--size", "12", "--steps", "2", "--no-progress", "--out", "grid.png"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_version_is_the_installed_distribution_version(capsys):
    """``fastobj --version`` prints the version of the installed metadata (pyproject.toml's),
    which is also ``fastobj.__version__``; the console script says the same."""
    expected = f"fastobj {importlib.metadata.version('fastobj')}"
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == expected
    assert fastobj.__version__ == importlib.metadata.version("fastobj")
    run = subprocess.run(_commands()["console script"] + ["--version"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == expected, run.stderr
