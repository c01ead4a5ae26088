"""Smoke tests of the benchmark harness (``fastobj bench``) and checks of the classic baselines.

No timing is asserted: these check that a run writes what it promises, that usage errors exit
with code 2 and say why, and that the classic algorithms the benchmarks compare against
compute what the library's references compute (which validates the baselines themselves).
"""
import argparse
import csv
import pathlib
import sys

import pytest
import torch

import fastobj
from fastobj import functional as Fn

try:
    from fastobj.benchmarks import baselines, harness
except ImportError:  # a source checkout without `pip install -e .`: benchmarks/ is that package
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from benchmarks import baselines, harness


def _bench(*argv):
    """harness.main on the reference path (no Triton interpreter in a smoke test's timings)."""
    with fastobj.use_backend("torch"):
        return harness.main(["--no-progress", *argv])


def _rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


# ------------------------------------------------------------------------------------------
# The harness.
# ------------------------------------------------------------------------------------------

def test_quick_run_writes_csv_plot_and_table(tmp_path, capsys):
    assert _bench("--quick", "--device", "cpu", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "preset quick" in out and "vs classic" in out

    header, rows = _rows(tmp_path / harness.CSV_NAME)
    assert tuple(header) == harness.CSV_COLUMNS
    for column in ("op", "provider", "mode", "shape", "dtype", "device_name", "median_s",
                   "peak_mem_bytes", "fastobj_version", "date", "backend", "ratio_to_classic"):
        assert column in header
    assert {r["op"] for r in rows} == set(harness.OPS)
    assert {r["provider"] for r in rows} == {"fastobj", "reference", "classic"}
    assert {r["mode"] for r in rows} == set(harness.MODES)
    for r in rows:
        assert float(r["median_s"]) > 0
        assert r["fastobj_version"] == fastobj.__version__
        assert r["device"] == "cpu" and r["dtype"] == "float32"
        assert r["backend"] == "torch"
        assert float(r["ratio_to_classic"]) > 0  # classic runs at every quick point
        if r["provider"] == "classic":
            assert float(r["ratio_to_classic"]) == pytest.approx(1.0)
        assert r["mem_method"] == "cpu_profiler_trace" and int(r["peak_mem_bytes"]) >= 0
    div = [r for r in rows if r["op"] == "diversity" and r["provider"] == "reference"]
    assert sorted({r["shape"] for r in div}) == ["4x8x4x4", "8x8x4x4"]

    png = tmp_path / harness.PLOT_NAME
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "diversity" in (tmp_path / harness.TABLE_NAME).read_text()


def test_rows_are_appended_across_runs(tmp_path):
    argv = ("--quick", "--device", "cpu", "--ops", "total_variation", "--no-memory",
            "--out", str(tmp_path))
    assert _bench(*argv) == 0
    _, first = _rows(tmp_path / harness.CSV_NAME)
    assert _bench(*argv) == 0
    _, both = _rows(tmp_path / harness.CSV_NAME)
    assert len(both) == 2 * len(first) > 0
    assert {r["mem_method"] for r in both} == {"off"}


def test_unknown_op_exits_2_and_lists_valid_ops(tmp_path, capsys):
    assert _bench("--quick", "--ops", "diversity,no_such_op", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "no_such_op" in err and "valid ops" in err
    for name in harness.OPS:
        assert name in err
    assert not (tmp_path / harness.CSV_NAME).exists()


def test_unavailable_device_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _bench("--quick", "--device", "cuda", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "cuda" in err and "not available" in err
    assert _bench("--quick", "--device", "tpu", "--out", str(tmp_path)) == 2
    assert "unknown device" in capsys.readouterr().err


def test_malformed_cuda_device_exits_2(tmp_path, capsys, monkeypatch):
    # Needs no GPU: torch.device() refuses these strings before any CUDA call.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name in ("cuda:abc", "cuda:-1"):
        assert _bench("--quick", "--device", name, "--out", str(tmp_path)) == 2
        err = capsys.readouterr().err
        assert "unknown device" in err and name in err and "Traceback" not in err
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert _bench("--quick", "--device", "cuda:3", "--out", str(tmp_path)) == 2
    assert "not available" in capsys.readouterr().err
    assert not (tmp_path / harness.CSV_NAME).exists()


@pytest.mark.parametrize("argv", [["--dtype", "float8"], ["--providers", "eager"],
                                  ["--modes", "backward"], ["--quick", "--preset", "gpu"],
                                  ["--dtype", ","]])
def test_other_usage_errors_exit_2(tmp_path, capsys, argv):
    assert _bench(*argv, "--device", "cpu", "--out", str(tmp_path)) == 2
    assert "error" in capsys.readouterr().err


def test_bad_batch_sizes_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        harness.main(["--batch-sizes", "8,zero"])
    assert info.value.code == 2
    assert "comma list of integers" in capsys.readouterr().err


def test_add_arguments_sets_run_on_a_subcommand():
    parser = argparse.ArgumentParser(prog="fastobj")
    harness.add_arguments(parser.add_subparsers(dest="command").add_parser("bench"))
    args = parser.parse_args(["bench", "--quick", "--ops", "diversity", "--batch-sizes", "2,4"])
    assert args.run is harness.run
    assert args.ops == ["diversity"] and args.batch_sizes == [2, 4]


def test_classic_loop_stops_escalating_past_the_budget(tmp_path, capsys):
    # Any call exceeds a budget of a nanosecond: B=2 is measured, B=3 and B=64 are not.
    assert _bench("--quick", "--device", "cpu", "--ops", "diversity", "--batch-sizes", "2,3,64",
                  "--providers", "classic,reference", "--budget", "1e-9", "--no-memory",
                  "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "stopped escalating after B=2" in out
    _, rows = _rows(tmp_path / harness.CSV_NAME)
    classic = {(r["mode"], r["shape"]) for r in rows if r["provider"] == "classic"}
    assert classic == {("fwd", "2x8x4x4"), ("fwd+bwd", "2x8x4x4")}
    ref = [r for r in rows if r["provider"] == "reference"]
    assert {r["shape"] for r in ref} == {"2x8x4x4", "3x8x4x4", "64x8x4x4"}
    assert all(r["ratio_to_classic"] == "" for r in ref if r["shape"] != "2x8x4x4")


def test_compile_failure_is_skipped_with_the_reason(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    assert _bench("--preset", "cpu", "--device", "cpu", "--ops", "total_variation",
                  "--batch-sizes", "2", "--no-ceilings", "--no-memory", "--measure-time",
                  "0.01", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "compile skipped for total_variation" in out and "no compiler here" in out
    _, rows = _rows(tmp_path / harness.CSV_NAME)
    assert {r["provider"] for r in rows} == {"fastobj", "reference", "classic"}


def test_plan_overrides_batch_sizes_and_places_compile_points():
    cases = harness.plan(harness.PRESETS["cpu"], ["diversity"], [16, 128, 300], ["bfloat16"])
    assert [c.dims[0] for c in cases if c.mode == "fwd"] == [16, 128, 300]
    assert {c.dtype for c in cases} == {"bfloat16"}
    assert [(c.dims[0], c.mode) for c in cases if c.compile] == [(128, "fwd+bwd")]
    only_fwd = harness.plan(harness.PRESETS["cpu"], ["diversity"], [128], modes=["fwd"])
    assert [(c.mode, c.compile) for c in only_fwd] == [("fwd", False)]
    gpu = harness.plan(harness.PRESETS["gpu"])
    div = [c for c in gpu if c.op == "diversity"]
    assert min(c.dims[0] for c in div) == 8 and max(c.dims[0] for c in div) == 1024
    assert {c.dims[1:] for c in div} == {(512, 28, 28)}
    assert {c.dtype for c in gpu} == {"float32", "bfloat16"}


def test_cost_model():
    b, c, h, w = 8, 16, 5, 7
    fwd = harness.cost_model("diversity", (b, c, h, w), torch.float32, "fwd")
    both = harness.cost_model("diversity", (b, c, h, w), torch.float32, "fwd+bwd")
    assert fwd.flops == 2 * b * c * c * h * w and fwd.bound == "compute"
    assert both.flops == harness.DIVERSITY_FWDBWD_FLOP_FACTOR * fwd.flops
    tv = harness.cost_model("total_variation", (2, 3, 32, 32), torch.bfloat16, "fwd+bwd")
    assert tv.bytes == 2 * (2 * 3 * 32 * 32) * 2 and tv.bound == "memory"
    for op in harness.OPS:
        assert harness.cost_model(op, (4, 8, 6, 6), torch.float32, "fwd").bytes > 0


# ------------------------------------------------------------------------------------------
# The classic baselines agree with the library's references.
# ------------------------------------------------------------------------------------------

def _grad(value, x, upstream):
    return torch.autograd.grad(value, x, upstream)[0]


@pytest.mark.parametrize("dims", [(2, 3, 1, 1), (5, 4, 3, 3), (7, 6, 2, 5)])
def test_classic_diversity_matches_reference(dims):
    x = torch.randn(dims, dtype=torch.float64, requires_grad=True)
    up = torch.tensor(0.7, dtype=torch.float64)
    classic = baselines.diversity(x)
    ref = Fn.diversity_ref(x.flatten(2))
    torch.testing.assert_close(classic, ref)
    torch.testing.assert_close(_grad(classic, x, up), _grad(ref, x, up))
    torch.testing.assert_close(baselines.diversity(torch.ones(2, 3, 1, 1)), torch.tensor(-1.0))


def test_classic_total_variation_matches_reference():
    x = torch.randn(3, 2, 7, 9, dtype=torch.float64, requires_grad=True)
    up = torch.tensor(-1.3, dtype=torch.float64)
    classic, ref = baselines.total_variation(x), Fn.total_variation_ref(x)
    torch.testing.assert_close(classic, ref)
    torch.testing.assert_close(_grad(classic, x, up), _grad(ref, x, up))


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("cossim_pow", [0.0, 1.0, 2.5])
def test_classic_direction_matches_reference(per_sample, cossim_pow):
    b, c, h, w = 4, 6, 3, 5
    x = torch.randn(b, c, h, w, dtype=torch.float64, requires_grad=True)
    vec = torch.randn((b, c) if per_sample else (c,), dtype=torch.float64)
    up = torch.randn(b, h, w, dtype=torch.float64)
    classic = baselines.direction(x, vec, cossim_pow)
    ref = Fn.dot_cossim_ref(x.flatten(2), vec.reshape(-1, c, 1), cossim_pow).reshape(b, h, w)
    torch.testing.assert_close(classic, ref)
    torch.testing.assert_close(_grad(classic, x, up), _grad(ref, x, up))
    key = torch.nn.Identity()
    objective = fastobj.Direction(key, vec, cossim_pow=cossim_pow)
    torch.testing.assert_close(objective({key: x}), classic)


@pytest.mark.parametrize("batch", [1, 2, 3, 6, 9])
def test_classic_alignment_matches_reference(batch):
    x = torch.randn(batch, 3, 4, 2, dtype=torch.float64, requires_grad=True)
    up = torch.tensor([0.9], dtype=torch.float64)
    classic = baselines.alignment(x, 5.0)
    ref = Fn.alignment_ref(x, 5.0)
    assert classic.shape == ref.shape == (1,)
    torch.testing.assert_close(classic, ref)
    if batch > 1:
        torch.testing.assert_close(_grad(classic, x, up), _grad(ref, x, up))
    key = torch.nn.Identity()
    torch.testing.assert_close(fastobj.Alignment(key, decay_ratio=5.0)({key: x}), classic)


@pytest.mark.parametrize("channels", [(1, 2), (None, None), (0, None)])
def test_classic_activation_interpolation_matches_objective(channels):
    a1 = torch.randn(5, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    a2 = torch.randn(5, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    one, two = torch.nn.Identity(), torch.nn.Identity()
    objective = fastobj.ActivationInterpolation(one, channels[0], two, channels[1])
    value = objective({one: a1, two: a2})
    classic = baselines.activation_interpolation(a1, a2, *channels)
    assert classic.shape == value.shape == (1,)
    torch.testing.assert_close(classic, value)
    up = torch.tensor([1.7], dtype=torch.float64)
    g_classic = torch.autograd.grad(classic, (a1, a2), up)
    g_value = torch.autograd.grad(value, (a1, a2), up)
    for a, b in zip(g_classic, g_value):
        torch.testing.assert_close(a, b)


def test_every_op_provider_agrees_on_a_small_case():
    """The harness's own provider callables compute the same thing (float64, tiny sizes)."""
    for name, op in harness.OPS.items():
        args = harness.make_args(name, (4, 5, 3, 3), "float64", torch.device("cpu"), seed=3)
        values = {}
        with fastobj.use_backend("torch"):
            for provider in ("fastobj", "reference", "classic"):
                try:
                    fn = harness.build_provider(name, provider)
                except harness.Unavailable:
                    continue
                values[provider] = fn(*args).reshape(-1)
        assert "classic" in values and "fastobj" in values, name
        for provider, value in values.items():
            torch.testing.assert_close(value, values["classic"], msg=f"{name}/{provider}")


def test_missing_matplotlib_skips_the_plot_with_a_note(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    assert _bench("--quick", "--device", "cpu", "--ops", "diversity", "--batch-sizes", "2",
                  "--no-memory", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "no plot: matplotlib" in out
    assert not (tmp_path / harness.PLOT_NAME).exists()
    assert "no plot" in (tmp_path / harness.TABLE_NAME).read_text()
    assert (tmp_path / harness.CSV_NAME).exists()
