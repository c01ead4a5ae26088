"""Every kernel variant that benchmarks/kernel_variants.py records (the compilations the AOT
tier checks, and that benchmarks/gpu_check.sh compiles ahead) runs on the GPU on random data
and matches the float64 reference, at the benchmark shapes; on CPU, the smallest cases run the
same checks in Triton's interpreter."""
import importlib

import pytest
import torch

from fastobj.backend import interpreter_enabled
from fastobj.benchmarks.kernel_variants import cases

CASES = cases()


def check(case, device):
    """The case's launcher calls through the kernel tests' checks, on random inputs on
    `device`, against the float64 references (tests/test_kernel_<group>.py)."""
    tests = importlib.import_module(f"test_kernel_{case.group}")
    with case.settings():
        args = case.inputs(lambda shape, dtype: torch.randn(shape, device=device).to(dtype))
        if case.group == "total_variation":
            tests.check_against_reference(*args)
        elif case.group == "dot_cossim":
            cossim_pow, angled, vec_grad = case.scalars
            tests.check_against_reference(*args, cossim_pow, angled, vec_grad)
        else:
            (feats,) = args
            tol = 5e-3 if feats.dtype == torch.float32 and case.precision != "highest" \
                else tests.TOL[feats.dtype]
            tests.check_backward(feats, tol, tests.check_forward(feats, tol))


def _id(case):
    return f"{case.group}:{case.label}".replace(" ", "_")


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_variant_matches_reference(case):
    check(case, "cuda")


@pytest.mark.skipif(not interpreter_enabled(), reason="runs in Triton's interpreter")
@pytest.mark.parametrize("case", [c for c in CASES if "every integer 1" in c.label], ids=_id)
def test_check_path_in_the_interpreter(case):
    """The GPU check's wiring (inputs, settings, reference checks) on the all-ones cases."""
    check(case, "cpu")


def test_cases_cover_every_group_and_dtype():
    groups = {c.group for c in CASES}
    assert groups == {"total_variation", "dot_cossim", "diversity"}
    for group in groups:
        labels = " ".join(c.label for c in CASES if c.group == group)
        assert all(name in labels for name in ("float32", "bfloat16", "float16")), group
    assert {c.precision for c in CASES if c.group == "diversity"} == {"highest", "high"}
