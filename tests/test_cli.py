"""The installed ``fastobj`` command and ``python -m fastobj`` behave the same."""
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FACTORY = textwrap.dedent("""
    import torch.nn as nn

    def build():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
""")


def _commands():
    script = Path(sys.executable).with_name("fastobj")
    found = str(script) if script.exists() else shutil.which("fastobj")
    if found is None:
        pytest.skip("the fastobj console script is not installed (pip install -e . adds it)")
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
