"""Triton kernels of fastobj, installed as ``fastobj.kernels``.

One module per computation, each holding the Triton kernels, their launchers and their cost
model; the dispatch, custom-op registration and PyTorch references live in
``fastobj.functional``. Importing this package imports Triton, so the library imports it
lazily: ``fastobj.functional`` when a kernel is about to run, ``fastobj.benchmarks.ops`` for
the kernels' cost models (only where Triton imports).
"""
