"""Shared test setup.

The Triton interpreter must be switched on before Triton is first imported, so it is set here
on machines without CUDA: the kernel tier then runs on CPU tensors. On a GPU machine the
interpreter stays off and the `gpu` tier runs instead (tiers 2 and 4 of docs/testing.md).
"""
import importlib
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none is present on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def count_kernel_calls(monkeypatch):
    """Counts the calls that reach a kernel module's Triton launchers, so a silent fallback
    cannot pass. Returns ``count(module_name, forward_name, backward_name)``: it imports
    ``module_name`` (a module that does not import fails the test, never skips it), wraps the
    two launchers for the rest of the test, and returns the live ``{"forward": n,
    "backward": n}`` dict of their calls."""
    def count(module_name, forward_name, backward_name):
        module = importlib.import_module(module_name)
        calls = {"forward": 0, "backward": 0}

        def counted(key, launcher):
            def wrapper(*args, **kwargs):
                calls[key] += 1
                return launcher(*args, **kwargs)
            return wrapper

        for key, name in (("forward", forward_name), ("backward", backward_name)):
            monkeypatch.setattr(module, name, counted(key, getattr(module, name)))
        return calls

    return count
