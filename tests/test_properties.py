"""Property-based tests (hypothesis): the reference path and the Triton path agree.

Random tiny shapes with odd sizes, every batch_index form, float32 and 16-bit activations, and
random composition trees (+ - * / with numbers and with other losses, abs, unary -/+, round,
sum_loss_list) are evaluated with ``use_backend("torch")`` and with ``use_backend("triton")``
(Triton's interpreter on CPU), comparing the value and the gradient of the activations for a
random upstream gradient. A fuzz test feeds random, often invalid, arguments and checks that
nothing raises outside the documented errors (ValueError, TypeError, IndexError, KeyError, each
naming the objective), and that both backends raise the same one.

Runs are derandomized (fixed examples in CI) and bounded so the file takes well under 90 s on
one core: the interpreter is slow, so the tensors stay tiny.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fastobj as fo
from _reliability import evaluate

T = "act"
DOCUMENTED = (ValueError, TypeError, IndexError, KeyError)
ALL_KERNELS = ("diversity", "total_variation", "dot_cossim")


def bounded(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# Relative tolerance, and absolute tolerance as a fraction of the largest reference magnitude.
# float32: both paths accumulate in float32 in different orders (~1e-6 relative), composition
# and the cosine term amplify that a little. 16-bit: the value is rounded to the 16-bit output
# (one ulp is 1e-3 for float16, 8e-3 for bfloat16) and the kernels round intermediate operands
# (Diversity's W_i) to the input dtype.
TOL = {torch.float32: (1e-4, 1e-5), torch.float16: (1e-2, 1e-2),
       torch.bfloat16: (4e-2, 4e-2)}


def assert_agree(got, ref, dtype, what):
    rtol, frac = TOL[dtype]
    ref64, got64 = ref.double(), got.double()
    scale = ref64.abs().max().item() if ref64.numel() else 0.0
    assert math.isfinite(scale), f"{what}: non-finite reference {ref}"
    # The floor of 1 (activations are O(1)) covers results that cancel to ~0, such as the
    # gradient of a one-sample Diversity, where only rounding noise is left.
    torch.testing.assert_close(got64, ref64, rtol=rtol, atol=frac * max(scale, 1.0),
                               msg=lambda m: f"{what}: {m}")


# --------------------------------------------------------------------------------------------
# Strategies.
# --------------------------------------------------------------------------------------------

dims = st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.integers(1, 5))


@st.composite
def batch_indices(draw, b):
    """None, an int in [-b, b) or a non-empty (start, end) pair in any equivalent spelling."""
    kind = draw(st.sampled_from(["none", "int", "pair"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-b, b - 1))
    start = draw(st.integers(0, b - 1))
    end = draw(st.integers(start + 1, b))
    s = draw(st.sampled_from([start, start - b] + ([None] if start == 0 else [])))
    e = draw(st.sampled_from([end] + ([end - b] if end < b else [None])))
    return draw(st.sampled_from([(s, e), [s, e]]))


def selected(batch_index, b):
    if batch_index is None:
        return b
    if isinstance(batch_index, int):
        return 1
    return len(range(b)[batch_index[0]:batch_index[1]])


def tensor(draw, shape, positive=False):
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 20)))
    t = torch.randn(shape, generator=g)
    return t.abs() + 0.05 if positive else t


def direction_vec(draw, c, sel):
    per_sample = sel > 1 and draw(st.booleans())
    return tensor(draw, (sel, c) if per_sample else (c,))


def position(draw, size):
    return draw(st.one_of(st.none(), st.integers(-size, size - 1)))


POWERS = st.sampled_from([0.0, 1.0, 2.5, 4.0])


def leaf(draw, kind, shape):
    """One objective of family ``kind`` valid for activations of ``shape``."""
    b, c, h, w = shape
    bi = draw(batch_indices(b))
    sel = selected(bi, b)
    if kind == "diversity":
        return fo.Diversity(T, batch_index=bi)
    if kind == "total_variation":
        return fo.TotalVariation(T, batch_index=bi)
    if kind == "dot_cossim":
        which = draw(st.sampled_from(["Direction", "NeuronDirection", "AngledNeuronDirection",
                                      "TensorDirection", "VectorLoss"]))
        if which == "Direction":
            return fo.Direction(T, direction_vec(draw, c, sel), draw(POWERS), batch_index=bi)
        if which == "NeuronDirection":
            channel = draw(st.one_of(st.none(), st.integers(-c, c - 1)))
            return fo.NeuronDirection(T, direction_vec(draw, c, sel), position(draw, h),
                                      position(draw, w), channel, draw(POWERS), batch_index=bi)
        if which == "AngledNeuronDirection":
            whitened = tensor(draw, (c, c)) if draw(st.booleans()) else None
            return fo.AngledNeuronDirection(T, direction_vec(draw, c, sel), whitened,
                                            draw(st.sampled_from([1.0, 2.0, 4.0])),
                                            position(draw, h), position(draw, w),
                                            batch_index=bi)
        if which == "TensorDirection":
            vb = sel if sel > 1 and draw(st.booleans()) else 1
            vec = tensor(draw, (vb, c, draw(st.integers(1, h)), draw(st.integers(1, w))))
            return fo.TensorDirection(T, vec, draw(POWERS), batch_index=bi)
        act = draw(st.sampled_from([F.relu, None, torch.tanh]))
        return fo.VectorLoss(T, tensor(draw, (c,)), act, batch_index=bi)
    # No kernel: the same code runs on both backends.
    which = draw(st.sampled_from(["ChannelActivation", "NeuronActivation", "L1", "L2",
                                  "L2Mean", "Alignment", "DeepDream", "LayerActivation",
                                  "ActivationInterpolation", "ActivationWeights"]))
    if which == "ChannelActivation":
        per = sel > 1 and draw(st.booleans())
        ch = (draw(st.lists(st.integers(-c, c - 1), min_size=sel, max_size=sel)) if per
              else draw(st.integers(-c, c - 1)))
        return fo.ChannelActivation(T, ch, batch_index=bi)
    if which == "NeuronActivation":
        return fo.NeuronActivation(T, draw(st.integers(-c, c - 1)), position(draw, h),
                                   position(draw, w), batch_index=bi)
    if which == "L1":
        return fo.L1(T, draw(st.sampled_from([0.0, 0.5])), batch_index=bi)
    if which == "L2":
        return fo.L2(T, draw(st.sampled_from([0.0, -0.3])), batch_index=bi)
    if which == "L2Mean":
        return fo.L2Mean(T, draw(st.one_of(st.none(), st.integers(-c, c - 1))), batch_index=bi)
    if which == "Alignment":
        return fo.Alignment(T, draw(st.sampled_from([2.0, 5.0])), batch_index=bi)
    if which == "DeepDream":
        return fo.DeepDream(T, batch_index=bi)
    if which == "LayerActivation":
        return fo.LayerActivation(T, batch_index=bi)
    if which == "ActivationInterpolation":
        return fo.ActivationInterpolation(T, draw(st.one_of(st.none(), st.integers(0, c - 1))),
                                          T, draw(st.one_of(st.none(), st.integers(-c, -1))))
    return fo.ActivationWeights(T, tensor(draw, (draw(st.sampled_from([1, c])),)))


@st.composite
def leaf_problems(draw, kinds, dtypes=(torch.float32,)):
    shape = draw(dims)
    dtype = draw(st.sampled_from(dtypes))
    loss = leaf(draw, draw(st.sampled_from(kinds)), shape)
    if 2 in (getattr(loss, "ranks", None) or ()):  # it also takes pooled (B, C) activations
        shape = shape[:draw(st.sampled_from([2, 4, 4]))]
    return loss, tensor(draw, shape).to(dtype), dtype


NUMBERS = st.sampled_from([-2.5, -1, 0.5, 2, 3.25, torch.tensor(1.5)])


@st.composite
def trees(draw, shape, depth=0):
    """A random composition of objectives (every family) with numbers and operators."""
    if depth >= 3 or draw(st.integers(0, 3)) == 0:
        kind = draw(st.sampled_from(ALL_KERNELS + ("none",)))
        node = leaf(draw, kind, shape)
        if kind == "none" and draw(st.integers(0, 3)) == 0:
            # round only where both backends compute the same bits (no kernel below it), so a
            # last-ulp difference cannot flip a rounding step.
            node = round(node, draw(st.integers(0, 2))) if draw(st.booleans()) else round(node)
        return node
    op = draw(st.sampled_from(["unary", "number", "loss", "div", "sum_list"]))
    a = draw(trees(shape, depth + 1))
    if op == "unary":
        return draw(st.sampled_from([lambda l: -l, lambda l: +l, abs]))(a)
    if op == "number":
        k = draw(NUMBERS)
        return draw(st.sampled_from([lambda: a + k, lambda: k + a, lambda: a - k, lambda: k - a,
                                     lambda: a * k, lambda: k * a, lambda: a / k]))()
    if op == "loss":
        b = draw(trees(shape, depth + 1))
        return draw(st.sampled_from([lambda: a + b, lambda: a - b, lambda: a * b]))()
    if op == "div":  # a divisor bounded away from 0
        return a / (abs(draw(trees(shape, depth + 1))) + 1)
    rest = [draw(trees(shape, depth + 1)) for _ in range(draw(st.integers(0, 2)))]
    return fo.sum_loss_list([a] + rest)


@st.composite
def tree_problems(draw):
    shape = draw(dims)
    return draw(trees(shape)), tensor(draw, shape), torch.float32


def check_backends_agree(loss, x, dtype):
    ref_x = x.clone().requires_grad_()
    got_x = x.clone().requires_grad_()
    ref_value, ref_grads = evaluate(loss, {T: ref_x}, "torch")
    got_value, got_grads = evaluate(loss, {T: got_x}, "triton")
    assert got_value.shape == ref_value.shape and got_value.dtype == ref_value.dtype
    assert_agree(got_value, ref_value, dtype, f"value of {loss!r}")
    if ref_grads[T] is None:
        assert got_grads[T] is None
        return
    assert got_grads[T].dtype == ref_grads[T].dtype
    assert_agree(got_grads[T], ref_grads[T], dtype, f"gradient of {loss!r}")


# --------------------------------------------------------------------------------------------
# Agreement of the two paths.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, examples", [("diversity", 15), ("total_variation", 15),
                                             ("dot_cossim", 35)])
def test_leaf_backends_agree_float32(kind, examples):
    @bounded(examples)
    @given(problem=leaf_problems((kind,)))
    def run(problem):
        check_backends_agree(*problem)

    run()


@bounded(20)
@given(problem=leaf_problems(ALL_KERNELS, dtypes=(torch.float16, torch.bfloat16)))
def test_leaf_backends_agree_16bit(problem):
    check_backends_agree(*problem)


@bounded(25)
@given(problem=tree_problems())
def test_composition_trees_agree(problem):
    check_backends_agree(*problem)


@bounded(60)
@given(problem=tree_problems())
def test_composition_trees_reference_is_finite(problem):
    loss, x, _ = problem
    value, grads = evaluate(loss, {T: x.clone().requires_grad_()}, "torch")
    assert torch.isfinite(value).all(), f"{loss!r}: {value}"
    assert grads[T] is None or torch.isfinite(grads[T]).all()


# --------------------------------------------------------------------------------------------
# Fuzzed arguments: only documented errors, and the same one on both backends.
# --------------------------------------------------------------------------------------------

@st.composite
def fuzz_problems(draw):
    b, c, h, w = shape = draw(dims)
    wide = st.integers(-2 * max(b, c, h, w) - 1, 2 * max(b, c, h, w) + 1)
    bi = draw(st.one_of(st.none(), batch_indices(b), wide,
                        st.tuples(st.one_of(st.none(), wide), st.one_of(st.none(), wide)),
                        st.sampled_from([1.0, "0", True, (0, 1, 2), torch.tensor(0.5)])))
    cc = draw(st.sampled_from([c, c, c - 1, c + 1])) or 1
    nv = draw(st.sampled_from([1, 1, b, b + 1, 2]))
    vec = tensor(draw, (nv, cc)) if draw(st.booleans()) else tensor(draw, (cc,))
    ch = draw(st.one_of(st.none(), wide, st.lists(wide, min_size=1, max_size=b + 1)))
    x, y = draw(st.one_of(st.none(), wide)), draw(st.one_of(st.none(), wide))
    which = draw(st.sampled_from([
        "ChannelActivation", "NeuronActivation", "L2Mean", "Direction", "NeuronDirection",
        "AngledNeuronDirection", "TensorDirection", "VectorLoss", "Diversity", "TotalVariation",
        "ActivationWeights", "ActivationInterpolation", "Alignment"]))
    makers = {
        "ChannelActivation": lambda: fo.ChannelActivation(T, ch, batch_index=bi),
        "NeuronActivation": lambda: fo.NeuronActivation(T, ch, x, y, batch_index=bi),
        "L2Mean": lambda: fo.L2Mean(T, ch, batch_index=bi),
        "Direction": lambda: fo.Direction(T, vec, draw(POWERS), batch_index=bi),
        "NeuronDirection": lambda: fo.NeuronDirection(
            T, vec, x, y, ch if not isinstance(ch, list) else ch[0], draw(POWERS),
            batch_index=bi),
        "AngledNeuronDirection": lambda: fo.AngledNeuronDirection(
            T, vec, tensor(draw, (cc, draw(st.sampled_from([cc, c])))) if draw(st.booleans())
            else None, draw(POWERS), x, y, batch_index=bi),
        "TensorDirection": lambda: fo.TensorDirection(
            T, tensor(draw, (nv, cc, draw(st.integers(1, h + 1)), draw(st.integers(1, w + 1)))),
            draw(POWERS), batch_index=bi),
        "VectorLoss": lambda: fo.VectorLoss(T, vec, batch_index=bi),
        "Diversity": lambda: fo.Diversity(T, batch_index=bi),
        "TotalVariation": lambda: fo.TotalVariation(T, batch_index=bi),
        "ActivationWeights": lambda: fo.ActivationWeights(
            T, vec, x=x, y=y, wx=draw(st.one_of(st.none(), wide)),
            wy=draw(st.one_of(st.none(), wide))),
        "ActivationInterpolation": lambda: fo.ActivationInterpolation(
            T, None if isinstance(ch, list) else ch, T, x),
        "Alignment": lambda: fo.Alignment(T, batch_index=bi),
    }
    rank = draw(st.sampled_from([4, 4, 4, 2, 3]))
    return which, makers[which], tensor(draw, shape[:rank])


def _outcome(loss, x, backend):
    leaf_x = x.clone().requires_grad_()
    try:
        value, _ = evaluate(loss, {T: leaf_x}, backend)
    except DOCUMENTED as err:
        return err
    return value


@bounded(200)
@given(problem=fuzz_problems())
def test_fuzzed_arguments_raise_only_documented_errors(problem):
    which, make, x = problem
    try:
        loss = make()
    except DOCUMENTED as err:
        event(f"refused at construction: {type(err).__name__}")
        assert which in str(err), f"error without the objective's name: {err!r}"
        return
    ref = _outcome(loss, x, "torch")
    event(f"call: {type(ref).__name__}")
    if isinstance(ref, BaseException):
        assert which in str(ref), f"error without the objective's name: {ref!r}"
        # Validation happens before dispatch: the forced Triton path raises the same error
        # without reaching a kernel.
        got = _outcome(loss, x, "triton")
        assert type(got) is type(ref) and str(got) == str(ref), (ref, got)
