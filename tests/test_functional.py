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


@pytest.mark.parametrize("case", ["diversity_sums", "total_variation", "dot_cossim"])
def test_opcheck_triton_ops(case):
    """The custom ops around the kernels (run here in Triton's interpreter) pass opcheck."""
    if case == "diversity_sums":
        op, args = torch.ops.fastobj.diversity_sums, (torch.randn(3, 5, 7, requires_grad=True),)
    elif case == "total_variation":
        op, args = torch.ops.fastobj.total_variation, (torch.randn(2, 3, 5, 6,
                                                                   requires_grad=True),)
    else:
        op = torch.ops.fastobj.dot_cossim
        args = (torch.randn(4, 5, 6, requires_grad=True), torch.randn(4, 5, 1, requires_grad=True),
                2.0, 1e-8, False)
    torch.library.opcheck(op, args)


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
