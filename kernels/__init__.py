"""Triton kernels of fastobj, installed as ``fastobj.kernels``.

One module per computation, each holding the Triton kernels, their launchers and their cost
model; the dispatch, custom-op registration and PyTorch references live in
``fastobj.functional``. Importing this package imports Triton, so only ``fastobj.functional``
does it, lazily, when a kernel is about to run.
"""
