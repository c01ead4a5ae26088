"""pytest-benchmark glue for ``pytest tests/bench``: the ``bench_op`` fixture.

Each test names an op, a provider, a shape, a dtype and a mode; the fixture builds the same
runner ``fastobj bench`` uses (:class:`fastobj.benchmarks.timing.Runner` on
:mod:`fastobj.benchmarks.ops`), warms it up, groups the result per op, mode, shape and dtype
(``benchmark.group``) so the providers sit side by side, and records the backend, device,
compile time and cost model in ``extra_info``. The suite lives under ``tests/`` so that the
wheel holds none of it, and the test run leaves it out (``norecursedirs`` in pyproject.toml):
it runs only when named.
"""
import pytest
import torch

from fastobj.backend import default_device
from fastobj.benchmarks.machine import device_name
from fastobj.benchmarks.ops import (
    DTYPES,
    OPS,
    Unavailable,
    backend_label,
    build_provider,
    make_args,
    shape_str,
)
from fastobj.benchmarks.timing import Runner, sync

SLOW_CALL_S = 0.5  # calls slower than this get 2 rounds of 1 iteration instead of calibration


@pytest.fixture(scope="session")
def bench_device() -> torch.device:
    return default_device()


@pytest.fixture
def bench_op(benchmark, bench_device):
    def run(op_name: str, provider: str, dims, dtype: str = "float32", mode: str = "fwd"):
        op, dims = OPS[op_name], tuple(dims)
        try:
            fn = build_provider(op, provider)
        except Unavailable as exc:
            pytest.skip(str(exc))
        runner = Runner(fn, make_args(op, dims, dtype, bench_device, 0), op.n_diff, mode,
                        bench_device)
        backend = backend_label(op, provider, runner.args)
        if backend == "triton-interpreter":
            pytest.skip("the fastobj provider would time Triton's interpreter, not the library "
                        "(TRITON_INTERPRET is set and the backend forced to triton)")
        first_s = runner.time_call()  # warm-up: compilation, allocator growth, Triton JIT
        shape = shape_str(dims)
        benchmark.group = f"{op_name} {mode} {shape} {dtype}"
        benchmark.name = provider
        benchmark.extra_info.update({
            "op": op_name, "provider": provider, "mode": mode, "shape": shape, "dtype": dtype,
            "device": device_name(bench_device),
            "backend": backend,
        })
        cost = op.cost(dims, DTYPES[dtype], mode)
        if cost is not None:
            benchmark.extra_info.update(flops=cost.flops, bytes=cost.bytes)
        if provider == "compile":
            benchmark.extra_info["compile_s"] = first_s

        def step():
            runner.step()
            sync(bench_device)

        if provider != "compile" and first_s > SLOW_CALL_S:
            benchmark.pedantic(step, rounds=2, iterations=1)
        else:
            benchmark(step)
    return run
