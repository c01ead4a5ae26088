"""Benchmarks of fastobj, installed as ``fastobj.benchmarks``.

* :mod:`.harness`: the engine behind ``fastobj bench`` (sweeps, timing, memory, cost models,
  device ceilings, CSV, table and plot).
* :mod:`.baselines`: the classic Lucid/Lucent/Captum algorithms, kept here as baselines only.
* ``test_bench_*.py``: the pytest-benchmark suite (``pytest benchmarks/``).
* ``gpu_check.sh``: the one-shot check for a machine with one H100/H200 GPU.
"""
