"""What the kernel modules of ``fastobj.kernels`` share: the device guard, the grid-sizing
policy, plain-integer host arithmetic, the launch-configuration type, the int32-offset test,
the tile size and the fixed-order sum kernel."""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Dict, Optional, Tuple

import torch
import triton
import triton.language as tl

INT32_LIMIT = 2**31  # in-tile offsets at or above this need int64 (tests lower it)
# Bytes a looping kernel moves per tile step: 8 KiB, i.e. 2048 float32 elements, 8 per thread
# of 8 warps (two 16-byte loads each).
TILE_BYTES = 8192
# Environment variable that sizes grids for that many SMs on any device, CPU tensors in
# Triton's interpreter included (FASTOBJ_SM_COUNT=132: an H200's grids).
SM_COUNT_ENV = "FASTOBJ_SM_COUNT"


# --------------------------------------------------------------------------------------------
# Device guard and grid sizing.
# --------------------------------------------------------------------------------------------

def device_guard(device: torch.device):
    """The context under which kernels for `device` launch: that CUDA device made current
    (Triton launches on the current device), or nothing when it already is current, and for
    CPU tensors (the interpreter). Switching devices costs microseconds on the host; asking
    which is current does not."""
    if device.type == "cuda" and device.index != torch.cuda.current_device():
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def on_input_device(launcher):
    """Run `launcher(tensor, ...)` under device_guard(tensor.device): a tensor on cuda:1 while
    cuda:0 is current gets its kernels launched on cuda:1."""
    @functools.wraps(launcher)
    def guarded(first: torch.Tensor, *args, **kwargs):
        with device_guard(first.device):
            return launcher(first, *args, **kwargs)
    return guarded


@functools.lru_cache(maxsize=None)
def _device_sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device: torch.device) -> Optional[int]:
    """SMs to size grids for: FASTOBJ_SM_COUNT when set (tests emulate an H200's 132 on CPU),
    else the CUDA device's own count, else None (CPU tensors: the interpreter, where every
    program costs Python time, so launchers keep grids small)."""
    override = os.environ.get(SM_COUNT_ENV, "").strip()
    if override:
        if not override.isdigit() or int(override) < 1:
            raise ValueError(f"{SM_COUNT_ENV} must be a positive integer, got {override!r}")
        return int(override)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return _device_sm_count(index)
    return None


def wave(device: torch.device, programs_per_sm: int) -> Optional[int]:
    """Programs that run at once on the device (SMs x programs_per_sm, the latter predicted
    from the kernel's registers, warps and shared memory), or None in the interpreter."""
    sms = sm_count(device)
    return None if sms is None else sms * programs_per_sm


def resident_grid(device: torch.device, programs_per_sm: int, interpreter_programs: int,
                  work_items: int) -> int:
    """Programs for `work_items` independent items: at most one full wave (see wave), so no
    partial tail wave; on the interpreter at most interpreter_programs. Never more programs
    than items, never fewer than one."""
    size = wave(device, programs_per_sm)
    return max(1, min(interpreter_programs if size is None else size, work_items))


def plan_key() -> str:
    """What a cached launch plan depends on beyond its arguments (shapes, strides, dtypes, the
    device): the FASTOBJ_SM_COUNT override, which sets the grid sizes with the device."""
    return os.environ.get(SM_COUNT_ENV, "")


def plan_cache(planner):
    """Memoise a launcher's planner: a pure function of shapes, strides, dtypes, flags and a
    plan_key, called on every launch, computed once per distinct combination."""
    return functools.lru_cache(maxsize=1024)(planner)


# --------------------------------------------------------------------------------------------
# Host arithmetic on plain integers (triton.cdiv and triton.next_power_of_2 cost microseconds
# a call on the host, and launchers call them on every launch).
# --------------------------------------------------------------------------------------------

def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for integers, b > 0."""
    return -(-a // b)


def contiguous_strides(shape) -> Tuple[int, ...]:
    """The strides of a contiguous tensor of this shape (torch's: a size-0 dim counts as 1 for
    the dims before it)."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


# --------------------------------------------------------------------------------------------
# Launch configuration.
# --------------------------------------------------------------------------------------------

class Launch:
    """One kernel launch: its grid, its compile-time constants and Triton's options
    (num_warps, and num_stages / maxnreg where given: Triton's defaults else). The keyword
    arguments of the launch are merged once, here, not on every call.

    Calling it launches through :func:`launch_compiled`: Triton's own launch path the first time
    a kernel meets an argument specialization, the compiled kernel directly after that."""
    __slots__ = ("grid", "constexprs", "num_warps", "num_stages", "maxnreg", "_kwargs",
                 "_options_key")

    def __init__(self, grid: Tuple[int, ...], constexprs: Dict[str, object], num_warps: int,
                 num_stages: Optional[int] = None, maxnreg: Optional[int] = None):
        self.grid, self.constexprs, self.num_warps = tuple(grid), constexprs, num_warps
        self.num_stages, self.maxnreg = num_stages, maxnreg
        self._kwargs = dict(constexprs, num_warps=num_warps)
        if num_stages is not None:
            self._kwargs["num_stages"] = num_stages
        if maxnreg is not None:
            self._kwargs["maxnreg"] = maxnreg
        self._options_key = tuple(sorted(self._kwargs.items()))

    @property
    def options(self) -> Dict[str, int]:
        """num_warps, and num_stages / maxnreg where set."""
        return {k: v for k, v in self._kwargs.items() if k not in self.constexprs}

    def on(self, grid: Tuple[int, ...]) -> "Launch":
        """The same configuration on another grid (one tile shape, several passes): a copy that
        shares the merged keyword arguments (launchers call this on every launch)."""
        copy = object.__new__(Launch)
        copy.grid, copy.constexprs, copy.num_warps = grid, self.constexprs, self.num_warps
        copy.num_stages, copy.maxnreg = self.num_stages, self.maxnreg
        copy._kwargs, copy._options_key = self._kwargs, self._options_key
        return copy

    def with_constexprs(self, **changes) -> "Launch":
        """The same launch with some compile-time constants changed."""
        return Launch(self.grid, dict(self.constexprs, **changes), self.num_warps,
                      self.num_stages, self.maxnreg)

    def __call__(self, kernel, *args):
        launch_compiled(kernel, self.grid, args, self._kwargs, self._options_key)


# --------------------------------------------------------------------------------------------
# Direct launches of compiled kernels.
#
# Triton's JITFunction.run binds every argument, derives its specialization, builds a cache key
# string and looks the compiled kernel up on every launch: 5 us for an empty kernel on this
# CPU, more with more arguments, against 1 us for calling the compiled kernel's launcher. A
# launch that has seen the same kernel, options, device and argument specialization before
# calls the compiled kernel itself with the arguments JITFunction.run would pass it
# (tests/test_direct_launch.py checks that, under Triton 3.9 and 3.6).
# --------------------------------------------------------------------------------------------

DIRECT_LAUNCH_ENV = "FASTOBJ_DIRECT_LAUNCH"


def _direct_launch_supported() -> bool:
    """Whether launch_compiled may call compiled kernels directly: for the Triton versions
    whose launch convention the test checks (3.6 and 3.9, and those between), unless
    FASTOBJ_DIRECT_LAUNCH=0 asks for Triton's own path on every launch (1 or unset: the
    default; any other value is refused)."""
    setting = os.environ.get(DIRECT_LAUNCH_ENV, "").strip()
    if setting not in ("", "0", "1"):
        raise ValueError(f"{DIRECT_LAUNCH_ENV} must be 0 or 1, got {setting!r}")
    if setting == "0":
        return False
    major, minor = (int(part) for part in triton.__version__.split(".")[:2])
    return (3, 6) <= (major, minor) <= (3, 9)


DIRECT_LAUNCH = _direct_launch_supported()
if DIRECT_LAUNCH:
    from triton import knobs
    from triton.runtime.driver import driver
    from triton.runtime.jit import JITFunction

_SCALARS = frozenset((float, bool, type(None)))
_KNOWN_ARGUMENTS = (torch.Tensor, int, float, bool, type(None))


def _specializations(args: tuple) -> tuple:
    """A key at least as fine as what Triton specializes a kernel on, per argument: an int's
    value (Triton keys on its width, on whether it is 1 and on whether it divides by 16), the
    type of a float, bool or None (floats and bools are not specialized; None is), and a
    tensor's dtype and 16-byte alignment. (Types are compared, not isinstance-checked: an
    isinstance check against torch.Tensor costs a Python call per argument.)"""
    return tuple([a if type(a) is int else type(a) if type(a) in _SCALARS
                  else (a.dtype, a.data_ptr() % 16 == 0) for a in args])


# (id of the kernel, options, device, argument specializations) -> (compiled kernel, constexpr
# values in the kernel's parameter order after the positional arguments). Kernels are module
# globals that live as long as the process, so their ids are never reused.
_compiled: Dict[tuple, tuple] = {}
_MAX_COMPILED_ENTRIES = 4096  # int values are keys: a sweep over many shapes starts afresh


def launch_compiled(kernel, grid: Tuple[int, ...], args: tuple, kwargs: Dict[str, object],
                    options_key: tuple) -> None:
    """kernel[grid](*args, **kwargs), through the compiled kernel when it was seen before.

    kwargs holds the constexprs (by name, for the parameters after args) and Triton's options;
    options_key is a hashable form of it. Kernels that are not compiled (Triton's interpreter),
    and every kernel where DIRECT_LAUNCH is off, always take Triton's path."""
    if not DIRECT_LAUNCH or type(kernel) is not JITFunction:
        kernel[grid](*args, **kwargs)
        return
    active = driver.active
    device = active.get_current_device()
    key = (id(kernel), options_key, device, _specializations(args))
    entry = _compiled.get(key)
    if entry is None:
        compiled = kernel[grid](*args, **kwargs)
        # Cached only where the key is sound: arguments of known kinds, none of them a
        # constexpr passed by position (the key has a bool's or a float's type, not its value).
        known = all(isinstance(a, _KNOWN_ARGUMENTS) for a in args)
        positional_constexpr = any(p.is_constexpr for p in kernel.params[:len(args)])
        if known and not positional_constexpr and hasattr(compiled, "packed_metadata"):
            names = list(kernel.signature.parameters.values())[len(args):]
            tail = tuple(kwargs[p.name] if p.name in kwargs else p.default for p in names)
            if len(_compiled) >= _MAX_COMPILED_ENTRIES:
                _compiled.clear()
            _compiled[key] = (compiled, tail)
        return
    compiled, tail = entry
    stream = active.get_current_stream(device)
    bound = args + tail
    grid = grid + (1,) * (3 - len(grid))
    enter, leave = knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook
    # The launch metadata is what the launch hooks receive; with no hook registered (Triton's
    # hook chains empty, the usual case) nothing reads it, and it is not built.
    metadata = (compiled.launch_metadata(grid, stream, *bound)
                if _hooked(enter) or _hooked(leave) else None)
    compiled.run(grid[0], grid[1], grid[2], stream, compiled.function, compiled.packed_metadata,
                 metadata, enter, leave, *bound)


def _hooked(hook) -> bool:
    """Whether a Triton launch hook will call anything: a non-empty hook chain (Triton 3.6 to
    3.9), or a plain callable set in its place."""
    return hook is not None and bool(getattr(hook, "calls", True))


def needs_int64(*tiles) -> bool:
    """Whether an in-tile offset can reach INT32_LIMIT. Each tile is a sequence of
    (extent, element stride) pairs, one per axis; its largest offset is
    Σ (extent - 1)·|stride|."""
    return any(sum((extent - 1) * abs(stride) for extent, stride in tile) >= INT32_LIMIT
               for tile in tiles)


@triton.jit
def tile_offsets(rows, cols, stride_rows, stride_cols, WIDE: tl.constexpr):
    """Element offsets of a 2-D tile, relative to its base pointer.

    rows (R,) and cols (K,) are the tile's in-tile indices along its two axes, and
    stride_rows / stride_cols the element strides of those axes; the result is the (R, K)
    block rows[:, None] * stride_rows + cols[None, :] * stride_cols. It is computed in int64
    when WIDE (the launcher found that an offset could reach 2**31), in int32 otherwise, which
    keeps the address arithmetic narrow; the tile's base offset is the caller's, as a 64-bit
    scalar.
    """
    if WIDE:
        offsets = (rows.to(tl.int64)[:, None] * stride_rows
                   + cols.to(tl.int64)[None, :] * stride_cols)
    else:
        offsets = rows[:, None] * stride_rows + cols[None, :] * stride_cols
    return offsets


# --------------------------------------------------------------------------------------------
# Fixed-order sums (the second stage of every deterministic reduction).
# --------------------------------------------------------------------------------------------

_SUM_ELEMENTS = 4096  # elements a program of sum_rows_kernel loads per step


@triton.jit
def sum_rows_kernel(in_ptr, out_ptr, R, M, n_mblocks,
                    BLOCK_R: tl.constexpr, BLOCK_M: tl.constexpr):
    """out[a, m] = Σ_r in[a, r, m] in a fixed order (r in blocks of BLOCK_R, then a tree
    over the block), so repeated calls are bitwise equal.

    Grid (A·n_mblocks,): program a·n_mblocks + j sums columns [j·BLOCK_M, (j+1)·BLOCK_M) of
    slab a. Buffers: in_ptr float32 (A, R, M) contiguous; out_ptr (A, M) contiguous, any float
    dtype (the sum is rounded to it once).
    Cost: reads 4·A·R·M bytes, writes A·M elements; A·R·M additions.
    """
    pid = tl.program_id(0)
    a = pid // n_mblocks
    m = (pid % n_mblocks) * BLOCK_M + tl.arange(0, BLOCK_M)
    rr = tl.arange(0, BLOCK_R)
    base = in_ptr + a.to(tl.int64) * R * M
    acc = tl.zeros((BLOCK_R, BLOCK_M), dtype=tl.float32)
    for r0 in range(0, R, BLOCK_R):
        r = r0 + rr
        offsets = r.to(tl.int64)[:, None] * M + m[None, :]
        acc += tl.load(base + offsets, mask=(r < R)[:, None] & (m < M)[None, :], other=0.0)
    tl.store(out_ptr + a.to(tl.int64) * M + m,
             tl.sum(acc, axis=0).to(out_ptr.dtype.element_ty), mask=m < M)


@plan_cache
def _sum_rows_launch(a: int, r: int, m: int) -> Tuple[Launch, int]:
    block_m = min(next_power_of_2(m), 128)
    block_r = min(next_power_of_2(r), max(1, _SUM_ELEMENTS // block_m))
    n_mblocks = cdiv(m, block_m)
    return Launch((a * n_mblocks,), dict(BLOCK_R=block_r, BLOCK_M=block_m), num_warps=4), n_mblocks


def sum_rows(partial: torch.Tensor, out: torch.Tensor) -> None:
    """out = partial.sum(1) in a fixed order: partial float32 (A, R, M) contiguous, out of any
    float dtype and any layout holding A·M elements (written through a contiguous temporary
    when out is not contiguous)."""
    a, r, m = partial.shape
    launch, n_mblocks = _sum_rows_launch(a, r, m)
    target = out if out.is_contiguous() else torch.empty(out.shape, dtype=out.dtype,
                                                         device=out.device)
    launch(sum_rows_kernel, partial, target, r, m, n_mblocks)
    if target is not out:
        out.copy_(target)
