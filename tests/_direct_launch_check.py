"""Run by tests/test_direct_launch.py in a fresh process without TRITON_INTERPRET: every launch
of the kernel paths, on small CPU tensors with Triton compiling for sm_90 and launching nothing
(benchmarks/host_cost.py's fake driver), recorded twice: the first call goes through Triton's
JITFunction.run, the repeat through the compiled kernel directly (_common.launch_compiled).
Prints one JSON object: the Triton version and, per case, whether the repeat passed the
launcher what Triton passed it (same compiled kernel, grid, stream, hooks and arguments), both
with no launch hook registered (the launch metadata, which only hooks read, is then not built
on the direct path) and with one registered (the metadata's contents compared too)."""
import json
import os
import sys

os.environ["FASTOBJ_SM_COUNT"] = "132"
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

import torch  # noqa: E402
import triton  # noqa: E402

from fastobj import functional as Fn  # noqa: E402
from fastobj.benchmarks import host_cost  # noqa: E402
from fastobj.kernels import _common  # noqa: E402

METADATA = 6  # the launcher's arguments: grid (3), stream, function, packed metadata, then this


def comparable(launch, hooked):
    """A recorded launch with tensors replaced by (dtype, shape, strides, storage offset) and
    the launch metadata (Triton's LazyDict, which only launch hooks read) by its contents, or,
    with no hook registered, by a placeholder."""
    launcher, args = launch

    def value(a):
        if isinstance(a, torch.Tensor):
            return a.dtype, tuple(a.shape), a.stride(), a.storage_offset()
        if type(a).__name__ == "LazyDict":
            return sorted(a.get().items())
        return a
    values = list(map(value, args))
    if not hooked:
        values[METADATA] = "unread"
    return (id(launcher),) + tuple(values)


def record(step, hooked=False):
    host_cost._FakeLauncher.record = []
    step()
    launches, host_cost._FakeLauncher.record = host_cost._FakeLauncher.record, None
    return [comparable(launch, hooked) for launch in launches]


def hooked_launches(step):
    """(first, repeat) recordings of step with a launch hook registered."""
    def hook(metadata):
        pass
    triton.knobs.runtime.launch_enter_hook.add(hook)
    try:
        _common._compiled.clear()
        return record(step, hooked=True), record(step, hooked=True)
    finally:
        triton.knobs.runtime.launch_enter_hook.remove(hook)


def misaligned(shape, dtype=torch.float32):
    """A tensor whose data starts 4 bytes past a 16-byte boundary (Triton specializes on
    alignment)."""
    flat = torch.randn(1 + torch.Size(shape).numel(), dtype=dtype)
    return flat[1:].view(shape)


def cases():
    image = torch.randn(2, 3, 16, 16, requires_grad=True)
    odd = misaligned((2, 3, 16, 16)).requires_grad_()
    single = torch.randn(1, 1, 17, 16, requires_grad=True)  # N = 1: an int argument is 1
    acts = torch.randn(4, 64, 9, dtype=torch.bfloat16, requires_grad=True)
    vec = torch.randn(1, 64, 1, dtype=torch.bfloat16, requires_grad=True)
    vec_pos = torch.randn(4, 64, 9, dtype=torch.bfloat16, requires_grad=True)
    feats = torch.randn(6, 33, 20, dtype=torch.bfloat16, requires_grad=True)
    up = torch.tensor(0.7)

    def tv(x):
        return lambda: torch.autograd.grad(Fn.total_variation(x), x, up)

    def dot(a, v, power):
        return lambda: torch.autograd.grad(Fn.dot_cossim(a, v, power).sum(), (a, v))

    return {
        "total_variation": tv(image),
        "total_variation misaligned": tv(odd),
        "total_variation single plane": tv(single),
        "dot_cossim shared": dot(acts, vec, 1.0),
        "dot_cossim per position": dot(acts, vec_pos, 0.0),
        "diversity": lambda: torch.autograd.grad(Fn.diversity(feats), feats, up.bfloat16()),
    }


def main():
    torch.set_num_threads(1)
    host_cost.install_fake_driver()
    results = {}
    steps = cases()
    for name, step in steps.items():
        _common._compiled.clear()
        first = record(step)  # every launch through JITFunction.run (compiling on first use)
        repeat = record(step)  # every launch through the compiled kernel
        direct = len(_common._compiled)
        first_hooked, repeat_hooked = hooked_launches(step)
        results[name] = {"launches": len(first), "same": first == repeat, "direct": direct,
                         "same with a hook": first_hooked == repeat_hooked}
    # The check can fail: with a key blind to alignment, the misaligned input after the aligned
    # one gets the aligned input's compiled kernel, which Triton would not have chosen.
    blind = _common._specializations
    _common._specializations = lambda args: tuple(map(type, args))
    try:
        _common._compiled.clear()
        record(steps["total_variation"])
        wrong = record(steps["total_variation misaligned"])
    finally:
        _common._specializations = blind
    _common._compiled.clear()
    right = record(steps["total_variation misaligned"])
    results["alignment-blind key detected"] = wrong != right
    print(json.dumps({"triton": triton.__version__, "results": results}))


if __name__ == "__main__":
    sys.exit(main())
