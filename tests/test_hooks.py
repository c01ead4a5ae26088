"""Activation capture: names and modules as targets, warnings, and no hook left behind."""
import warnings

import pytest
import torch
import torch.nn as nn

import fastobj as fo


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 5, 3)))


def hook_count(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_collect_by_module_and_name():
    model = make_model()
    x = torch.randn(2, 3, 9, 8)
    acts = fo.collect_activations(model, [model[0], "2.0", model[0]], x)
    assert list(acts) == [model[0], "2.0"]
    assert torch.allclose(acts[model[0]], model[0](x))
    assert acts["2.0"].shape == (2, 5, 5, 4)
    assert hook_count(model) == 0


def test_objective_on_named_targets():
    model = make_model()
    loss = fo.ChannelActivation("2.0", 3) + fo.Diversity("0")
    acts = fo.collect_activations(model, loss.target, torch.randn(3, 3, 9, 8))
    assert loss(acts).dim() == 0


def test_unknown_name_raises_key_error_and_leaves_no_hook():
    model = make_model()
    with pytest.raises(KeyError, match="no submodule named 'nope'"):
        fo.collect_activations(model, [model[0], "nope"], torch.randn(1, 3, 9, 8))
    assert hook_count(model) == 0


def test_forward_error_removes_hooks():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = nn.Sequential(nn.Conv2d(3, 3, 1), Boom())
    with pytest.raises(RuntimeError, match="boom"):
        fo.collect_activations(model, [model[0]], torch.randn(1, 3, 4, 4))
    assert hook_count(model) == 0


def test_module_outputs_hook_lifecycle():
    model = make_model()
    x = torch.randn(1, 3, 9, 8)
    with fo.ModuleOutputsHook([model[0], "2.0"], model) as hooks:
        assert len(hooks.hooks) == 2 and not hooks.is_ready
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a complete capture must not warn
            model(x)
            assert hooks.is_ready
            outputs = hooks.consume_outputs()
        assert set(outputs) == {model[0], "2.0"} and not hooks.is_ready
        with pytest.warns(UserWarning, match="no output was captured"):
            hooks.consume_outputs()
        model(x)
        with pytest.warns(UserWarning, match="multiple times"):
            model(x)
        assert hooks.targets == [model[0], "2.0"]
    assert hook_count(model) == 0


def test_missing_output_raises_key_error():
    model = make_model()
    unused = nn.Conv2d(3, 3, 1)
    with pytest.raises(KeyError, match="no output"):
        fo.collect_activations(model, [unused], torch.randn(1, 3, 9, 8))
    assert len(unused._forward_hooks) == 0


def test_activation_fetcher_is_single_use():
    model = make_model()
    fetcher = fo.ActivationFetcher(model, [model[0]])
    fetcher(torch.randn(1, 3, 9, 8))
    assert hook_count(model) == 0


def test_default_input():
    model = nn.Sequential(nn.Conv2d(3, 2, 1))
    acts = fo.collect_activations(model, model[0])
    assert acts[model[0]].shape == (1, 2, 224, 224)
