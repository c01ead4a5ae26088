"""Repeated calls on the same input give bitwise-equal values and gradients, on each backend.

The kernels reduce in two fixed-order stages (no atomics) and the reference uses deterministic
CPU ops, so nothing may vary from one call to the next: compared with torch.equal, not a
tolerance.
"""
from __future__ import annotations

import pytest
import torch

import fastobj as fo
from _reliability import BACKENDS, evaluate

T, IMG = "act", "image"
B, C, H, W = 5, 6, 5, 7
REPEATS = 3


def _data(seed=3):
    g = torch.Generator().manual_seed(seed)
    return {T: torch.randn(B, C, H, W, generator=g),
            IMG: torch.rand(B, 3, 11, 13, generator=g)}


def _vec(*shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(9))


def composite():
    return (fo.ChannelActivation(T, [0, 2, 5, 1, 3]) + 1e2 * fo.Diversity(T)
            - 1e-3 * fo.TotalVariation(IMG) + 0.5 * fo.Direction(T, _vec(C), cossim_pow=2.0)
            + fo.sum_loss_list([fo.NeuronDirection(T, _vec(C), cossim_pow=1.0, batch_index=b)
                                for b in range(B)])
            - fo.Alignment(T, 5.0) / 10)


CASES = {
    "Diversity": lambda: fo.Diversity(T),
    "Diversity-slice": lambda: fo.Diversity(T, batch_index=(1, -1)),
    "TotalVariation": lambda: fo.TotalVariation(IMG),
    "Direction": lambda: fo.Direction(T, _vec(C), cossim_pow=2.0),
    "Direction-per-sample": lambda: fo.Direction(T, _vec(B, C), cossim_pow=1.0),
    "composite": composite,
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CASES)
def test_repeated_calls_are_bitwise_equal(name, backend):
    loss = CASES[name]()
    # The same objective called again, then a rebuilt one (no state may carry over).
    losses = [loss] * (REPEATS - 1) + [CASES[name]()]
    data = _data()
    results = []
    for each in losses:
        acts = {k: v.clone().requires_grad_() for k, v in data.items()}
        results.append(evaluate(each, acts, backend))
    first_value, first_grads = results[0]
    assert torch.isfinite(first_value).all()
    for value, grads in results[1:]:
        assert torch.equal(value, first_value), f"{name} on {backend}: values differ"
        for key, grad in first_grads.items():
            if grad is None:
                assert grads[key] is None
                continue
            assert torch.equal(grads[key], grad), f"{name} on {backend}: gradient of {key}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_runs_under_deterministic_algorithms(backend):
    """No op of either path is one torch flags as nondeterministic."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        acts = {k: v.requires_grad_() for k, v in _data().items()}
        value, _ = evaluate(composite(), acts, backend)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.isfinite(value).all()
