"""Package layout: `kernels/` and `benchmarks/` live at the top of the repository but install
as `fastobj.kernels` and `fastobj.benchmarks`, so no top-level module named `kernels` is put on
a user's path. Metadata is in pyproject.toml."""
from setuptools import setup

setup(
    packages=["fastobj", "fastobj.render", "fastobj.kernels", "fastobj.benchmarks"],
    package_dir={"fastobj.kernels": "kernels", "fastobj.benchmarks": "benchmarks"},
)
