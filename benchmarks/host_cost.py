"""Host cost per call of fastobj's kernel paths, measured on this CPU, launching nothing.

``python -m fastobj.benchmarks.host_cost [--calls N] [--via-op] [--meta]``

Each op's public call (``fastobj.functional``) runs forward and backward with Triton's active
driver swapped for one that launches nothing: Triton's own Python and fastobj's launchers run as
they would on a GPU, and the compiled kernel's launcher is a Python function that counts the
launch. Kernels are compiled for sm_90 on the first calls (warm-up, not timed). The time per
call is the least loaded tenth (10th percentile) of many calls, reported in units of one eager
``torch.add`` of two small CPU tensors measured the same way in the same process, so that the
machine's speed and load cancel out.

The tensors are small CPU tensors whose launch plans have the same kernels and the same
launch count as the headline shapes (bf16 Diversity 1024x512x28x28, float32 TV 64x3x512x512,
bf16 Direction 256x1024x14x14; the count at the headline shape is printed beside it): the
torch ops on the path (allocations, views, Diversity's value and its autograd) then cost
their dispatch and almost no arithmetic, as they do on a GPU host, where the arithmetic is
the device's. ``--meta`` runs the headline shapes on meta tensors instead, where every torch
op runs torch's Python reference decomposition (one meta ``torch.add``: ~50 CPU adds): an
upper bound that overweights torch ops.

Left out: the driver's own launch call (``cuLaunchKernel``, a few microseconds per launch on
a GPU host; the launch count is printed so it can be added), a CUDA allocation's cost beyond
a CPU one's, and any wait on the GPU.

``--via-op`` calls the ``torch.library`` custom ops (what a ``torch.compile`` graph holds)
instead of the public functions.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

TARGETS = {"diversity": 60, "total_variation": 30, "dot_cossim": 30}  # adds per fwd+bwd
# op -> (small shape, headline shape) of its input
SHAPES = {"diversity": ((16, 64, 49), (1024, 512, 784)),
          "total_variation": ((2, 3, 16, 16), (64, 3, 512, 512)),
          "dot_cossim": ((4, 64, 9), (256, 1024, 196))}


class _FakeUtils:
    def load_binary(self, name, kernel, shared, device):
        return 1, 1, 0, 0, 1024  # module, function, registers, spills, max threads

    def get_device_properties(self, device):
        return {"max_shared_mem": 232448, "multiprocessor_count": 132, "max_num_regs": 65536,
                "warpSize": 32, "sm_clock_rate": 1980000, "mem_clock_rate": 2619000,
                "mem_bus_width": 5120}


class _FakeLauncher:
    """Stands in for the compiled launcher (a C function on a GPU): counts the launches, and
    appends (itself, its arguments) to ``record`` when that is a list (tests)."""
    launches = 0
    record: Optional[list] = None

    def __init__(self, src, metadata):
        pass

    def __call__(self, *args):
        _FakeLauncher.launches += 1
        if _FakeLauncher.record is not None:
            _FakeLauncher.record.append((self, args))


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


def _steps(via_op: bool, meta: bool) -> Dict[str, Callable[[], object]]:
    """op -> one fwd+bwd call with an upstream gradient other than 1: on small CPU tensors, or
    on meta tensors of the headline shapes (see SHAPES)."""
    import torch

    from fastobj import functional as Fn

    def make(op, dtype=torch.float32, grad=True):
        shape = SHAPES[op][1 if meta else 0]
        if meta:
            t = torch.empty(shape, dtype=dtype, device="meta")
        else:
            t = torch.randn(shape, dtype=dtype)
        return t.requires_grad_(grad)

    feats = make("diversity", torch.bfloat16)
    image = make("total_variation")
    acts = make("dot_cossim", torch.bfloat16)
    vec = torch.ones(1, acts.shape[1], 1, dtype=torch.bfloat16, device=acts.device)
    upstream = torch.full((), 0.7, device=acts.device)
    dot_upstream = torch.full((acts.shape[0], acts.shape[2]), 0.7, dtype=torch.bfloat16,
                              device=acts.device)
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
    div_upstream = upstream.to(feats.dtype)
    return {
        "diversity": lambda: torch.autograd.grad(diversity(), feats, div_upstream),
        "total_variation": lambda: torch.autograd.grad(tv(image), image, upstream),
        "dot_cossim": lambda: torch.autograd.grad(dot(acts, vec), acts, dot_upstream),
    }


def install_fake_driver() -> None:
    """Make Triton compile for sm_90 and launch nothing, and let CPU and meta tensors take the
    kernel paths (this process only)."""
    from triton.runtime.driver import driver

    from fastobj import backend
    driver.set_active(FakeDriver())
    backend._triton_obstacle = lambda tensors, forced: None


def _launch_counts(steps: Dict[str, Callable[[], object]]) -> Dict[str, int]:
    counts = {}
    for name, step in steps.items():
        for _ in range(3):  # compiles for sm_90 on the first call
            step()
        before = _FakeLauncher.launches
        step()
        counts[name] = _FakeLauncher.launches - before
    return counts


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
    parser.add_argument("--meta", action="store_true",
                        help="headline shapes on meta tensors (overweights torch ops)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise SystemExit("host_cost: unset TRITON_INTERPRET (the kernels must be compiled, "
                         "not interpreted)")
    os.environ["FASTOBJ_SM_COUNT"] = "132"  # grids of an H100/H200 on CPU and meta tensors
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    import torch
    import triton
    torch.set_num_threads(1)
    install_fake_driver()
    lib = _route_ops_to_kernels() if args.via_op or args.meta else None
    a, b = torch.randn(16), torch.randn(16)

    def eager_add() -> float:
        return _time(lambda: torch.add(a, b), args.calls * 5)

    # The unit is measured before the ops and after them, and the smaller taken: on a shared
    # VM one measurement now and then comes out 1.5x slow while the ops do not.
    add = eager_add()
    ma, mb = a.to("meta"), b.to("meta")
    meta_add = _time(lambda: torch.add(ma, mb), args.calls)
    steps = _steps(args.via_op, args.meta)
    counts = _launch_counts(steps)
    headline = counts if args.meta else _launch_counts(_steps(args.via_op, True))
    timed = {name: _time(step, args.calls) for name, step in steps.items()}
    floor = _time(_empty_function_step(), args.calls)
    add = min(add, eager_add())
    print(f"torch {torch.__version__}, triton {triton.__version__}, "
          f"{'custom ops' if args.via_op else 'public functions'} on "
          f"{'meta tensors, headline shapes' if args.meta else 'small CPU tensors'}, load "
          f"average {os.getloadavg()[0]:.2f}; one eager torch.add: {add * 1e6:.2f} us on CPU "
          f"tensors (the unit), {meta_add * 1e6:.1f} us on meta tensors")
    print(f"{'op (fwd+bwd)':<18} {'shape':<18} {'launches':>8} {'headline':>8} {'host us':>9} "
          f"{'adds':>7} {'target':>7}")
    status = 0
    for name, seconds in timed.items():
        adds = seconds / add
        target = TARGETS[name]
        status |= adds > target
        shape = "x".join(map(str, SHAPES[name][1 if args.meta else 0]))
        print(f"{name:<18} {shape:<18} {counts[name]:>8} {headline[name]:>8} "
              f"{seconds * 1e6:>9.1f} {adds:>7.1f} {target:>7}", flush=True)
    print(f"{'(floor)':<18} {'autograd.Function, no work':<37} {floor * 1e6:>9.1f} "
          f"{floor / add:>7.1f}", flush=True)
    del lib
    return int(status)


def _empty_function_step() -> Callable[[], object]:
    """fwd+bwd of a Python autograd.Function that saves its input and returns empty outputs:
    what any Python-defined differentiable op costs before it does anything."""
    import torch

    class Empty(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.new_empty(())

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return torch.empty_like(x)

    x = torch.randn(SHAPES["total_variation"][0], requires_grad=True)
    upstream = torch.full((), 0.7)
    return lambda: torch.autograd.grad(Empty.apply(x), x, upstream)


if __name__ == "__main__":
    sys.exit(main())
