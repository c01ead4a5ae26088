"""The device's own ceilings, measured: copy bandwidth and matmul rate per dtype.

Each op's achieved rate (from its cost model) is reported as a share of these: GB/s against
the copy for memory-bound ops, TFLOP/s against the matmul for compute-bound ones. A ceiling is
the best the device did: the fastest of a few rounds.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Dict, List, Optional, Sequence

import torch

from .ops import DTYPES, shape_str
from .timing import measure

ROUNDS = 3


@dataclasses.dataclass
class Ceilings:
    copy_gbs: Optional[float] = None
    matmul_tflops: Dict[str, float] = dataclasses.field(default_factory=dict)
    rows: List[dict] = dataclasses.field(default_factory=list)


def _row(op: str, dims: Sequence[int], dtype: str, seconds: float, note: str, **rates) -> dict:
    return {"op": op, "provider": "torch", "mode": "fwd", "shape": shape_str(dims),
            "dtype": dtype, "median_s": seconds, "note": note, **rates}


def measure_ceilings(device: torch.device, dtypes: Sequence[str]) -> Ceilings:
    """Copy bandwidth (a large tensor copy, read + write) and matmul rate per dtype.

    The matmul runs at each dtype under the current ``torch.get_float32_matmul_precision()``,
    as the float32 kernels do. No float16 matmul on CPU (no useful CPU kernel).
    """
    cuda = device.type == "cuda"
    round_s = 0.05 if cuda else 0.1
    out = Ceilings()
    numel = (256 if cuda else 32) * 2 ** 20  # 1 GiB on CUDA, 128 MiB on CPU (float32)
    src = torch.empty(numel, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    seconds = measure(functools.partial(dst.copy_, src), device, ROUNDS, round_s).min_s
    out.copy_gbs = 2 * src.numel() * src.element_size() / seconds / 1e9
    out.rows.append(_row("ceiling_copy", (numel,), "float32", seconds,
                         "dst.copy_(src); bytes = read + write", gbs=out.copy_gbs))
    del src, dst
    n = 8192 if cuda else 1024
    for name in dict.fromkeys(dtypes):
        dtype = DTYPES[name]
        if not cuda and dtype == torch.float16:
            continue
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        seconds = measure(functools.partial(torch.matmul, a, b), device, ROUNDS, round_s).min_s
        out.matmul_tflops[name] = 2 * n ** 3 / seconds / 1e12
        out.rows.append(_row(
            "ceiling_matmul", (n, n, n), name, seconds,
            f"torch.matmul; float32_matmul_precision={torch.get_float32_matmul_precision()}",
            tflops=out.matmul_tflops[name]))
        del a, b
    return out
