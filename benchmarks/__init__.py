"""Benchmarks of fastobj, installed as ``fastobj.benchmarks``; ``fastobj bench`` runs them.

* :mod:`.ops`: what is timed (inputs, providers, cost models from the kernels' own);
  :mod:`.render_step`: the render-step op.
* :mod:`.presets`: named sweeps and their plans.
* :mod:`.timing`: the one sampling loop, and kernel time on CUDA.
* :mod:`.memory`, :mod:`.ceilings`, :mod:`.machine`: peak memory, the device's copy and
  matmul ceilings, what the machine offers (device name, threads).
* :mod:`.sweep`: interleaved rounds within a time budget; :mod:`.report`: the run's folder
  (CSV, table, plot); :mod:`.cli`: the ``fastobj bench`` command.
* :mod:`.baselines`: the classic Lucid/Lucent/Captum algorithms, kept here as baselines only.
* ``gpu_check.sh``: the one-shot check for a machine with one H100/H200 GPU, with its Python
  side :mod:`.gpu_check` (device facts, merged summary, profile) and :mod:`.kernel_variants`
  (the kernel variants the launchers pick, recorded and compiled ahead of time).
* :mod:`.atlas_page`: how long an atlas page of 1,280 channels takes to open in headless
  Chromium (``python -m fastobj.benchmarks.atlas_page``); also the browser test's launcher.
* :mod:`.render_throughput`: a render step's cost against the batch and the views.

The pytest-benchmark suite over the same ops is ``tests/bench`` (``pytest tests/bench``): test
code stays out of the installed package.
"""
