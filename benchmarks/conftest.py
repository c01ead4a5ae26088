"""pytest-benchmark glue for ``pytest benchmarks/``: the ``bench_op`` fixture.

Each test names an op, a provider, a shape, a dtype and a mode; the fixture builds the same
warmed-up runner ``fastobj bench`` uses (:func:`fastobj.benchmarks.harness.prepare`), groups
the result per op, mode, shape and dtype (``benchmark.group``) so the providers sit side by
side, and records the backend, device, compile time and cost model in ``extra_info``.
"""
import pytest
import torch

from fastobj.backend import interpreter_enabled

from . import harness

SLOW_CALL_S = 0.5  # calls slower than this get 2 rounds of 1 iteration instead of calibration


@pytest.fixture(scope="session")
def bench_device() -> torch.device:
    device = harness.best_device()
    if device.type == "cpu" and interpreter_enabled():
        pytest.skip("TRITON_INTERPRET is set: the fastobj provider would time Triton's "
                    "interpreter, not the library; unset it to benchmark")
    return device


@pytest.fixture
def bench_op(benchmark, bench_device):
    def run(op: str, provider: str, dims, dtype: str = "float32", mode: str = "fwd"):
        dims = tuple(dims)
        try:
            runner = harness.prepare(op, provider, dims, dtype, mode, bench_device)
        except harness.Unavailable as exc:
            pytest.skip(str(exc))
        cost = harness.cost_model(op, dims, harness.DTYPES[dtype], mode)
        shape = harness._shape_str(dims)
        benchmark.group = f"{op} {mode} {shape} {dtype}"
        benchmark.name = provider
        benchmark.extra_info.update({
            "op": op, "provider": provider, "mode": mode, "shape": shape, "dtype": dtype,
            "device": harness.device_name(bench_device), "backend": runner.backend,
            "flops": cost.flops, "bytes": cost.bytes,
        })
        if provider == "compile":
            benchmark.extra_info["compile_s"] = runner.compile_s

        def step():
            runner.step()
            runner.sync()

        if provider != "compile" and runner.compile_s > SLOW_CALL_S:
            benchmark.pedantic(step, rounds=2, iterations=1)
        else:
            benchmark(step)
    return run
