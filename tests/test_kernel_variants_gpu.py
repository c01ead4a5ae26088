"""Every kernel variant that tests/kernel_variants.py records (the compilations the AOT tier
checks, and that benchmarks/gpu_check.sh compiles ahead) runs on the GPU on random data and
matches the float64 reference, at the benchmark shapes; on CPU, the smallest cases run the
same checks in Triton's interpreter."""
import pytest

from fastobj.backend import interpreter_enabled
from kernel_variants import cases

CASES = cases()


def _id(case):
    return f"{case.group}:{case.label}".replace(" ", "_")


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_variant_matches_reference(case):
    case.check("cuda")


@pytest.mark.skipif(not interpreter_enabled(), reason="runs in Triton's interpreter")
@pytest.mark.parametrize("case", [c for c in CASES if "every integer 1" in c.label], ids=_id)
def test_check_path_in_the_interpreter(case):
    """The GPU check's wiring (inputs, settings, reference checks) on the all-ones cases."""
    case.check("cpu")


def test_cases_cover_every_group_and_dtype():
    groups = {c.group for c in CASES}
    assert groups == {"total_variation", "dot_cossim", "diversity"}
    for group in groups:
        labels = " ".join(c.label for c in CASES if c.group == group)
        assert all(name in labels for name in ("float32", "bfloat16", "float16")), group
    assert {c.precision for c in CASES if c.group == "diversity"} == {"highest", "high"}
