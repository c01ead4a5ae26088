"""The functional core: backend choice, custom-op registration, torch.compile."""
import pytest
import torch

import fastobj as fo
from fastobj import functional as Fn


def test_backend_choice_on_cpu(monkeypatch):
    x = torch.randn(2, 3, 4)
    monkeypatch.delenv("FASTOBJ_BACKEND", raising=False)
    assert fo.get_backend() == "auto"
    assert fo.backend_for(x) == "torch"  # auto never takes the interpreter
    with fo.use_backend("triton"):
        assert fo.get_backend() == "triton"
        assert fo.backend_for(x) == "triton"  # conftest enables the interpreter on CPU
        with pytest.raises(RuntimeError, match="float32, float16 and bfloat16"):
            fo.backend_for(x.double())
        with fo.use_backend("torch"):
            assert fo.backend_for(x) == "torch"
    monkeypatch.setenv("FASTOBJ_BACKEND", "torch")
    assert fo.get_backend() == "torch"
    monkeypatch.setenv("FASTOBJ_BACKEND", "cuda")
    with pytest.raises(ValueError, match="FASTOBJ_BACKEND"):
        fo.get_backend()
    with pytest.raises(ValueError, match="use_backend"):
        with fo.use_backend("fast"):
            pass


def test_forced_triton_without_interpreter_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with fo.use_backend("triton"):
        with pytest.raises(RuntimeError, match="tensor is on cpu"):
            fo.backend_for(torch.randn(3))
        with pytest.raises(RuntimeError, match="forced"):
            Fn.total_variation(torch.randn(2, 3, 3))


def test_set_backend_round_trip():
    fo.set_backend("torch")
    try:
        assert fo.get_backend() == "torch"
    finally:
        fo.set_backend(None)
    assert fo.get_backend() in ("auto", "torch", "triton")


def test_import_does_not_touch_cuda_or_triton():
    import subprocess
    import sys
    code = ("import sys, torch; torch.cuda.is_available = None; import fastobj; "
            "assert 'triton' not in sys.modules, 'triton imported'; "
            "assert 'fastobj.kernels' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def _feats_layout(layout: str, b: int, c: int, h: int, w: int) -> torch.Tensor:
    """A (b, c, h*w) float32 tensor laid out as a user's activations can be."""
    if layout == "contiguous":
        return torch.randn(b, c, h * w)
    if layout == "channels_last":  # flatten(2) of an NHWC tensor: strides (h*w*c, 1, c)
        return torch.randn(b, c, h, w).to(memory_format=torch.channels_last).flatten(2)
    if layout == "transposed":
        return torch.randn(b, h * w, c).transpose(1, 2)
    return torch.randn(b + 2, c + 1, h * w + 3)[1:-1, 1:, 2:-1]  # sliced: not dense


def _image_layout(layout: str, b: int, c: int, h: int, w: int) -> torch.Tensor:
    """A (b, c, h, w) float32 tensor in the same four layouts."""
    if layout == "contiguous":
        return torch.randn(b, c, h, w)
    if layout == "channels_last":
        return torch.randn(b, c, h, w).to(memory_format=torch.channels_last)
    if layout == "transposed":
        return torch.randn(b, c, w, h).transpose(2, 3)
    return torch.randn(b + 1, c, h + 2, w + 3)[1:, :, 1:-1, 2:-1]


LAYOUTS = ["contiguous", "channels_last", "transposed", "sliced"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_opcheck_every_op_on_every_layout(layout):
    """Every custom op around the kernels (forward and backward, run here in Triton's
    interpreter) passes opcheck on the layouts activations come in: fake and kernel agree on
    shapes and strides, and the autograd registration is complete."""
    feats = _feats_layout(layout, 3, 5, 2, 4).requires_grad_()
    sums, sq, norms, grams = torch.ops.fastobj.diversity_sums(feats.detach())
    image = _image_layout(layout, 2, 3, 5, 6).requires_grad_()
    acts = _feats_layout(layout, 4, 6, 3, 2).requires_grad_()
    shared, per_position = torch.randn(1, 6, 1), _feats_layout(layout, 4, 6, 3, 2)
    grad_rows = torch.randn(4, 6)
    cases = [
        (torch.ops.fastobj.diversity_sums, (feats,)),
        (torch.ops.fastobj.diversity_sums_backward,
         (feats.detach(), norms, grams, torch.randn(5, 5), torch.tensor(0.7))),
        (torch.ops.fastobj.total_variation, (image,)),
        (torch.ops.fastobj.total_variation_backward, (image.detach(), torch.tensor(1.3))),
        (torch.ops.fastobj.dot_cossim, (acts, shared.requires_grad_(), 2.0, 1e-8, False)),
        (torch.ops.fastobj.dot_cossim, (acts, per_position, 1.0, 1e-4, True)),
        (torch.ops.fastobj.dot_cossim_backward,
         (acts.detach(), shared.detach(), grad_rows, 2.0, 1e-8, False, True)),
        (torch.ops.fastobj.dot_cossim_backward,
         (acts.detach(), per_position, grad_rows, 1.0, 1e-4, True, False)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_compiled_backward_on_channels_last_diversity(monkeypatch, tmp_path):
    """Inductor trusts the fake's strides: with a channels-last input the compiled backward of
    the Diversity op must get the layout the kernel really writes."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # no graph from another run
    torch._dynamo.reset()
    x = torch.randn(3, 16, 4, 5, dtype=torch.float64).to(memory_format=torch.channels_last)

    def scaled(a):
        return Fn.diversity(a.flatten(2)) * 1.5

    x64 = x.clone().requires_grad_()
    scaled(x64).backward()  # the float64 reference path
    with fo.use_backend("triton"):
        xc = x.float().requires_grad_()
        torch.compile(scaled, fullgraph=True)(xc).backward()
    torch.testing.assert_close(xc.grad.double(), x64.grad, rtol=1e-4, atol=1e-6)


def test_compile_fullgraph_over_objectives():
    torch._dynamo.reset()
    vec = torch.randn(6)
    loss = (fo.ChannelActivation("t", 2) + 1e2 * fo.Diversity("t")
            - 1e-3 * fo.TotalVariation("t") + fo.Direction("t", vec, cossim_pow=2.0)
            + fo.Alignment("t") + fo.AngledNeuronDirection("t", vec, x=1, y=1))

    def step(a):
        return fo.default_loss_summarize(loss({"t": a}))

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    a = torch.randn(4, 6, 5, 7, requires_grad=True)
    eager_value = step(a)
    (eager_grad,) = torch.autograd.grad(eager_value, a)
    compiled_value = compiled(a)
    (compiled_grad,) = torch.autograd.grad(compiled_value, a)
    assert torch.allclose(eager_value, compiled_value, rtol=1e-5)
    assert torch.allclose(eager_grad, compiled_grad, rtol=1e-4, atol=1e-6)
