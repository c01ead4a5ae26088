"""Misuse raises a documented error that names the objective and the argument at fault.

Every call-time case runs on both backends: the checks must happen before the computation is
dispatched, so forcing "triton" (the interpreter on CPU) must give exactly the same error.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import fastobj as fo
from _reliability import BACKENDS, named

B, C, H, W = 3, 4, 5, 7  # non-square spatial map, so x (dim 2) and y (dim 3) differ
T, U = "act", "other"
REPO = Path(__file__).resolve().parent.parent


def acts(shape=(B, C, H, W), dtype=torch.float32, grad=True):
    x = torch.randn(shape, dtype=dtype)
    return {T: x.requires_grad_(grad) if x.is_floating_point() else x}


def vec(n=C):
    return torch.randn(n)


# Objectives with valid arguments for a (B, C, H, W) activation at T; kw is batch_index etc.
WITH_BATCH = {
    "LayerActivation": lambda **kw: fo.LayerActivation(T, **kw),
    "ChannelActivation": lambda **kw: fo.ChannelActivation(T, 1, **kw),
    "NeuronActivation": lambda **kw: fo.NeuronActivation(T, 1, **kw),
    "DeepDream": lambda **kw: fo.DeepDream(T, **kw),
    "TotalVariation": lambda **kw: fo.TotalVariation(T, **kw),
    "L1": lambda **kw: fo.L1(T, **kw),
    "L2": lambda **kw: fo.L2(T, **kw),
    "L2Mean": lambda **kw: fo.L2Mean(T, 1, **kw),
    "Diversity": lambda **kw: fo.Diversity(T, **kw),
    "Alignment": lambda **kw: fo.Alignment(T, **kw),
    "Direction": lambda **kw: fo.Direction(T, vec(), cossim_pow=2.0, **kw),
    "NeuronDirection": lambda **kw: fo.NeuronDirection(T, vec(), cossim_pow=1.0, **kw),
    "AngledNeuronDirection": lambda **kw: fo.AngledNeuronDirection(T, vec(), **kw),
    "TensorDirection": lambda **kw: fo.TensorDirection(T, torch.randn(1, C, 3, 3), **kw),
    "VectorLoss": lambda **kw: fo.VectorLoss(T, vec(), **kw),
    "FacetLoss": lambda **kw: fo.FacetLoss(vec(), T, T, torch.ones(1, C), **kw),
}
WITHOUT_BATCH = {
    "ActivationInterpolation": lambda: fo.ActivationInterpolation(T, 0, T, 1),
    "ActivationWeights": lambda: fo.ActivationWeights(T, vec()),
}
ALL = {**{k: (lambda f=f: f()) for k, f in WITH_BATCH.items()}, **WITHOUT_BATCH}


@pytest.fixture(params=BACKENDS)
def backend(request):
    with fo.use_backend(request.param):
        yield request.param


def call_raises(loss, mapping, exc, pattern):
    with pytest.raises(exc, match=pattern):
        loss(mapping)


# --------------------------------------------------------------------------------------------
# The activation mapping and the activation itself.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ALL))
def test_target_missing_from_mapping(name, backend):
    loss = ALL[name]()
    call_raises(loss, {U: torch.randn(B, C, H, W)}, KeyError, named(name, "target", repr(T)))


@pytest.mark.parametrize("name", sorted(ALL))
def test_mapping_is_not_a_mapping(name, backend):
    x = torch.randn(B, C, H, W)
    call_raises(ALL[name](), x, TypeError, named(name, "mapping", "Tensor"))
    call_raises(ALL[name](), [x], TypeError, named(name, "mapping", "list"))


def test_mapping_is_not_a_mapping_with_module_target(backend):
    module = torch.nn.Identity()
    x = torch.randn(B, C, H, W)
    for loss in (fo.LayerActivation(module), fo.Diversity(module), fo.Direction(module, vec())):
        call_raises(loss, x, TypeError, named(type(loss).__name__, "mapping", "Tensor"))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
@pytest.mark.parametrize("name", sorted(ALL))
def test_non_floating_activation(name, dtype, backend):
    x = (torch.rand(B, C, H, W) * 3).to(dtype)
    call_raises(ALL[name](), {T: x}, TypeError, named(name, "activation", str(dtype)))


@pytest.mark.parametrize("name", sorted(ALL))
def test_empty_batch(name, backend):
    x = torch.randn(0, C, H, W, requires_grad=True)
    call_raises(ALL[name](), {T: x}, ValueError, named(name) + ".*(empty batch|no samples)")


@pytest.mark.parametrize("name, shape", [
    ("ChannelActivation", (B,)),
    ("NeuronActivation", (B, C, H)),
    ("NeuronActivation", (B, C)),
    ("L2Mean", (B,)),
    ("TotalVariation", (B,)),
    ("Diversity", (B,)),
    ("Direction", (B,)),
    ("NeuronDirection", (B, C, H)),
    ("AngledNeuronDirection", (B, C, H)),
    ("AngledNeuronDirection", (B, C, H, W, 2)),
    ("TensorDirection", (B, C, H)),
    ("VectorLoss", (B,)),
    ("FacetLoss", (B,)),
    ("ActivationInterpolation", ()),
])
def test_activation_of_wrong_rank(name, shape, backend):
    x = torch.randn(shape, requires_grad=True)
    call_raises(ALL[name](), {T: x}, ValueError, named(name, "rank", str(tuple(shape))))


# Everything that reads dim 1 as channels refuses rank 3, the usual shape of an unbatched
# image's activation; the elementwise objectives take any rank.
ELEMENTWISE = {"LayerActivation", "DeepDream", "L1", "L2"}


@pytest.mark.parametrize("name", sorted(set(ALL) - ELEMENTWISE))
def test_unbatched_activation_is_refused_with_a_hint(name, backend):
    x = torch.randn(C, H, W, requires_grad=True)
    call_raises(ALL[name](), {T: x}, ValueError,
                named(name, "rank 4 (B, C, H, W)", str((C, H, W)), "x.unsqueeze(0)"))


def test_unbatched_image_through_a_conv_is_refused(backend):
    conv = torch.nn.Conv2d(3, 16, 3)
    image = torch.rand(3, 12, 10)  # no batch dim: the conv accepts it and returns (16, 10, 8)
    with pytest.raises(ValueError, match=named("ChannelActivation", "(16, 10, 8)", "unsqueeze")):
        fo.ChannelActivation(conv, 5)(fo.collect_activations(conv, [conv], image))


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_objectives_take_any_rank(name, backend):
    for shape in ((B,), (B, C, H), (B, C, H, W, 2)):
        assert ALL[name]()({T: torch.randn(shape)}).dim() in (0, len(shape))


def test_activation_weights_neuron_needs_4d(backend):
    loss = fo.ActivationWeights(T, vec(), neuron=True)
    call_raises(loss, {T: torch.randn(B, C)}, ValueError, named("ActivationWeights", "rank"))


@pytest.mark.parametrize("name", sorted(ALL))
def test_activation_is_none(name, backend):
    call_raises(ALL[name](), {T: None}, ValueError, named(name, "no activation"))


# --------------------------------------------------------------------------------------------
# Indices into the activation: channels, neuron positions, windows.
# --------------------------------------------------------------------------------------------

CHANNEL_CASES = [
    (lambda c: fo.ChannelActivation(T, c), "ChannelActivation", "channel_index"),
    (lambda c: fo.NeuronActivation(T, c), "NeuronActivation", "channel_index"),
    (lambda c: fo.L2Mean(T, c), "L2Mean", "channel_index"),
    (lambda c: fo.NeuronDirection(T, vec(), channel_index=c), "NeuronDirection",
     "channel_index"),
    (lambda c: fo.ActivationInterpolation(T, c, T, 0), "ActivationInterpolation",
     "channel_index1"),
    (lambda c: fo.ActivationInterpolation(T, 0, T, c), "ActivationInterpolation",
     "channel_index2"),
]


@pytest.mark.parametrize("channel", [C, C + 3, -C - 1, -100])
@pytest.mark.parametrize("make, owner, arg", CHANNEL_CASES,
                         ids=[f"{o}-{a}" for _, o, a in CHANNEL_CASES])
def test_channel_index_outside(make, owner, arg, channel, backend):
    call_raises(make(channel), acts(), IndexError, named(owner, arg, str(channel)))


@pytest.mark.parametrize("bad", [[0, C, 1], [0, -C - 1, 1], torch.tensor([C, 0, 0])])
@pytest.mark.parametrize("cls", [fo.ChannelActivation, fo.NeuronActivation, fo.L2Mean])
def test_per_sample_channel_outside(cls, bad, backend):
    call_raises(cls(T, bad), acts(), IndexError, named(cls.__name__, "channel_index"))


@pytest.mark.parametrize("count", [1, 2, 4])
@pytest.mark.parametrize("cls", [fo.ChannelActivation, fo.NeuronActivation, fo.L2Mean])
def test_per_sample_channel_count(cls, count, backend):
    loss = cls(T, list(range(count)))
    call_raises(loss, acts(), ValueError,
                named(cls.__name__, "channel_index", str(count), str(B)))
    # The count is checked against the *selected* batch: B entries, two samples selected.
    loss = cls(T, list(range(B)), batch_index=(0, 2))
    call_raises(loss, acts(), ValueError, named(cls.__name__, "channel_index", str(B), "2"))


@pytest.mark.parametrize("bad", [1.5, "1", None, torch.tensor(1.0), torch.ones(2, 2).long(),
                                 torch.tensor([0.0, 1.0]), [0, 1.0], True])
@pytest.mark.parametrize("cls", [fo.ChannelActivation, fo.NeuronActivation])
def test_channel_index_wrong_type(cls, bad):
    with pytest.raises(TypeError, match=named(cls.__name__, "channel_index")):
        cls(T, bad)


POSITION_CASES = [
    (lambda **kw: fo.NeuronActivation(T, 0, **kw), "NeuronActivation"),
    (lambda **kw: fo.NeuronDirection(T, vec(), **kw), "NeuronDirection"),
    (lambda **kw: fo.AngledNeuronDirection(T, vec(), **kw), "AngledNeuronDirection"),
    (lambda **kw: fo.ActivationWeights(T, vec(), **kw), "ActivationWeights"),
]


@pytest.mark.parametrize("arg, value", [
    ("x", H), ("x", W - 1), ("x", -H - 1), ("x", 100), ("y", W), ("y", -W - 1), ("y", -100)])
@pytest.mark.parametrize("make, owner", POSITION_CASES, ids=[o for _, o in POSITION_CASES])
def test_neuron_position_outside(make, owner, arg, value, backend):
    # x indexes dim 2 (size H=5) and y dim 3 (size W=7): x=W-1=6 is out, although y=6 is not.
    call_raises(make(**{arg: value}), acts(), IndexError, named(owner, f"{arg}={value}"))


@pytest.mark.parametrize("make, owner", POSITION_CASES, ids=[o for _, o in POSITION_CASES])
def test_neuron_position_edges_are_valid(make, owner):
    """Edge positions are accepted and read the neuron they name: the gradient (for a random
    upstream gradient) reaches position (x mod H, y mod W) of the activation and no other."""
    for kw in ({"x": H - 1, "y": W - 1}, {"x": -H, "y": -W}, {"x": 0, "y": W - 2},
               {"x": -1, "y": 1 - W}):
        mapping = acts()
        out = make(**kw)(mapping)
        out.backward(torch.rand(out.shape) + 0.5)
        reached = mapping[T].grad.ne(0).any(dim=1).any(dim=0)  # (H, W)
        expected = torch.zeros(H, W, dtype=torch.bool)
        expected[kw["x"] % H, kw["y"] % W] = True
        assert torch.equal(reached, expected), f"{owner} with {kw}"


@pytest.mark.parametrize("kw, arg", [
    ({"x": 3, "y": 0, "wx": 3, "wy": 1}, "wx=3"),
    ({"x": 0, "y": 5, "wx": 1, "wy": 3}, "wy=3"),
    ({"x": -1, "y": 0, "wx": 2, "wy": 1}, "wx=2"),
    ({"x": 0, "y": -2, "wx": 1, "wy": 3}, "wy=3"),
    ({"x": -H - 1, "y": 0, "wx": 1, "wy": 1}, f"x={-H - 1}"),
    ({"x": 0, "y": W, "wx": 1, "wy": 1}, f"y={W}"),
    ({"x": 0, "y": -W - 3, "wx": 1, "wy": 1}, f"y={-W - 3}"),
])
def test_activation_weights_window_outside(kw, arg, backend):
    loss = fo.ActivationWeights(T, vec(), **kw)
    call_raises(loss, acts(), IndexError, named("ActivationWeights", arg))


def test_activation_weights_window_edges_are_valid(backend):
    out = fo.ActivationWeights(T, vec(), x=2, y=4, wx=H - 2, wy=W - 4)(acts())
    assert out.shape == (B, C, H - 2, W - 4)
    out = fo.ActivationWeights(T, vec(), x=-2, y=-1, wx=2, wy=1)(acts())
    assert out.shape == (B, C, 2, 1)


@pytest.mark.parametrize("kw, exc, arg", [
    ({"x": 0, "y": 0, "wx": 0, "wy": 1}, ValueError, "wx"),
    ({"x": 0, "y": 0, "wx": 1, "wy": -2}, ValueError, "wy"),
    ({"wx": 1, "wy": 1}, ValueError, "wx"),
    ({"x": 0, "wx": 1}, ValueError, "wx"),
    ({"x": 0.5}, TypeError, "x"),
    ({"wy": "2", "x": 0, "y": 0, "wx": 1}, TypeError, "wy"),
])
def test_activation_weights_window_arguments(kw, exc, arg):
    with pytest.raises(exc, match=named("ActivationWeights", arg)):
        fo.ActivationWeights(T, vec(), **kw)


@pytest.mark.parametrize("count", [1, 3, 5])
def test_activation_weights_count(count, backend):
    if count == 1:  # one weight broadcasts over all channels: valid
        fo.ActivationWeights(T, vec(1))(acts())
        return
    call_raises(fo.ActivationWeights(T, vec(count)), acts(), ValueError,
                named("ActivationWeights", "weights", str(count), str(C)))


# --------------------------------------------------------------------------------------------
# batch_index.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_index", [B, B + 2, -B - 1, -100, (0, B + 1), (-B - 1, None),
                                         (None, B + 1), (None, -B - 1), (B + 1, None)])
@pytest.mark.parametrize("name", sorted(WITH_BATCH))
def test_batch_index_out_of_range(name, batch_index, backend):
    call_raises(WITH_BATCH[name](batch_index=batch_index), acts(), IndexError,
                named(name, "batch_index"))


@pytest.mark.parametrize("batch_index", [(2, 2), (2, 1), (-1, -1), (B, None), (None, 0),
                                         (None, -B), (-1, 0)])
@pytest.mark.parametrize("name", sorted(WITH_BATCH))
def test_batch_index_empty_selection(name, batch_index, backend):
    call_raises(WITH_BATCH[name](batch_index=batch_index), acts(), ValueError,
                named(name, "batch_index", "no samples"))


@pytest.mark.parametrize("batch_index, exc", [
    (1.0, TypeError), ("0", TypeError), (True, TypeError), (False, TypeError),
    (torch.tensor(1.0), TypeError), (np.float32(1.0), TypeError), ((0, 1.5), TypeError),
    (("0", None), TypeError), ((True, None), TypeError), ({0: 1}, TypeError),
    ((0, 1, 2), ValueError), ([1], ValueError), ((), ValueError),
])
@pytest.mark.parametrize("name", sorted(WITH_BATCH))
def test_batch_index_wrong_type(name, batch_index, exc):
    with pytest.raises(exc, match=named(name, "batch_index")):
        WITH_BATCH[name](batch_index=batch_index)


@pytest.mark.parametrize("batch_index", [-1, -B, B - 1, 0, (0, B), (-B, None), (None, -1),
                                         [1, None], np.int64(1), torch.tensor(2)])
def test_batch_index_valid_forms(batch_index):
    x = acts()[T]
    out = fo.LayerActivation(T, batch_index=batch_index)({T: x})
    if isinstance(batch_index, (list, tuple)):
        expected = x[batch_index[0]:batch_index[1]]
    else:
        b = int(batch_index)
        expected = x[b:b + 1] if b != -1 else x[-1:]
    assert torch.equal(out, expected)


# --------------------------------------------------------------------------------------------
# Directions: channel counts, per-sample counts, sizes, whitening, facet weights.
# --------------------------------------------------------------------------------------------

DIRECTION_CASES = [
    ("Direction", lambda v: fo.Direction(T, v), lambda c: torch.randn(c)),
    ("Direction-pow", lambda v: fo.Direction(T, v, cossim_pow=2), lambda c: torch.randn(c)),
    ("NeuronDirection", lambda v: fo.NeuronDirection(T, v), lambda c: torch.randn(c)),
    ("AngledNeuronDirection", lambda v: fo.AngledNeuronDirection(T, v),
     lambda c: torch.randn(c)),
    ("AngledNeuronDirection-pow0", lambda v: fo.AngledNeuronDirection(T, v, cossim_pow=0),
     lambda c: torch.randn(c)),
    ("TensorDirection", lambda v: fo.TensorDirection(T, v), lambda c: torch.randn(1, c, 3, 3)),
    ("VectorLoss", lambda v: fo.VectorLoss(T, v), lambda c: torch.randn(c)),
]


@pytest.mark.parametrize("channels", [C - 1, C + 1, 1, 2 * C])
@pytest.mark.parametrize("case, make, make_vec", DIRECTION_CASES,
                         ids=[c for c, _, _ in DIRECTION_CASES])
def test_direction_channel_count(case, make, make_vec, channels, backend):
    owner = case.split("-")[0]
    loss = make(make_vec(channels))
    call_raises(loss, acts(), ValueError, named(owner, "vec", str(channels), str(C)))


PER_SAMPLE_CASES = [
    ("Direction", lambda n, **kw: fo.Direction(T, torch.randn(n, C), **kw)),
    ("NeuronDirection", lambda n, **kw: fo.NeuronDirection(T, torch.randn(n, C), **kw)),
    ("AngledNeuronDirection",
     lambda n, **kw: fo.AngledNeuronDirection(T, torch.randn(n, C), **kw)),
    ("TensorDirection", lambda n, **kw: fo.TensorDirection(T, torch.randn(n, C, 3, 3), **kw)),
]


@pytest.mark.parametrize("count", [2, 4, 7])
@pytest.mark.parametrize("owner, make", PER_SAMPLE_CASES, ids=[o for o, _ in PER_SAMPLE_CASES])
def test_per_sample_direction_count(owner, make, count, backend):
    call_raises(make(count), acts(), ValueError, named(owner, "vec", str(count), str(B)))


@pytest.mark.parametrize("owner, make", PER_SAMPLE_CASES, ids=[o for o, _ in PER_SAMPLE_CASES])
def test_per_sample_direction_count_uses_selection(owner, make, backend):
    loss = make(B, batch_index=(0, 2))  # B directions, but only two samples selected
    call_raises(loss, acts(), ValueError, named(owner, "vec", str(B), "2"))


@pytest.mark.parametrize("vshape", [(1, C, H + 1, 3), (1, C, 3, W + 1), (1, C, H + 2, W + 2)])
def test_tensor_direction_larger_than_activation(vshape, backend):
    loss = fo.TensorDirection(T, torch.randn(vshape))
    call_raises(loss, acts(), ValueError, named("TensorDirection", "vec", "larger"))


@pytest.mark.parametrize("bad, exc", [(torch.randn(C, 3), ValueError),
                                      (torch.randn(C), ValueError),
                                      (torch.randn(C, C, 1), ValueError),
                                      (torch.randn(C + 1, C + 1), ValueError),
                                      (torch.ones(C, C, dtype=torch.int64), TypeError),
                                      ([[1.0] * C] * C, TypeError)])
def test_whitening_matrix_shape(bad, exc):
    with pytest.raises(exc, match=named("AngledNeuronDirection", "vec_whitened")):
        fo.AngledNeuronDirection(T, vec(), vec_whitened=bad)


@pytest.mark.parametrize("cls, bad, exc", [
    (fo.Direction, [1.0] * C, TypeError),
    (fo.Direction, torch.ones(C, dtype=torch.int64), TypeError),
    (fo.Direction, torch.empty(0), ValueError),
    (fo.NeuronDirection, np.ones(C), TypeError),
    (fo.AngledNeuronDirection, torch.randn(1, C, 1), ValueError),
    (fo.TensorDirection, torch.randn(C), ValueError),
    (fo.TensorDirection, torch.randn(1, C, 3), ValueError),
    (fo.VectorLoss, torch.randn(1, C), ValueError),
    (fo.VectorLoss, None, TypeError),
])
def test_direction_vector_type_and_rank(cls, bad, exc):
    with pytest.raises(exc, match=named(cls.__name__, "vec")):
        cls(T, bad)


@pytest.mark.parametrize("bad, exc", [(torch.ones(C), ValueError),
                                      (torch.ones(1, C, 2), ValueError),
                                      (torch.ones(1, C, 2, 2, 1), ValueError),
                                      (torch.ones(1, C).long(), TypeError),
                                      ([[1.0] * C], TypeError)])
def test_facet_weights_rank(bad, exc):
    with pytest.raises(exc, match=named("FacetLoss", "facet_weights")):
        fo.FacetLoss(vec(), T, U, bad)


def test_facet_weights_channels_and_graph(backend):
    loss = fo.FacetLoss(vec(), T, T, torch.ones(1, C + 1))
    call_raises(loss, acts(), ValueError, named("FacetLoss", "facet_weights", str(C + 1)))
    loss = fo.FacetLoss(vec(), T, T, torch.ones(1, C))
    call_raises(loss, acts(grad=False), ValueError, named("FacetLoss", "layer_target", "grad"))


@pytest.mark.parametrize("strength, exc", [((1.0,), ValueError), ([1, 2, 3], ValueError),
                                           ("1", TypeError), (torch.ones(2), TypeError)])
def test_facet_strength(strength, exc):
    with pytest.raises(exc, match=named("FacetLoss", "strength")):
        fo.FacetLoss(vec(), T, U, torch.ones(1, C), strength=strength)


def test_activation_interpolation_batch_mismatch(backend):
    loss = fo.ActivationInterpolation(T, None, U, 1)
    mapping = {T: torch.randn(3, C, H, W), U: torch.randn(2, C, 2, 2)}
    call_raises(loss, mapping, ValueError,
                named("ActivationInterpolation", "target1", "3", "target2", "2"))


def test_process_group_without_init():
    for cls in (fo.Diversity, fo.Alignment):
        with pytest.raises(ValueError, match=named(cls.__name__, "process_group")):
            cls(T, process_group=object())


# --------------------------------------------------------------------------------------------
# Composition operands.
# --------------------------------------------------------------------------------------------

BAD_OPERANDS = [("str", "a"), ("list", [1.0, 2.0]), ("ndarray", np.array([1.0, 2.0])),
                ("ndarray", np.array(2j)), ("NoneType", None), ("Tensor", torch.ones(2)),
                ("dict", {}), ("complex", 1j), ("complex128", np.complex128(1j)),
                ("Tensor", torch.tensor(1j))]
OPS = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "truediv": lambda a, b: a / b, "pow": lambda a, b: a ** b,
}


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("type_name, operand", BAD_OPERANDS,
                         ids=[f"{n}{i}" for i, (n, _) in enumerate(BAD_OPERANDS)])
def test_composition_with_bad_operand(type_name, operand, op):
    loss = fo.ChannelActivation(T, 0)
    with pytest.raises(TypeError, match=type_name):
        OPS[op](loss, operand)
    with pytest.raises(TypeError, match=type_name):
        OPS[op](operand, loss)


def test_composition_with_numpy_array_does_not_broadcast_losses():
    # numpy would otherwise build an object array of losses, one per element.
    loss = fo.L1(T)
    for operand in (np.array([1.0, 2.0]), np.ones((2, 2))):
        with pytest.raises(TypeError, match=type(operand).__name__):
            operand + loss
        with pytest.raises(TypeError, match=type(operand).__name__):
            operand * loss


def test_sum_loss_list_bad_entry():
    with pytest.raises(TypeError, match=named("sum_loss_list", "str")):
        fo.sum_loss_list([fo.L1(T), "L2"])
    with pytest.raises(TypeError, match=named("sum_loss_list", "ndarray")):
        fo.sum_loss_list([np.ones(2)])


# --------------------------------------------------------------------------------------------
# No assert statements guard user input: the checks survive ``python -O``.
# --------------------------------------------------------------------------------------------

def _asserts(tree):
    """Assert statements, except inside @triton.jit functions (device asserts, not input checks)."""
    found = []

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                "jit" in ast.unparse(d) for d in node.decorator_list):
            return
        if isinstance(node, ast.Assert):
            found.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_no_assert_statements_in_library():
    # fastobj/ and kernels/ (installed as fastobj.kernels)
    paths = sorted((REPO / "fastobj").rglob("*.py")) + sorted((REPO / "kernels").rglob("*.py"))
    assert len(paths) > 10
    found = [f"{path.relative_to(REPO)}:{line}" for path in paths
             for line in _asserts(ast.parse(path.read_text(), filename=str(path)))]
    assert found == [], f"assert statements in the library (stripped by python -O): {found}"


O_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import fastobj as fo
    if sys.flags.optimize < 1:
        sys.exit("not running under -O")
    x = torch.randn(3, 4, 5, 7)
    cases = [
        (lambda: fo.ChannelActivation("t", 9)({"t": x}), IndexError, "ChannelActivation"),
        (lambda: fo.NeuronActivation("t", 0, x=5)({"t": x}), IndexError, "NeuronActivation"),
        (lambda: fo.LayerActivation("t", batch_index=3)({"t": x}), IndexError, "batch_index"),
        (lambda: fo.LayerActivation("t", batch_index=(2, 2))({"t": x}), ValueError,
         "batch_index"),
        (lambda: fo.Diversity("t", batch_index=1.0), TypeError, "batch_index"),
        (lambda: fo.Direction("t", torch.ones(5))({"t": x}), ValueError, "vec"),
        (lambda: fo.TensorDirection("t", torch.ones(1, 4, 6, 1))({"t": x}), ValueError, "vec"),
        (lambda: fo.AngledNeuronDirection("t", torch.ones(4), vec_whitened=torch.ones(4, 3)),
         ValueError, "vec_whitened"),
        (lambda: fo.FacetLoss(torch.ones(4), "t", "u", torch.ones(4)), ValueError,
         "facet_weights"),
        (lambda: fo.Diversity("t")({"t": x.long()}), TypeError, "dtype"),
        (lambda: fo.L1("t") + "a", TypeError, "str"),
        (lambda: fo.ActivationInterpolation("t", 0, "u", 0)({"t": x, "u": x[:2]}), ValueError,
         "target2"),
        (lambda: fo.ActivationWeights("t", torch.ones(4), x=4, y=0, wx=2, wy=1)({"t": x}),
         IndexError, "wx"),
    ]
    for fn, exc, word in cases:
        try:
            fn()
        except exc as err:
            if word not in str(err):
                sys.exit(f"message without {word!r}: {err}")
        else:
            sys.exit(f"no {exc.__name__} for case needing {word!r}")
    print("ok", len(cases))
""")


def test_checks_survive_python_O():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-O", "-c", O_SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().startswith("ok")
