"""Shared test setup.

The Triton interpreter must be switched on before Triton is first imported, so it is set here
on machines without CUDA: the kernel tier then runs on CPU tensors. On a GPU machine the
interpreter stays off and the `gpu` tier runs instead.
"""
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
