"""Every launcher of fastobj.kernels launches its kernels under its input's device.

Triton launches on the *current* CUDA device, so without a guard a tensor on cuda:1 while
cuda:0 is current would be read by a kernel running on the wrong GPU. On CPU the guard is
emulated: ``_common.device_guard`` is replaced by one that records the device it was asked for
and marks the launcher as inside it, and Triton's interpreter refuses a launch made outside.
The `gpu` test runs the real guard with two GPUs (skipped with a reason otherwise). The SM
count that sizes the grids (FASTOBJ_SM_COUNT or the device's) is checked here too.
"""
import contextlib

import pytest
import torch

from fastobj import functional as Fn
from fastobj.backend import interpreter_enabled, use_backend

# These tests need the optional triton extra; a kernel module that does not import fails.
interpreter = pytest.importorskip("triton.runtime.interpreter")
from fastobj.kernels import _common as common  # noqa: E402
from fastobj.kernels import diversity as kd  # noqa: E402
from fastobj.kernels import dot_cossim as kc  # noqa: E402
from fastobj.kernels import total_variation as kt  # noqa: E402


@pytest.fixture
def guard_log(monkeypatch):
    """Devices the launchers guarded, and a check that every kernel launch is inside a guard."""
    log = {"devices": [], "depth": 0, "launches": 0}

    @contextlib.contextmanager
    def recording_guard(device):
        log["devices"].append(device)
        log["depth"] += 1
        try:
            yield
        finally:
            log["depth"] -= 1

    real_run = interpreter.InterpretedFunction.run

    def checked_run(self, *args, **kwargs):
        assert log["depth"] > 0, f"{self.fn.__name__} launched outside the device guard"
        log["launches"] += 1
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(common, "device_guard", recording_guard)
    monkeypatch.setattr(interpreter.InterpretedFunction, "run", checked_run)
    return log


def _launcher_calls():
    """(name, call) of every public launcher on small odd-sized CPU tensors."""
    x = torch.randn(2, 3, 7, 5)
    acts, vec = torch.randn(3, 9, 11), torch.randn(1, 9, 1)
    feats = torch.randn(3, 7, 11)
    norms = Fn.diversity_sums_ref(feats.double())[2].float()
    return [
        ("total_variation_forward", lambda: kt.total_variation_forward(x)),
        ("total_variation_backward", lambda: kt.total_variation_backward(x, torch.tensor(0.3))),
        ("dot_cossim_forward", lambda: kc.dot_cossim_forward(acts, vec, 2.0, 1e-8, False)),
        ("dot_cossim_backward", lambda: kc.dot_cossim_backward(
            acts, vec, torch.randn(3, 11), 2.0, 1e-8, False, True)),
        ("diversity_sums_forward", lambda: kd.diversity_sums_forward(feats, 1e-12)),
        ("diversity_sums_backward", lambda: kd.diversity_sums_backward(
            feats, norms, torch.zeros(kd.gram_storage_shape(3, 7, feats.dtype)), torch.randn(7, 7),
            torch.tensor(0.5), 1e-12)),
        ("diversity_value_backward", lambda: kd.diversity_value_backward(
            feats, norms, torch.zeros(kd.gram_storage_shape(3, 7, feats.dtype)), torch.randn(7, 7),
            torch.tensor(0.5), 1e-12)),
    ]


@pytest.mark.skipif(not interpreter_enabled(), reason="the emulation runs in the interpreter")
@pytest.mark.parametrize("name", [name for name, _ in _launcher_calls()])
def test_launches_happen_under_the_input_device(name, guard_log):
    call = dict(_launcher_calls())[name]
    call()
    assert guard_log["launches"] >= 1
    assert guard_log["devices"] == [torch.device("cpu")]


def test_guard_enters_the_cuda_device_of_the_tensor(monkeypatch):
    """device_guard builds torch.cuda.device for the tensor's own index when another device is
    current, and nothing when it is current already (switching costs host time) or for CPU
    tensors. (cuda:0 is made current by a stand-in: no CUDA call is needed.)"""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    guard = common.device_guard(torch.device("cuda", 1))
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    assert isinstance(common.device_guard(torch.device("cuda", 0)), contextlib.nullcontext)
    assert isinstance(common.device_guard(torch.device("cpu")), contextlib.nullcontext)


@pytest.mark.gpu
def test_second_gpu_while_first_is_current():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    torch.cuda.set_device(0)
    x = torch.randn(2, 3, 33, 17, device="cuda:1", requires_grad=True)
    with use_backend("triton"):
        value = Fn.total_variation(x)
        (grad,) = torch.autograd.grad(value, x, torch.tensor(0.7, device="cuda:1"))
    x64 = x.detach().double().requires_grad_()
    ref = Fn.total_variation_ref(x64)
    (ref_grad,) = torch.autograd.grad(ref, x64, torch.tensor(0.7, dtype=torch.float64,
                                                             device="cuda:1"))
    torch.testing.assert_close(value.double(), ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-5, atol=1e-6)


def test_sm_count_override_is_checked(monkeypatch):
    monkeypatch.setenv(common.SM_COUNT_ENV, "132")
    assert common.sm_count(torch.device("cpu")) == 132
    assert common.resident_grid(torch.device("cpu"), 3, 4, 10_000) == 396
    monkeypatch.setenv(common.SM_COUNT_ENV, "many")
    with pytest.raises(ValueError, match="FASTOBJ_SM_COUNT"):
        common.sm_count(torch.device("cpu"))
