"""Tests of ``fastobj bench`` (fastobj.benchmarks) and checks of the classic baselines.

No timing is asserted: these check that a run writes what it promises into its own folder,
that usage errors exit with code 2 and say why, that the sweep's planning, statistics and
result columns (the CUDA ones included, with stand-in timings) are computed as documented, and
that the classic algorithms the benchmarks compare against compute what the library's
references compute (which validates the baselines themselves).
"""
import argparse
import csv
import hashlib
import math
import sys

import pytest
import torch

import fastobj
from fastobj import functional as Fn
from fastobj.benchmarks import baselines, cli, machine, ops, presets, report, sweep, timing
from fastobj.cli import main
from fastobj.kernels import diversity as diversity_kernel
from fastobj.kernels import dot_cossim as dot_cossim_kernel
from fastobj.kernels import total_variation as tv_kernel

CPU = torch.device("cpu")


def _bench(*argv):
    """``fastobj bench`` on the reference path (no Triton interpreter in a smoke test)."""
    with fastobj.use_backend("torch"):
        return main(["bench", "--no-progress", *argv])


def _run_dirs(out):
    return sorted(p for p in out.iterdir() if p.is_dir())


def _rows(run_dir):
    with open(run_dir / report.CSV_NAME, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _digests(run_dir):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run_dir.iterdir()}


# ------------------------------------------------------------------------------------------
# Runs: files, folders, wording.
# ------------------------------------------------------------------------------------------

def test_quick_run_writes_csv_table_and_plot_in_its_own_folder(tmp_path, capsys):
    assert _bench("--quick", "--device", "cpu", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "preset quick" in out and "vs classic" in out and "threads:" in out

    (run_dir,) = _run_dirs(tmp_path)
    header, rows = _rows(run_dir)
    assert tuple(header) == report.CSV_COLUMNS
    assert {r["run_id"] for r in rows} == {run_dir.name}
    assert {r["op"] for r in rows} == set(ops.OPS)
    assert {r["mode"] for r in rows} == set(ops.MODES)
    for r in rows:
        assert float(r["median_s"]) > 0 and int(r["rounds"]) >= 1
        assert r["fastobj_version"] == fastobj.__version__
        assert r["device"] == "cpu" and r["dtype"] == "float32" and r["backend"] == "torch"
        assert float(r["speedup_vs_classic"]) > 0  # classic runs at every quick point
        if r["provider"] == "classic":
            assert float(r["speedup_vs_classic"]) == pytest.approx(1.0)
        assert r["mem_method"] in ("cpu_profiler_trace", "not traced (slow call)")
    # fastobj's CPU path is the reference: measured once, marked, no separate reference row.
    kernel_ops = {"diversity", "total_variation", "direction", "direction_per_sample"}
    assert not [r for r in rows if r["op"] in kernel_ops and r["provider"] == "reference"]
    assert all(r["is_reference"] == "1" for r in rows
               if r["op"] in kernel_ops and r["provider"] == "fastobj")
    assert {r["provider"] for r in rows if r["op"] == "alignment"} == {
        "fastobj", "reference", "classic"}
    steps = [r for r in rows if r["op"] == "render_step"]
    assert {r["provider"] for r in steps} == {"fastobj", "classic"}
    assert all(float(r["objective_s"]) > 0 and float(r["objective_share"]) > 0 for r in steps)

    assert (run_dir / report.PLOT_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (run_dir / report.TABLE_NAME).read_text()
    assert "finished" in table and "fastobj=ref" in table and "render_step" in table
    assert not list(run_dir.glob("*.tmp*"))


def test_quick_after_a_run_leaves_that_run_untouched(tmp_path):
    common = ("--device", "cpu", "--ops", "total_variation", "--no-memory",
              "--out", str(tmp_path))
    assert _bench("--preset", "cpu", "--batch-sizes", "1", "--no-ceilings", "--providers",
                  "fastobj,classic", "--rounds", "2", "--round-time", "0.001", *common) == 0
    (full,) = _run_dirs(tmp_path)
    before = _digests(full)
    assert _bench("--quick", *common) == 0
    dirs = _run_dirs(tmp_path)
    assert len(dirs) == 2 and _digests(full) == before
    (quick,) = [d for d in dirs if d != full]
    assert {r["preset"] for r in _rows(quick)[1]} == {"quick"}


def test_run_id_names_the_folder_and_dtype_aliases_are_canonical(tmp_path):
    argv = ("--quick", "--device", "cpu", "--ops", "total_variation", "--dtype", "bf16",
            "--no-memory", "--run-id", "mine", "--out", str(tmp_path))
    assert _bench(*argv) == 0 and _bench(*argv) == 0
    assert [d.name for d in _run_dirs(tmp_path)] == ["mine", "mine-2"]
    _, rows = _rows(tmp_path / "mine")
    assert {r["dtype"] for r in rows} == {"bfloat16"} and {r["run_id"] for r in rows} == {"mine"}


def test_unknown_op_exits_2_and_lists_valid_ops(tmp_path, capsys):
    assert _bench("--quick", "--ops", "diversity,no_such_op", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "no_such_op" in err and "valid ops" in err
    for name in ops.OPS:
        assert name in err
    assert not tmp_path.exists() or not _run_dirs(tmp_path)


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
    assert not tmp_path.exists() or not _run_dirs(tmp_path)


@pytest.mark.parametrize("argv", [["--dtype", "float8"], ["--providers", "eager"],
                                  ["--modes", "backward"], ["--quick", "--preset", "gpu"],
                                  ["--dtype", ","], ["--rounds", "0"], ["--run-id", "a/b"]])
def test_other_usage_errors_exit_2(tmp_path, capsys, argv):
    assert _bench(*argv, "--device", "cpu", "--out", str(tmp_path)) == 2
    assert "error" in capsys.readouterr().err


def test_bad_batch_sizes_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--batch-sizes", "8,zero"])
    assert info.value.code == 2
    assert "comma list of integers" in capsys.readouterr().err


def test_add_arguments_sets_run_on_a_subcommand():
    parser = argparse.ArgumentParser(prog="fastobj")
    cli.add_arguments(parser.add_subparsers(dest="command").add_parser("bench"))
    args = parser.parse_args(["bench", "--quick", "--ops", "diversity", "--batch-sizes", "2,4"])
    assert args.run is cli.run
    assert args.ops == ["diversity"] and args.batch_sizes == [2, 4]


def test_gpu_check_flags_parse():
    """The flags benchmarks/gpu_check.sh passes."""
    parser = cli.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--preset", "gpu", "--device", "cuda", "--out", "d",
                              "--max-minutes", "4", "--no-progress"])
    assert (args.preset, args.device, args.out, args.max_minutes) == ("gpu", "cuda", "d", 4.0)


def test_classic_loop_stops_escalating_past_the_budget(tmp_path, capsys):
    # Any call exceeds a budget of a nanosecond: B=2 is measured once, B=3 and B=64 are not.
    assert _bench("--quick", "--device", "cpu", "--ops", "diversity", "--batch-sizes", "2,3,64",
                  "--providers", "classic,reference", "--budget", "1e-9", "--no-memory",
                  "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "stopped escalating after B=2" in out
    _, rows = _rows(_run_dirs(tmp_path)[0])
    classic = [r for r in rows if r["provider"] == "classic"]
    assert {(r["mode"], r["shape"]) for r in classic} == {("fwd", "2x8x4x4"),
                                                          ("fwd+bwd", "2x8x4x4")}
    assert all(r["rounds"] == "1" and r["rough"] == "1" for r in classic)
    ref = [r for r in rows if r["provider"] == "reference"]
    assert {r["shape"] for r in ref} == {"2x8x4x4", "3x8x4x4", "64x8x4x4"}
    assert all(r["speedup_vs_classic"] == "" for r in ref if r["shape"] != "2x8x4x4")


def test_compile_failure_is_skipped_with_the_reason(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    assert _bench("--preset", "cpu", "--device", "cpu", "--ops", "total_variation",
                  "--batch-sizes", "2", "--no-ceilings", "--no-memory", "--rounds", "1",
                  "--round-time", "0.001", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "compile skipped for total_variation" in out and "no compiler here" in out
    _, rows = _rows(_run_dirs(tmp_path)[0])
    assert {r["provider"] for r in rows} == {"fastobj", "classic"}


def test_missing_matplotlib_skips_the_plot_with_a_note(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    assert _bench("--quick", "--device", "cpu", "--ops", "diversity", "--batch-sizes", "2",
                  "--no-memory", "--out", str(tmp_path)) == 0
    assert "no plot: matplotlib" in capsys.readouterr().out
    (run_dir,) = _run_dirs(tmp_path)
    assert not (run_dir / report.PLOT_NAME).exists()
    assert "no plot" in (run_dir / report.TABLE_NAME).read_text()
    assert (run_dir / report.CSV_NAME).exists()


def test_an_interrupted_run_leaves_a_readable_result(tmp_path, monkeypatch):
    calls = []
    real = sweep.Sweeper._sample_round

    def interrupt_on_the_third_point(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(sweep.Sweeper, "_sample_round", interrupt_on_the_third_point)
    with pytest.raises(KeyboardInterrupt):
        _bench("--quick", "--device", "cpu", "--ops", "diversity,total_variation",
               "--no-memory", "--out", str(tmp_path))
    (run_dir,) = _run_dirs(tmp_path)
    _, rows = _rows(run_dir)
    assert len({(r["op"], r["mode"], r["shape"]) for r in rows}) == 2
    assert "interrupted" in (run_dir / report.TABLE_NAME).read_text()


# ------------------------------------------------------------------------------------------
# Planning, statistics, threads, result columns.
# ------------------------------------------------------------------------------------------

def test_plan_overrides_batch_sizes_and_places_compile_points():
    cpu = presets.PRESETS["cpu"]
    cases = presets.plan(cpu, ["diversity"], [16, 128, 300], ["bfloat16"])
    assert [c.dims[0] for c in cases if c.mode == "fwd"] == [16, 128, 300]
    assert {c.dtype for c in cases} == {"bfloat16"}
    assert [(c.dims[0], c.mode) for c in cases if c.compile] == [(128, "fwd+bwd")]
    only_fwd = presets.plan(cpu, ["diversity"], [128], modes=["fwd"])
    assert [(c.mode, c.compile) for c in only_fwd] == [("fwd", False)]
    render = presets.plan(cpu, ["render_step"])
    assert [(c.dims, c.mode) for c in render] == [((b, 3, 64, 64), "fwd+bwd")
                                                  for b in (32, 128, 512)]
    gpu = presets.plan(presets.PRESETS["gpu"])
    div = [c for c in gpu if c.op == "diversity"]
    assert min(c.dims[0] for c in div) == 8 and max(c.dims[0] for c in div) == 1024
    assert {c.dims[1:] for c in div} == {(512, 28, 28)}
    assert {c.dtype for c in gpu} == {"float32", "bfloat16"}
    assert {c.op for c in gpu} == set(ops.OPS)


def test_round_one_visits_every_chain_before_larger_batches():
    cases = presets.plan(presets.PRESETS["cpu"], ["diversity", "alignment"])
    order = [cases[i] for i in sweep.round_one_order(cases)]
    chains = {(c.op, c.mode) for c in cases}
    assert {(c.op, c.mode) for c in order[:len(chains)]} == chains
    assert all(c.dims[0] == min(d.dims[0] for d in cases if (d.op, d.mode) == (c.op, c.mode))
               for c in order[:len(chains)])
    for chain in chains:  # B increases within a chain (the classic escalation needs it)
        batches = [c.dims[0] for c in order if (c.op, c.mode) == chain]
        assert batches == sorted(batches)


def test_time_limit_shrinks_rounds_evenly(monkeypatch):
    cases = presets.plan(presets.PRESETS["quick"], ["diversity", "total_variation"])
    settings = sweep.Settings(CPU, ("fastobj", "classic"), budget_s=1.0, rounds=4,
                              round_s=0.001, memory=False)
    sweeper = sweep.Sweeper(settings)
    left = iter([math.inf] * len(cases) + [0.0] * 10)
    monkeypatch.setattr(sweeper, "_time_left", lambda: next(left))
    with fastobj.use_backend("torch"):
        sweeper.run(cases, lambda round_done: None)
    rows = sweeper.rows({})
    assert len({(r["op"], r["mode"], r["shape"]) for r in rows}) == len(cases)
    assert {r["rounds"] for r in rows} == {1}
    assert any("1 of 4 rounds fit" in n for n in sweeper.notes)


def test_summarize_median_spread_and_rough():
    stats = timing.summarize([3.0, 1.0, 2.0, 2.0, 10.0])
    assert stats.median_s == 2.0 and stats.min_s == 1.0 and stats.rounds == 5
    assert stats.spread == pytest.approx((3.0 - 2.0) / 2.0) and stats.rough
    steady = timing.summarize([1.0, 1.02, 0.99, 1.01])
    assert steady.spread < timing.WIDE_SPREAD and not steady.rough
    single = timing.summarize([0.5])
    assert single.spread is None and single.rough


def test_a_round_keeps_its_fastest_sample(monkeypatch):
    times = iter([0.3, 0.1, 0.2])
    monkeypatch.setattr(timing, "time_calls", lambda fn, device, calls=1: next(times))
    clock = iter([0.0, 0.01, 0.02, 0.03, 1.0])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    assert timing.take_round(lambda: None, CPU, round_s=0.025, call_s=0.01) == 0.1
    assert timing.calls_per_sample(1e-6, CPU) == 50
    assert timing.calls_per_sample(1e-3, CPU) == 1
    assert timing.calls_per_sample(1e-4, torch.device("cuda")) == 10


def test_one_thread_cpu_runs_are_timed_in_process_cpu_time(monkeypatch):
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert timing.uses_cpu_clock(CPU)
        ticks = iter([10.0, 10.5])
        monkeypatch.setattr(timing.time, "process_time", lambda: next(ticks))
        assert timing.time_calls(lambda: None, CPU, calls=5) == pytest.approx(0.1)
    finally:
        torch.set_num_threads(previous)
    assert not timing.uses_cpu_clock(torch.device("cuda"))


def test_round_estimates_in_cpu_time_are_scaled_to_wall_time(monkeypatch):
    clocks = {"wall": 100.0, "cpu": 10.0}
    monkeypatch.setattr(sweep.time, "monotonic", lambda: clocks["wall"])
    monkeypatch.setattr(sweep.time, "process_time", lambda: clocks["cpu"])
    monkeypatch.setattr(sweep, "uses_cpu_clock", lambda device: device.type == "cpu")
    share = sweep._CpuShare(CPU)
    clocks["wall"], clocks["cpu"] = 104.0, 11.0  # a quarter of a CPU since the start
    assert share.wall_s(2.0) == pytest.approx(8.0)
    assert sweep._CpuShare(torch.device("cuda")).wall_s(2.0) == 2.0  # already wall time


@pytest.mark.parametrize("allowed, load, expected", [
    (2, 0.1, 2), (2, 1.0, 1), (2, 4.5, 1), (16, 3.2, 12), (8, None, 8)])
def test_threads_follow_the_free_cpus(allowed, load, expected):
    threads, why = machine.choose_threads(allowed, load)
    assert threads == expected and why
    if load is not None and load >= machine.IDLE_LOAD:
        assert "busy" in why


@pytest.mark.parametrize("graph_fails, profiler_fails, method", [
    (False, False, "cuda_graph"), (True, False, "profiler"), (True, True, None)])
def test_kernel_time_falls_back_from_graph_to_profiler(monkeypatch, graph_fails,
                                                       profiler_fails, method):
    def timer(fails, seconds):
        def measure(step, device):
            if fails:
                raise RuntimeError("cannot")
            return seconds
        return measure

    monkeypatch.setattr(timing, "graph_replay_time", timer(graph_fails, 1e-3))
    monkeypatch.setattr(timing, "profiler_kernel_time", timer(profiler_fails, 2e-3))
    seconds, how = timing.kernel_time(lambda: None, CPU)
    if method is None:
        assert seconds is None and "profiler failed" in how
    else:
        assert how.startswith(method)
        assert seconds == (1e-3 if method == "cuda_graph" else 2e-3)
        assert ("graph capture failed" in how) == graph_fails


def _one_point(sweeper, case, provider, rounds, kernel=(None, "")):
    op = ops.OPS[case.op]
    args = ops.make_args(op, case.dims, case.dtype, CPU, 0)
    runner = timing.Runner(ops.build_provider(op, provider), args, op.n_diff, case.mode, CPU)
    measured = sweep.Measured(runner, first_s=rounds[0], call_s=rounds[0], max_rounds=5,
                              rounds=list(rounds), kernel=kernel)
    point = sweep.Point(len(sweeper.points), case, {provider: measured})
    sweeper.points.append(point)


def test_result_columns_with_kernel_time_and_objective_share():
    settings = sweep.Settings(CPU, ops.PROVIDERS, 1.0, 3, 0.01, False)
    sweeper = sweep.Sweeper(settings)
    sweeper.ceilings.copy_gbs = 100.0
    tv = presets.Case("total_variation", (2, 3, 8, 10), "float32", "fwd+bwd", False)
    _one_point(sweeper, tv, "reference", [4e-3, 5e-3, 6e-3], kernel=(1e-3, "cuda_graph"))
    (row,) = sweeper.rows({"run_id": "r"})
    assert row["run_id"] == "r" and row["median_s"] == 5e-3 and row["rounds"] == 3
    assert row["kernel_s"] == 1e-3 and row["host_overhead_s"] == pytest.approx(4e-3)
    assert row["bytes"] == 3 * 2 * 3 * 8 * 10 * 4  # TV fwd+bwd: read, re-read, write
    assert row["gbs"] == pytest.approx(row["bytes"] / 1e-3 / 1e9)  # the kernels' own rate
    assert row["pct_of_ceiling"] == pytest.approx(row["gbs"])
    table = report.format_table([row])
    assert "kernel" in table and "host" in table and "objective" not in table

    sweeper.points.clear()
    step = presets.Case("render_step", (2, 3, 8, 8), "float32", "fwd+bwd", False)
    _one_point(sweeper, step, "fastobj", [0.2, 0.2, 0.2])
    part = sweeper.points[0].measured["fastobj"]
    part.objective = sweep.Measured(part.runner, 0.05, 0.05, 5, rounds=[0.05, 0.05, 0.05])
    (row,) = sweeper.rows({})
    assert row["objective_s"] == 0.05 and row["objective_share"] == pytest.approx(0.25)
    assert row["is_reference"] == 1 and report.provider_label(row) == "fastobj=ref"
    assert row["rough"] == 0 and "kernel" not in report.format_table([row])
    part.objective.rounds = [0.05]  # one round of the objective makes the share rough
    assert sweeper.rows({})[0]["rough"] == 1


def test_cost_models_come_from_the_kernels():
    b, c, h, w = 8, 16, 5, 7
    n = b * c * h * w
    fwd = ops.OPS["diversity"].cost((b, c, h, w), torch.float32, "fwd")
    both = ops.OPS["diversity"].cost((b, c, h, w), torch.float32, "fwd+bwd")
    assert fwd == ops.Cost(*diversity_kernel.cost((b, c, h, w), torch.float32, "fwd"),
                           "compute")
    assert fwd.flops == 2 * b * c * c * h * w and both.flops == 2 * fwd.flops
    assert (fwd.bytes, both.bytes) == (4 * n, 3 * 4 * n)
    tv = ops.OPS["total_variation"].cost((2, 3, 32, 32), torch.bfloat16, "fwd+bwd")
    assert tv.bytes == 3 * (2 * 3 * 32 * 32) * 2 and tv.bound == "memory"
    shared = ops.OPS["direction"].cost((b, c, h, w), torch.float32, "fwd")
    assert shared.bytes == (n + c + b * h * w) * 4
    per_sample = ops.OPS["direction_per_sample"].cost((b, c, h, w), torch.float32, "fwd+bwd")
    assert per_sample.bytes == dot_cossim_kernel.cost((b, c, h * w), (b, c, 1), torch.float32,
                                                      "fwd+bwd")[0]
    for name, op in ops.OPS.items():
        dims = (4, 17, 6) if name.startswith("vit_") else (4, 3, 6, 6)  # tokens: (B, T, C)
        cost = op.cost(dims, torch.float32, "fwd")
        assert (cost is None) == (name == "render_step") and (cost is None or cost.bytes > 0)
    for kernel_cost in (diversity_kernel.cost, tv_kernel.cost):
        with pytest.raises(ValueError, match="mode"):
            kernel_cost((2, 3, 4, 4), torch.float32, "bwd")
    with pytest.raises(ValueError, match="mode"):
        dot_cossim_kernel.cost((2, 3, 4), (1, 3, 1), torch.float32, "bwd")


def test_dtype_names_are_canonical():
    assert ops.canonical_dtype("bf16") == "bfloat16" and ops.canonical_dtype("half") == "float16"
    assert ops.canonical_dtype("float32") == "float32"
    with pytest.raises(KeyError):
        ops.canonical_dtype("float8")


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
    """The benchmarks' own provider callables compute the same thing (float64, tiny sizes)."""
    cases = [(op, (4, 1 + 5 * 5, 6) if op.name.startswith("vit_") else (4, 5, 3, 3))
             for op in ops.OPS.values() if op.name != "render_step"]
    step = ops.OPS["render_step"]
    cases += [(step, (3, 3, 12, 10)), (step.objective_part, (3, 3, 12, 10))]
    for op, dims in cases:
        args = ops.make_args(op, dims, "float64", CPU, seed=3)
        values = {}
        with fastobj.use_backend("torch"):
            for provider in ("fastobj", "reference", "classic"):
                if ops.has_provider(op, provider):
                    values[provider] = ops.build_provider(op, provider)(*args).reshape(-1)
        assert "classic" in values and "fastobj" in values, op.name
        for provider, value in values.items():
            torch.testing.assert_close(value, values["classic"], msg=f"{op.name}/{provider}")
