"""Diversity and Direction on ViT-B/16-sized token activations, (B, 197, 768).

A ViT-B/16 block gives 197 tokens (a class token, then 14 x 14 patches) of 768 channels,
channels last. fastobj reads the patches through :class:`fastobj.Tokens`, a strided
(B, 768, 14, 14) view of the tokens' memory that the objectives (and on CUDA the Triton
kernels) consume as is. The classic approach first copies them into a contiguous
(B, C, H, W) tensor (``permute`` + ``contiguous``) and runs the classic loop of
``benchmarks/baselines.py``.

Providers (each maps the op's arguments to its value; the first argument, the tokens, is the
one differentiated):

* ``fastobj``: the objective on the ``Tokens`` target (the library's automatic path);
* ``reference``: the PyTorch reference of ``fastobj.functional`` on the same view;
* ``classic``: permute + contiguous + the classic loop;
* ``copy+fastobj`` (this module's own): permute + contiguous + the objective, which isolates
  what the copy costs.

``OP_SPECS`` holds each op as keyword arguments of the harness's ``Op`` (name, help, make,
n_diff, providers, compile_source, classic_growth); ``cost_model`` gives the FLOPs and bytes;
``CPU_BATCHES`` and ``GPU_BATCHES`` the sweeps. ``python -m fastobj.benchmarks.vit_ops`` times
the providers on its own and prints a table.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

import fastobj
from fastobj import functional as Fn

from . import baselines

TOKENS = 197  # ViT-B/16 at 224 x 224: 1 class token + 14 x 14 patches
CHANNELS = 768
PREFIX = 1
DIRECTION_COSSIM_POW = 1.0  # exercises the cosine term, as the harness's direction op does
CPU_BATCHES = (64,)
GPU_BATCHES = (64, 128, 256, 512)
PROVIDERS = ("fastobj", "copy+fastobj", "reference", "classic")

_TARGET = fastobj.Tokens("tokens", prefix=PREFIX)
_DIVERSITY = fastobj.Diversity(_TARGET)

Dims = Tuple[int, int, int]  # (B, T, C)


def _randn(shape, dtype, device, gen) -> torch.Tensor:
    return torch.randn(tuple(shape), device=device, generator=gen).to(dtype)


def make_tokens(dims: Dims, dtype, device, gen) -> Tuple[torch.Tensor]:
    """(tokens,): a (B, T, C) activation, contiguous as a transformer block returns it."""
    return (_randn(dims, dtype, device, gen),)


def make_tokens_and_vec(dims: Dims, dtype, device, gen) -> Tuple[torch.Tensor, torch.Tensor]:
    """(tokens, vec): the activation and one shared direction of C entries."""
    return _randn(dims, dtype, device, gen), _randn(dims[2:], dtype, device, gen)


def contiguous_grid(tokens: torch.Tensor) -> torch.Tensor:
    """The classic preparation: the patch tokens copied into a contiguous (B, C, h, w)."""
    b, t, c = tokens.shape
    side = math.isqrt(t - PREFIX)
    return tokens[:, PREFIX:].permute(0, 2, 1).contiguous().reshape(b, c, side, side)


def diversity_fastobj(tokens: torch.Tensor) -> torch.Tensor:
    return _DIVERSITY({_TARGET: tokens})


def diversity_copy_fastobj(tokens: torch.Tensor) -> torch.Tensor:
    return fastobj.Diversity("grid")({"grid": contiguous_grid(tokens)})


def diversity_reference(tokens: torch.Tensor) -> torch.Tensor:
    return Fn.diversity_ref(_TARGET.view(tokens).flatten(2))


def diversity_classic(tokens: torch.Tensor) -> torch.Tensor:
    return baselines.diversity(contiguous_grid(tokens))


def direction_fastobj(tokens: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    return fastobj.Direction(_TARGET, vec, DIRECTION_COSSIM_POW)({_TARGET: tokens})


def direction_copy_fastobj(tokens: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    return fastobj.Direction("grid", vec, DIRECTION_COSSIM_POW)({"grid": contiguous_grid(tokens)})


def direction_reference(tokens: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    grid = _TARGET.view(tokens)
    out = Fn.dot_cossim_ref(grid.flatten(2), vec.reshape(1, -1, 1), DIRECTION_COSSIM_POW)
    return out.reshape(grid.shape[0], *grid.shape[2:])


def direction_classic(tokens: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    return baselines.direction(contiguous_grid(tokens), vec, DIRECTION_COSSIM_POW)


FUNCTIONS: Dict[str, Dict[str, Callable]] = {
    "vit_diversity": {"fastobj": diversity_fastobj, "copy+fastobj": diversity_copy_fastobj,
                      "reference": diversity_reference, "classic": diversity_classic},
    "vit_direction": {"fastobj": direction_fastobj, "copy+fastobj": direction_copy_fastobj,
                      "reference": direction_reference, "classic": direction_classic},
}
MAKERS = {"vit_diversity": make_tokens, "vit_direction": make_tokens_and_vec}

OP_SPECS = (
    dict(name="vit_diversity",
         help="Diversity of ViT-B/16 patch tokens (B, 197, 768) through fastobj.Tokens vs "
              "permute + contiguous + the O(B²) pairwise loop",
         make=make_tokens, n_diff=1,
         providers={p: (lambda f=f: f) for p, f in FUNCTIONS["vit_diversity"].items()
                    if p != "copy+fastobj"},
         compile_source=lambda: diversity_reference, classic_growth=2),
    dict(name="vit_direction",
         help=f"Direction (cossim_pow={DIRECTION_COSSIM_POW}, shared vector) on ViT-B/16 tokens "
              "(B, 197, 768) through fastobj.Tokens vs permute + contiguous + the classic code",
         make=make_tokens_and_vec, n_diff=1,
         providers={p: (lambda f=f: f) for p, f in FUNCTIONS["vit_direction"].items()
                    if p != "copy+fastobj"},
         compile_source=lambda: direction_reference),
)


def cost_model(op: str, dims: Dims, dtype: torch.dtype, mode: str) -> Tuple[float, float, str]:
    """(FLOPs, bytes, bound) by the DESIGN.md models, on the P = T - 1 patch tokens.

    vit_diversity: 2·B·C²·P FLOPs forward (twice that fwd+bwd); reads the patches (and writes
    their gradient). Compute-bound.
    vit_direction: reads the patches and the vector, writes (B, P) (and reads the upstream
    (B, P), writes the patches' gradient). Memory-bound; FLOPs for reference only.
    """
    b, t, c = dims
    p = t - PREFIX
    size = torch.empty((), dtype=dtype).element_size()
    bwd = mode == "fwd+bwd"
    n = b * c * p
    if op == "vit_diversity":
        return 2.0 * b * c * c * p * (2 if bwd else 1), n * size * (2 if bwd else 1), "compute"
    if op == "vit_direction":
        moved = (n + c + b * p) * size + ((b * p + n) * size if bwd else 0)
        return 6.0 * n * (2 if bwd else 1), moved, "memory"
    raise KeyError(op)


def prepare(op: str, provider: str, batch: int, dtype: torch.dtype = torch.float32,
            device: Optional[torch.device] = None, seed: int = 0) -> Callable[[], None]:
    """A closure running one forward and backward of ``provider`` on a fixed random case.

    The upstream gradient is random (not ones); the tokens are the differentiated input.
    """
    device = device or torch.device("cpu")
    gen = torch.Generator(device=device).manual_seed(seed)
    args = MAKERS[op]((batch, TOKENS, CHANNELS), dtype, device, gen)
    tokens = args[0].requires_grad_()
    fn = FUNCTIONS[op][provider]
    shape = fn(*args).shape
    upstream = _randn(shape, dtype, device, gen)

    def step() -> None:
        torch.autograd.grad(fn(*args), tokens, upstream)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return step


def time_step(step: Callable[[], None], repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default=",".join(FUNCTIONS))
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument("--batch-sizes", default=",".join(map(str, CPU_BATCHES)))
    parser.add_argument("--classic-max-batch", type=int, default=64,
                        help="largest batch at which the O(B²) classic Diversity runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"fwd+bwd, float32, tokens ({TOKENS}, {CHANNELS}), device {device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    for op in args.ops.split(","):
        for batch in map(int, args.batch_sizes.split(",")):
            row = {}
            for provider in args.providers.split(","):
                if op == "vit_diversity" and provider == "classic" \
                        and batch > args.classic_max_batch:
                    continue
                row[provider] = time_step(prepare(op, provider, batch, device=device),
                                          args.repeats)
                print(f"{op} B={batch} {provider}: {row[provider] * 1e3:.1f} ms", flush=True)
            if "classic" in row:
                print(f"{op} B={batch} speed-up over classic: " + ", ".join(
                    f"{p} {row['classic'] / t:.2f}x" for p, t in row.items() if p != "classic"),
                    flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
