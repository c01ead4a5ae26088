"""Named sweeps of ``fastobj bench`` (``--preset``) and the plan of cases they expand to."""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

from .ops import MODES, Dims


@dataclasses.dataclass(frozen=True)
class Sweep:
    op: str
    shapes: Tuple[Dims, ...]
    dtypes: Tuple[str, ...] = ("float32",)
    compile_batches: Tuple[int, ...] = ()  # batch sizes at which the compile provider runs
    modes: Tuple[str, ...] = MODES
    compile_modes: Tuple[str, ...] = MODES  # modes in which it runs there


@dataclasses.dataclass(frozen=True)
class Preset:
    """A sweep and its time plan.

    ``rounds``: how many interleaved rounds every point gets when the time limit allows;
    ``round_s``: seconds each provider spends sampling a point in one round (at least one
    call); ``budget_s``: per-call time beyond which the classic loops stop escalating B;
    ``time_limit_s``: the whole run's budget (``--max-minutes``), None for none.
    """
    name: str
    help: str
    sweeps: Tuple[Sweep, ...]
    budget_s: float
    rounds: int
    round_s: float
    time_limit_s: Optional[float]
    ceilings: bool = True
    memory: bool = True
    # The points the GPU check measures first: op -> its batch sizes (None: all of them).
    headline: Dict[str, Optional[Tuple[int, ...]]] = dataclasses.field(default_factory=dict)

    def part(self, name: str) -> "Preset":
        """The preset restricted to its headline points ("headline"), to the others ("rest"),
        or whole ("all"); a part keeps no compile points (the check times those apart)."""
        if name == "all":
            return self
        if name not in ("headline", "rest"):
            raise ValueError(f"preset part must be 'all', 'headline' or 'rest', got {name!r}")
        def in_headline(op: str, dims: Dims) -> bool:
            return op in self.headline and (self.headline[op] is None
                                            or dims[0] in self.headline[op])
        sweeps = []
        for sweep in self.sweeps:
            shapes = tuple(dims for dims in sweep.shapes
                           if in_headline(sweep.op, dims) == (name == "headline"))
            if shapes:
                sweeps.append(dataclasses.replace(sweep, shapes=shapes, compile_batches=()))
        return dataclasses.replace(self, name=f"{self.name}-{name}", sweeps=tuple(sweeps))


def _batches(bs: Sequence[int], rest: Dims) -> Tuple[Dims, ...]:
    return tuple((b,) + tuple(rest) for b in bs)


RENDER_BATCHES = (32, 128, 512)
RENDER_IMAGE = (3, 64, 64)
VIT_TOKENS = (197, 768)  # ViT-B/16 at 224 x 224: a class token and 14 x 14 patches

PRESETS: Dict[str, Preset] = {p.name: p for p in (
    Preset("cpu", "default sweep on CPU (about two minutes at most on 2 cores)", (
        Sweep("diversity", _batches((8, 16, 32, 64, 128, 256, 512, 1024), (64, 14, 14)),
              compile_batches=(128,), compile_modes=("fwd+bwd",)),
        Sweep("total_variation", _batches((1, 16), (3, 224, 224)), compile_batches=(16,)),
        Sweep("direction", _batches((16,), (512, 14, 14)), compile_batches=(16,),
              modes=("fwd+bwd",)),
        Sweep("direction_per_sample", _batches((16,), (512, 14, 14)), modes=("fwd+bwd",)),
        Sweep("alignment", _batches((16, 64), (64, 14, 14))),
        Sweep("activation_interpolation", _batches((16, 64), (64, 14, 14))),
        Sweep("render_step", _batches(RENDER_BATCHES, RENDER_IMAGE), modes=("fwd+bwd",)),
        Sweep("vit_diversity", _batches((4, 16), VIT_TOKENS), modes=("fwd+bwd",)),
        Sweep("vit_direction", _batches((4, 16), VIT_TOKENS), modes=("fwd+bwd",)),
    ), budget_s=1.0, rounds=5, round_s=0.03, time_limit_s=120.0),
    Preset("gpu", "sweep for one H100/H200-class GPU (benchmarks/gpu_check.sh)", (
        Sweep("diversity", _batches((8, 16, 32, 64, 128, 256, 512, 1024), (512, 28, 28)),
              ("float32", "bfloat16"), compile_batches=(1024,), compile_modes=("fwd+bwd",)),
        Sweep("total_variation", ((64, 3, 512, 512),), ("float32", "bfloat16"),
              compile_batches=(64,), compile_modes=("fwd+bwd",)),
        Sweep("direction", ((256, 1024, 14, 14),), ("float32", "bfloat16"),
              compile_batches=(256,), compile_modes=("fwd+bwd",)),
        Sweep("direction_per_sample", ((256, 1024, 14, 14),), ("float32", "bfloat16")),
        Sweep("alignment", ((256, 512, 14, 14),), ("float32", "bfloat16")),
        Sweep("activation_interpolation", ((256, 512, 14, 14),), ("float32", "bfloat16")),
        Sweep("render_step", _batches(RENDER_BATCHES, RENDER_IMAGE), modes=("fwd+bwd",)),
        Sweep("vit_diversity", _batches((64, 128, 256, 512), VIT_TOKENS), ("float32", "bfloat16"),
              modes=("fwd+bwd",)),
        Sweep("vit_direction", _batches((64, 128, 256, 512), VIT_TOKENS), ("float32", "bfloat16"),
              modes=("fwd+bwd",)),
    ), budget_s=2.0, rounds=5, round_s=0.04, time_limit_s=330.0,
       headline={"diversity": (256, 1024), "total_variation": None, "direction": None,
                 "direction_per_sample": None}),
    Preset("rehearsal", "the gpu preset's ops at tiny shapes, for the CPU rehearsal of "
           "benchmarks/gpu_check.sh (run it with TRITON_INTERPRET=1, FASTOBJ_BACKEND=triton)", (
        Sweep("diversity", _batches((2, 4), (16, 4, 4)), ("float32", "bfloat16")),
        Sweep("total_variation", ((2, 3, 8, 8),), ("float32", "bfloat16"),
              compile_batches=(2,), compile_modes=("fwd",)),
        Sweep("direction", ((2, 16, 4, 4),), ("float32",)),
        Sweep("direction_per_sample", ((2, 16, 4, 4),), ("float32",)),
        Sweep("render_step", ((2, 3, 16, 16),), modes=("fwd+bwd",)),
        Sweep("vit_diversity", ((2, 17, 8),), modes=("fwd+bwd",)),
    ), budget_s=0.2, rounds=1, round_s=0.001, time_limit_s=None, ceilings=False, memory=False,
       headline={"diversity": (4,), "total_variation": None, "direction": None,
                 "direction_per_sample": None}),
    Preset("quick", "tiny smoke sweep: every op and provider but compile, in seconds", (
        Sweep("diversity", _batches((4, 8), (8, 4, 4))),
        Sweep("total_variation", ((2, 3, 16, 16),)),
        Sweep("direction", ((2, 8, 4, 4),)),
        Sweep("direction_per_sample", ((2, 8, 4, 4),)),
        Sweep("alignment", ((6, 8, 4, 4),)),
        Sweep("activation_interpolation", ((4, 8, 4, 4),)),
        Sweep("render_step", ((4, 3, 16, 16),), modes=("fwd+bwd",)),
        Sweep("vit_diversity", ((3, 17, 8),)),
        Sweep("vit_direction", ((3, 17, 8),)),
    ), budget_s=0.2, rounds=3, round_s=0.002, time_limit_s=None, ceilings=False),
)}


@dataclasses.dataclass(frozen=True)
class Case:
    op: str
    dims: Dims
    dtype: str
    mode: str
    compile: bool


def plan(preset: Preset, ops: Optional[Sequence[str]] = None,
         batch_sizes: Optional[Sequence[int]] = None,
         dtypes: Optional[Sequence[str]] = None,
         modes: Optional[Sequence[str]] = None) -> List[Case]:
    """The cases of a preset, filtered and overridden, in run order (B increasing)."""
    cases: List[Case] = []
    for sweep in preset.sweeps:
        if ops is not None and sweep.op not in ops:
            continue
        shapes = list(sweep.shapes)
        compile_at = set(sweep.compile_batches)
        if batch_sizes:
            rests = list(dict.fromkeys(s[1:] for s in shapes))
            shapes = [(b,) + r for r in rests for b in batch_sizes]
            if compile_at:  # the preset's compile points that survive, else the nearest B
                kept = compile_at & set(batch_sizes)
                target = min(compile_at)
                compile_at = kept or {min(batch_sizes, key=lambda b: abs(b - target))}
        for dtype in (dtypes or sweep.dtypes):
            for mode in (modes or sweep.modes):
                for dims in sorted(shapes):
                    cases.append(Case(sweep.op, tuple(dims), dtype, mode,
                                      dims[0] in compile_at and mode in sweep.compile_modes))
    return cases
