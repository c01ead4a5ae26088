"""Host cost per call of fastobj's kernel paths, measured on this CPU, launching nothing.

``python -m fastobj.benchmarks.host_cost [--calls N] [--via-op]``

Each op's public call (``fastobj.functional``) runs forward and backward on meta tensors, so
every torch op on its path is dispatched but computes nothing, with Triton's active driver
swapped for one that launches nothing: Triton's own Python (``JITFunction.run``, its binder and
cache lookup, the compiled kernel's launcher call) runs as it would on a GPU. Kernels are
compiled for sm_90 on the first call (warm-up, not timed). The time per call is the least
loaded tenth (10th percentile) of many calls, and is reported in units of one eager
``torch.add`` of two small CPU tensors measured the same way in the same process, so that the
machine's speed and load cancel out.

Left out: the driver's own launch call (``cuLaunchKernel``, a few microseconds per launch on
a GPU host; the launch count is printed so it can be added), and any wait on the GPU.
Overstated: a torch op on meta tensors runs torch's Python reference decomposition
(``torch._refs``), many times slower than the same op's dispatch on CUDA tensors; the time of
one meta ``torch.add`` is printed beside the CPU one, so the torch ops of a path can be told
from its Triton and Python time.

``--via-op`` calls the ``torch.library`` custom ops (what a ``torch.compile`` graph holds, and
what eager calls went through before the eager shortcut) instead of the public functions.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

TARGETS = {"diversity": 60, "total_variation": 30, "dot_cossim": 30}  # adds per fwd+bwd


class _FakeUtils:
    def load_binary(self, name, kernel, shared, device):
        return 1, 1, 0, 0, 1024  # module, function, registers, spills, max threads

    def get_device_properties(self, device):
        return {"max_shared_mem": 232448, "multiprocessor_count": 132, "max_num_regs": 65536,
                "warpSize": 32, "sm_clock_rate": 1980000, "mem_clock_rate": 2619000,
                "mem_bus_width": 5120}


class _FakeLauncher:
    """Stands in for the compiled launcher (a C function on a GPU): counts the launches."""
    launches = 0

    def __init__(self, src, metadata):
        pass

    def __call__(self, *args):
        _FakeLauncher.launches += 1


class FakeDriver:
    """Triton's active driver for an sm_90 device that launches nothing."""

    def __init__(self):
        self.utils = _FakeUtils()
        self.launcher_cls = _FakeLauncher

    def is_active(self):
        return True

    def get_current_device(self):
        return 0

    def set_current_device(self, device):
        pass

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget
        return GPUTarget("cuda", 90, 32)

    def get_active_torch_device(self):
        import torch
        return torch.device("meta")


def _percentile10(samples: List[float]) -> float:
    return statistics.quantiles(samples, n=10)[0]


def _time(fn: Callable[[], object], calls: int) -> float:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return _percentile10(samples)


def _steps(via_op: bool) -> Dict[str, Callable[[], object]]:
    """op -> one fwd+bwd call on meta tensors at the headline shapes (bf16 Diversity and
    Direction, float32 TV), with an upstream gradient other than 1."""
    import torch

    from fastobj import functional as Fn
    meta = dict(device="meta")
    feats = torch.empty(1024, 512, 784, dtype=torch.bfloat16, **meta).requires_grad_()
    image = torch.empty(64, 3, 512, 512, **meta).requires_grad_()
    acts = torch.empty(256, 1024, 196, dtype=torch.bfloat16, **meta).requires_grad_()
    vec = torch.empty(1, 1024, 1, dtype=torch.bfloat16, **meta)
    upstream = torch.empty((), **meta)
    if via_op:
        def diversity():
            sums, sq = Fn._diversity_sums_op(feats)[:2]
            return Fn.diversity_value(sums, sq, feats.shape[0])
        tv = Fn._total_variation_op

        def dot(a, v):
            return Fn._dot_cossim_op(a, v, 1.0, Fn.COSSIM_EPS, False)
    else:
        diversity, tv = (lambda: Fn.diversity(feats)), Fn.total_variation

        def dot(a, v):
            return Fn.dot_cossim(a, v, 1.0)
    dot_upstream = torch.empty(256, 196, dtype=torch.bfloat16, **meta)
    return {
        "diversity": lambda: torch.autograd.grad(diversity(), feats, upstream.to(feats.dtype)),
        "total_variation": lambda: torch.autograd.grad(tv(image), image, upstream),
        "dot_cossim": lambda: torch.autograd.grad(dot(acts, vec), acts, dot_upstream),
    }


def _route_ops_to_kernels():
    """Custom ops on meta tensors run their fake implementation; route them to the real one
    (the launchers) for this process."""
    import torch

    from fastobj import functional as Fn
    lib = torch.library.Library("fastobj", "IMPL")
    for op in (Fn._diversity_sums_op, Fn._diversity_sums_backward_op, Fn._total_variation_op,
               Fn._total_variation_backward_op, Fn._dot_cossim_op, Fn._dot_cossim_backward_op):
        lib.impl(op._name, op._init_fn, "Meta", allow_override=True)
    return lib


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per op")
    parser.add_argument("--via-op", action="store_true",
                        help="call the torch.library custom ops instead of the public functions")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise SystemExit("host_cost: unset TRITON_INTERPRET (the kernels must be compiled, "
                         "not interpreted)")
    os.environ["FASTOBJ_SM_COUNT"] = "132"  # grids of an H100/H200 on meta tensors
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    import torch
    import triton
    from triton.runtime.driver import driver

    from fastobj import backend
    torch.set_num_threads(1)
    driver.set_active(FakeDriver())
    backend._triton_obstacle = lambda tensors, forced: None  # meta tensors take the kernels
    lib = _route_ops_to_kernels() if args.via_op else None
    a, b = torch.randn(16), torch.randn(16)
    add = _time(lambda: torch.add(a, b), args.calls * 5)
    ma, mb = a.to("meta"), b.to("meta")
    meta_add = _time(lambda: torch.add(ma, mb), args.calls)
    print(f"torch {torch.__version__}, triton {triton.__version__}, "
          f"{'custom ops' if args.via_op else 'public functions'}, load average "
          f"{os.getloadavg()[0]:.2f}; one eager torch.add: {add * 1e6:.2f} us on CPU tensors "
          f"(the unit), {meta_add * 1e6:.1f} us on meta tensors")
    print(f"{'op (fwd+bwd)':<18} {'launches':>8} {'host us':>9} {'adds':>7} {'target':>7}")
    status = 0
    for name, step in _steps(args.via_op).items():
        for _ in range(3):  # compiles for sm_90 on the first call
            step()
        before = _FakeLauncher.launches
        step()
        launches = _FakeLauncher.launches - before
        seconds = _time(step, args.calls)
        adds = seconds / add
        target = TARGETS[name]
        status |= adds > target
        print(f"{name:<18} {launches:>8} {seconds * 1e6:>9.1f} {adds:>7.1f} {target:>7}",
              flush=True)
    del lib
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
