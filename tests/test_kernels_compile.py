"""Tier 3: every Triton kernel compiles ahead of time for sm_90 and sm_80, without a GPU.

Each kernel module of ``fastobj.kernels`` lists representative compilations in a module-level
``AOT_SPECS``: tuples ``(kernel, signature, constexprs)`` or ``(kernel, signature, constexprs,
options)`` with ``options`` passed to ``triton.compile`` (``num_warps``, ``num_stages``), at the
block sizes its launchers use, in float32 and bfloat16. As in Triton's own AOT tool
(``triton/tools/compile.py``), a signature type may end in ``:16`` to mark an argument divisible
by 16 (what Triton's run-time specialization finds for aligned pointers and strides), so the
compilation sees the same vectorization as a launch does.

``triton.compile`` does not work under ``TRITON_INTERPRET=1`` (which conftest sets on machines
without CUDA), so all specs are compiled in one subprocess whose environment lacks that
variable (it forks one worker per CPU core). It writes a JSON report; for every compilation the
``ptxas`` bundled with Triton for that target (``--gpu-name`` from the PTX's ``.target``, e.g.
``sm_90a``) runs with ``-v`` on the PTX to read registers, spills and static shared memory
(Triton's own shared memory is dynamic and comes from the kernel metadata). Triton caches its
compilations and the ptxas figures are cached by PTX content, so repeated runs are fast. The
report is printed (``pytest -s`` shows it) and any register spill fails the test; so does a
listed module that does not import or has no ``AOT_SPECS`` (no skip).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MODULES = ["total_variation", "dot_cossim", "diversity"]
CAPABILITIES = (90, 80)
REPO = Path(__file__).resolve().parents[1]

_SCRIPT = textwrap.dedent(r'''
    import concurrent.futures, hashlib, importlib, json, os, re, subprocess, sys, tempfile
    import traceback
    sys.path.insert(0, sys.argv[1])
    modules, caps = json.loads(sys.argv[2]), json.loads(sys.argv[3])
    import triton
    from triton.backends.compiler import GPUTarget

    def ptxas_path(cc):
        # The ptxas Triton itself runs for this target (3.9: ptxas below sm_90, the newer
        # "ptxas-blackwell" from sm_90 on, matching the PTX version it emits).
        try:
            from triton.backends.nvidia.compiler import get_ptxas
            return get_ptxas(cc).path
        except Exception:
            from triton import knobs
            return knobs.nvidia.ptxas.path

    CACHE = os.path.join(tempfile.gettempdir(), "fastobj-ptxas-report-cache")

    def ptxas_info(ptx, cc):
        """ptxas -v figures for one PTX; cached by content (Triton's own cache skips ptxas)."""
        arch = re.search(r"^\.target\s+(sm_\w+)", ptx, re.M).group(1)
        tool = ptxas_path(cc)
        key = hashlib.sha256((tool + arch + ptx).encode()).hexdigest()
        cached = os.path.join(CACHE, key + ".json")
        if os.path.exists(cached):
            with open(cached) as fh:
                return json.load(fh)
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "k.ptx")
            with open(src, "w") as fh:
                fh.write(ptx)
            # The flags Triton passes too: line info only, --regAllocOptLevel=2.
            run = subprocess.run([tool, "-lineinfo", "-v", "--regAllocOptLevel=2", "--gpu-name",
                                  arch, src, "-o", os.path.join(tmp, "k.cubin")],
                                 capture_output=True, text=True)
        log = run.stdout + run.stderr
        if run.returncode != 0:
            raise RuntimeError(f"ptxas failed ({run.returncode}): {log}")
        num = lambda pat: int(re.search(pat, log).group(1)) if re.search(pat, log) else None
        info = {"arch": arch, "registers": num(r"Used (\d+) registers"),
                "spill_stores": num(r"(\d+) bytes spill stores"),
                "spill_loads": num(r"(\d+) bytes spill loads"),
                "stack": num(r"(\d+) bytes stack frame"),
                "static_smem": num(r"(\d+) bytes smem") or 0}
        os.makedirs(CACHE, exist_ok=True)
        with open(cached + f".{os.getpid()}", "w") as fh:
            json.dump(info, fh)
        os.replace(cached + f".{os.getpid()}", cached)
        return info

    def work(job):
        """Compile one (module, spec, capability) and read its ptxas figures."""
        name, index, cc = job
        spec = sys.modules[f"fastobj.kernels.{name}"].AOT_SPECS[index]
        fn, signature, constexprs = spec[:3]
        options = dict(spec[3]) if len(spec) > 3 else {}
        row = {"kernel": getattr(fn, "__name__", str(fn)), "cc": cc,
               "pointers": ",".join(sorted({v.split(":")[0] for v in signature.values()
                                            if v.startswith("*")})),
               "constexprs": dict(constexprs), "options": options}
        try:
            # "type:16" marks an argument divisible by 16, as in Triton's own AOT tool.
            arg_index = {a: i for i, a in enumerate(fn.arg_names)}
            attrs = {(arg_index[a],): [["tt.divisibility", 16]]
                     for a, t in signature.items() if t.endswith(":16")}
            plain = {a: t.split(":")[0] for a, t in signature.items()}
            src = triton.compiler.ASTSource(fn=fn, signature=plain, constexprs=constexprs,
                                            attrs=attrs)
            compiled = triton.compile(src, target=GPUTarget("cuda", cc, 32), options=options)
            row["shared"] = compiled.metadata.shared
            row["num_warps"] = compiled.metadata.num_warps
            row.update(ptxas_info(compiled.asm["ptx"], cc))
        except Exception:
            row["error"] = traceback.format_exc()
        return row

    report, jobs = {}, []
    for name in modules:
        try:
            module = importlib.import_module(f"fastobj.kernels.{name}")
        except ModuleNotFoundError as exc:
            report[name] = {"error": f"module fastobj.kernels.{name} not found: {exc}"}
            continue
        except Exception:
            report[name] = {"error": "import failed:\n" + traceback.format_exc()}
            continue
        specs = getattr(module, "AOT_SPECS", None)
        if not specs:
            report[name] = {"error": f"fastobj.kernels.{name} defines no (or an empty) AOT_SPECS"}
            continue
        report[name] = {"specs": []}
        jobs += [(name, i, cc) for i in range(len(specs)) for cc in caps]

    # Compilations in parallel worker processes (forked: the kernel modules are loaded once);
    # Triton's cache makes repeated runs fast, and ptxas figures are cached by PTX content.
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers > 1:
        import multiprocessing
        with concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("fork")) as pool:
            rows = list(pool.map(work, jobs))
    else:
        rows = [work(job) for job in jobs]
    for (name, _, _), row in zip(jobs, rows):
        report[name]["specs"].append(row)
    json.dump(report, sys.stdout)
''')


@pytest.fixture(scope="module")
def aot_report():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # silence Triton 3.9's default warning
    run = subprocess.run([sys.executable, "-c", _SCRIPT, str(REPO), json.dumps(MODULES),
                          json.dumps(list(CAPABILITIES))],
                         capture_output=True, text=True, env=env, cwd=str(REPO), timeout=600)
    assert run.returncode == 0, f"AOT compile subprocess failed:\n{run.stderr[-4000:]}"
    report = json.loads(run.stdout)
    lines = ["", "AOT compile report (ptxas -v on Triton's PTX)",
             f"{'module':<16} {'kernel':<28} {'ptrs':<16} {'arch':<7} {'warps':>5} {'regs':>4} "
             f"{'smem':>6} {'spill st/ld':>11}  constexprs"]
    for module, entry in report.items():
        if "error" in entry:
            lines.append(f"{module:<16} ERROR: {entry['error'].strip().splitlines()[-1]}")
            continue
        for r in entry["specs"]:
            if "error" in r:
                lines.append(f"{module:<16} {r['kernel']:<28} cc{r['cc']} ERROR: "
                             f"{r['error'].strip().splitlines()[-1]}")
                continue
            smem = r["shared"] + r["static_smem"]
            lines.append(f"{module:<16} {r['kernel']:<28} {r['pointers']:<16} {r['arch']:<7} "
                         f"{r['num_warps']:>5} {r['registers']:>4} {smem:>6} "
                         f"{r['spill_stores']:>5}/{r['spill_loads']:<5}  {r['constexprs']}")
    print("\n".join(lines))
    return report


@pytest.mark.parametrize("module", MODULES)
def test_kernels_compile_ahead_of_time(aot_report, module):
    entry = aot_report[module]
    assert "error" not in entry, entry.get("error")
    rows = entry["specs"]
    failed = [f"{r['kernel']} cc{r['cc']}:\n{r['error']}" for r in rows if "error" in r]
    assert not failed, "compilation failed:\n" + "\n".join(failed)
    assert {r["cc"] for r in rows} == set(CAPABILITIES)
    pointer_types = {p for r in rows for p in r["pointers"].split(",")}
    assert "*fp32" in pointer_types and "*bf16" in pointer_types, (
        f"{module}: AOT_SPECS should cover float32 and bfloat16, has {sorted(pointer_types)}")
    spills = [f"{r['kernel']} ({r['pointers']}, {r['arch']}, {r['constexprs']}): "
              f"{r['spill_stores']} B spill stores, {r['spill_loads']} B spill loads"
              for r in rows if (r["spill_stores"] or 0) or (r["spill_loads"] or 0)]
    assert not spills, "register spills:\n" + "\n".join(spills)
    assert all(r["registers"] is not None for r in rows), "ptxas reported no register count"
