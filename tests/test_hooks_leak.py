"""No hook added by fastobj outlives the capture, whatever goes wrong during it.

After an exception in the model's forward (an Exception, a BaseException subclass, a
KeyboardInterrupt), in the objective, or in resolving a target, every submodule's hook
dictionaries are exactly as they were before (hooks the user registered stay; fastobj's are
gone), and so are torch's global module hooks.
"""
from __future__ import annotations

import gc
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.modules.module as module_globals

import fastobj as fo
from fastobj.render import render

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
              "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_load_state_dict_pre_hooks")
GLOBAL_DICTS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                "_global_backward_pre_hooks", "_global_forward_hooks_always_called")


class Interrupt(BaseException):
    """Not an Exception: like KeyboardInterrupt or SystemExit, it escapes `except Exception`."""


class Raiser(nn.Module):
    """Identity until armed; then raises the given exception from its forward."""

    def __init__(self) -> None:
        super().__init__()
        self.error = None

    def forward(self, x):
        if self.error is not None:
            raise self.error
        return x


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(),
                         nn.Sequential(nn.Conv2d(4, 5, 3), Raiser()), nn.Conv2d(5, 2, 1))


def snapshot(model):
    """Every hook dictionary of every submodule, and torch's global ones, as key lists."""
    local = {(name, attr): list(getattr(m, attr, {}).keys())
             for name, m in model.named_modules() for attr in HOOK_DICTS}
    glob = {attr: list(getattr(module_globals, attr, {}).keys()) for attr in GLOBAL_DICTS}
    return local, glob


@pytest.fixture
def model():
    """The model with one hook of the user's own, which must survive every failure."""
    m = make_model()
    m[0].register_forward_hook(lambda mod, inp, out: None)
    before = snapshot(m)
    yield m
    assert snapshot(m) == before, "a fastobj hook was left on the model (or one was lost)"


X = torch.randn(2, 3, 9, 9)
TARGETS = lambda m: [m[0], "2.0", m[3]]  # noqa: E731


def capture_with_collect(model, targets):
    return fo.collect_activations(model, targets, X)


def capture_with_fetcher(model, targets):
    return fo.ActivationFetcher(model, targets)(X)


def capture_with_context(model, targets):
    with fo.ModuleOutputsHook(targets, model) as hooks:
        model(X)
        return hooks.consume_outputs()


def capture_with_render(model, targets):
    loss = fo.sum_loss_list([fo.LayerActivation(t) for t in targets])
    return render(model, loss, batch_size=1, image_size=9, steps=2, progress=False)


CAPTURES = [capture_with_collect, capture_with_fetcher, capture_with_context,
            capture_with_render]
ERRORS = [RuntimeError("boom"), Interrupt("stop"), KeyboardInterrupt(), SystemExit(3)]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda f: f.__name__)
def test_forward_raises(model, capture, error):
    # The Raiser sits after the first two targets: their hooks have fired when it raises.
    model[2][1].error = error
    with pytest.raises(type(error)):
        capture(model, TARGETS(model))


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda f: f.__name__)
def test_capture_succeeds_without_leaving_hooks(model, capture):
    capture(model, TARGETS(model))


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad, exc", [("nope", (KeyError, ValueError)),
                                      ("2.7", (KeyError, ValueError)),
                                      (3, (TypeError, ValueError))])
def test_target_does_not_resolve(model, capture, bad, exc):
    # The valid targets before the bad one were already hooked when resolution fails.
    with pytest.raises(exc):
        capture(model, [model[0], "2.0", bad])


def test_name_without_model():
    layer = nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="no model"):
        fo.ModuleOutputsHook([layer, "0"])
    assert not layer._forward_hooks


def test_unhashable_target_leaves_nothing(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "exception ignored in __del__"
        with pytest.raises(TypeError):
            fo.ModuleOutputsHook([[model[0]]], model)
        gc.collect()


@pytest.mark.parametrize("stop_early", [False, True])
@pytest.mark.parametrize("error", [IndexError, Interrupt], ids=lambda e: e.__name__)
def test_objective_raises_during_render(model, error, stop_early):
    class Failing(fo.BaseLoss):
        def __call__(self, acts):
            raise error("objective failed")

    loss = fo.ChannelActivation("2.0", 0) + Failing(model[0])
    with pytest.raises(error, match="objective failed"):
        render(model, loss, batch_size=1, image_size=9, steps=2, progress=False,
               stop_early=stop_early)


def test_objective_raises_after_capture(model):
    acts = fo.collect_activations(model, ["2.0"], X)
    with pytest.raises(IndexError, match="ChannelActivation"):
        fo.ChannelActivation("2.0", 99)(acts)


def test_summarize_raises_during_render(model):
    def summarize(value):
        raise Interrupt("summary")

    with pytest.raises(Interrupt):
        render(model, fo.ChannelActivation("2.0", 0), batch_size=1, image_size=9, steps=1,
               progress=False, summarize=summarize)


def test_module_outputs_hook_context_manager(model):
    base = len(model[0]._forward_hooks)
    with fo.ModuleOutputsHook(TARGETS(model), model) as hooks:
        assert len(model[0]._forward_hooks) == base + 1 and len(hooks.hooks) == 3
        model(X)
        assert hooks.is_ready
    assert hooks.hooks == []
    hooks.remove_hooks()  # idempotent
    with pytest.raises(Interrupt):
        with fo.ModuleOutputsHook(TARGETS(model), model):
            raise Interrupt()


def test_module_outputs_hook_removed_when_collected(model):
    hooks = fo.ModuleOutputsHook(TARGETS(model), model)
    assert len(hooks.hooks) == 3
    del hooks
    gc.collect()


def test_activation_fetcher_is_single_use(model):
    fetcher = fo.ActivationFetcher(model, TARGETS(model))
    first = fetcher(X)
    assert set(first) == {model[0], "2.0", model[3]}
    assert all(v is not None for v in first.values())
    calls = []
    model[3].register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(RuntimeError, match="single use"):
            fetcher(X)
        assert calls == []  # refused before running the model again
    finally:
        model[3]._forward_hooks.popitem()


def test_activation_fetcher_single_use_after_failure(model):
    fetcher = fo.ActivationFetcher(model, TARGETS(model))
    model[2][1].error = RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        fetcher(X)
    model[2][1].error = None
    with pytest.raises(RuntimeError, match="single use"):
        fetcher(X)
