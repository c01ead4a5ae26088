"""Whole-layer atlases: one feature visualization per channel, many channels per batch.

:func:`render_atlas` renders every asked-for channel of a layer. Each batch holds up to
``batch_size`` channels, one per sample, optimized together with a per-sample
``ChannelActivation(layer, [c0, c1, ...])``: one forward and backward pass serves them all.
It writes into a directory the files :mod:`fastobj.render.atlas_files` lists: every channel's
image (and transparency map), a record per finished batch (for resuming), the CSV of
activations and the labelled grid once every channel is done, and the browsable page
(:mod:`fastobj.render.atlas_page`), rewritten after each finished batch.

``activation`` is the mean over positions of the channel's activation on the final image
(preprocessed, without random transforms); ``grey_activation`` the same on a mid-grey image,
the baseline the render should leave far behind. A rerun with the same directory and settings
skips the batches already finished. Batch ``k`` always holds the same channels and starts from
seed ``seed + k``, so an interrupted and resumed atlas equals an uninterrupted one.

Under ``torch.distributed`` (``torchrun``), batch ``k`` goes to rank ``k % world_size``; the
ranks meet at a barrier and rank 0 writes the CSV and the grid.
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
from torch import nn

from ..hooks import collect_activations, resolve_target
from ..objectives import ChannelActivation
from .atlas_files import (
    BATCHES_DIR,
    CSV_FILE,
    GRID_FILE,
    IMAGES_DIR,
    SETTINGS_FILE,
    TRANSPARENCY_DIR,
    AtlasEntry,
    batch_path,
    image_name,
)
from .atlas_page import record_command, write_atlas_page
from .callbacks import transparency_alpha
from .imageio import save_png, save_rgba_png, write_atomically
from .param import pair
from .png import make_grid, upscale
from .preprocess import model_preprocess
from .probe import borrowed, run_device
from .runner import RECIPES, render

__all__ = ["AtlasEntry", "AtlasResult", "parse_channels", "channel_means", "rank_and_world",
           "render_atlas"]

@dataclass
class AtlasResult:
    """What :func:`render_atlas` returns.

    Attributes:
        entries: one per channel, in the order of the channels asked for.
        rendered: channels this process rendered in this call (not resumed ones).
        seconds: wall-clock time this process spent rendering them.
    """

    entries: List[AtlasEntry]
    rendered: int
    seconds: float


def parse_channels(spec: Optional[str], channels: int) -> List[int]:
    """Channels from ``"START:STOP"`` ranges (STOP excluded; either end may be left out) and
    single numbers, comma separated (``"0:16,40,64:"``); None means all ``channels``. Each must
    lie in ``[0, channels)``."""
    if spec is None:
        return list(range(channels))
    picked: List[int] = []
    for part in spec.split(","):
        try:
            if ":" in part:
                start, stop = part.split(":")
                picked.extend(range(int(start) if start.strip() else 0,
                                    int(stop) if stop.strip() else channels))
            else:
                picked.append(int(part))
        except ValueError:
            raise ValueError(f"channels {spec!r}: use numbers and START:STOP ranges, comma "
                             "separated") from None
    bad = [c for c in picked if not 0 <= c < channels]
    if bad or not picked:
        raise ValueError(f"channels {spec!r}: the layer has channels 0 to {channels - 1}"
                         + (f"; {bad[:5]} are outside" if bad else "; none selected"))
    if len(set(picked)) != len(picked):
        raise ValueError(f"channels {spec!r}: a channel is listed twice")
    return picked


def channel_means(model: nn.Module, layer: Any, images: torch.Tensor,
                  preprocess: Any = None) -> torch.Tensor:
    """``(B, C)`` float64: every channel of ``layer`` averaged over positions, for each image
    (after ``preprocess``, in eval mode, without gradients)."""
    with borrowed(model), torch.no_grad():
        model_input = images if preprocess is None else preprocess(images)
        acts = collect_activations(model, layer, model_input)[layer]
    return acts.double().flatten(2).mean(dim=2) if acts.dim() > 2 else acts.double()


def _check_settings(out_dir: str, settings: Dict[str, Any], writer: bool) -> None:
    path = os.path.join(out_dir, SETTINGS_FILE)
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        differing = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if differing:
            raise ValueError(f"render_atlas: {out_dir!r} holds an atlas made with other settings "
                             f"({', '.join(differing)}); use another directory or the same "
                             "settings to resume")
    elif writer:
        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                json.dump(settings, f, indent=1)
        write_atomically(path, write)


def _load_batch(out_dir: str, k: int, channels: Sequence[int]) -> Optional[Dict[str, Any]]:
    """The record of batch ``k`` if it is finished (and holds ``channels``), else None."""
    path = batch_path(out_dir, k)
    if not os.path.exists(path):
        return None
    record = torch.load(path, map_location="cpu", weights_only=True)
    return record if record["channels"].tolist() == list(channels) else None


def rank_and_world() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def render_atlas(model: nn.Module, layer: str, out_dir: str,
                 channels: Union[None, str, Sequence[int]] = None, *, batch_size: int = 16,
                 image_size: Optional[int] = None, steps: int = 256, lr: Optional[float] = None,
                 seed: int = 0, param: str = "fft", decorrelate: bool = True,
                 views: Optional[int] = None, transparency: bool = False,
                 max_batch: Union[None, int, str] = "auto",
                 channels_last: Optional[bool] = None, preprocess: Any = "model",
                 device: Union[None, str, torch.device] = None, scale: int = 1,
                 progress: bool = True,
                 identity: Optional[Mapping[str, Any]] = None,
                 command: Optional[Sequence[str]] = None) -> AtlasResult:
    """Render one image per channel of ``layer`` into ``out_dir`` (see the module docstring).

    Args:
        model: the network; ``layer`` is the dotted name of one of its submodules.
        out_dir: the atlas directory (created; reused to resume).
        channels: a list of channels, a :func:`parse_channels` string, or None for all.
        batch_size: channels rendered together (one per sample).
        image_size, steps, lr, seed, param, decorrelate, views, max_batch, channels_last,
            preprocess, device: as for :func:`~fastobj.render.render` (with the image kind's
            recipe of views).
        transparency: also write each channel's transparency map, as an RGBA PNG in
            ``transparency/`` (the render as colour, the map as alpha).
        scale: the grid PNG is enlarged this many times (nearest neighbour).
        progress: a progress bar over channels, with an ETA (rank 0 only).
        identity: extra settings a resume must match, such as the model's name.
        command: the command line that started this run, recorded for the page (a resume
            does not compare it).

    Returns:
        an :class:`AtlasResult`: one :class:`AtlasEntry` per channel, and the time taken.
    """
    if param not in RECIPES:
        raise ValueError(f"render_atlas: param must be one of {', '.join(RECIPES)}, got "
                         f"{param!r}")
    if image_size is None:
        image_size = RECIPES[param].image_size
    for name, value in (("batch_size", batch_size), ("image_size", image_size),
                        ("scale", scale)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"render_atlas: {name} must be a positive int, got {value!r}")
    resolve_target(model, layer, "render_atlas")
    device = run_device(model, device)
    if isinstance(preprocess, str) and preprocess == "model":
        preprocess = model_preprocess(model)
    if isinstance(preprocess, nn.Module):
        preprocess = preprocess.to(device)
    height, width = pair(image_size, "render_atlas")
    grey = channel_means(model, layer, torch.full((1, 3, height, width), 0.5,
                                                  device=device), preprocess)[0]
    if channels is None or isinstance(channels, str):
        channels = parse_channels(channels, grey.numel())
    else:
        channels = parse_channels(",".join(str(int(c)) for c in channels), grey.numel())
    rank, world = rank_and_world()
    settings = {"layer": layer, "channels": channels, "batch_size": batch_size,
                "image_size": image_size, "steps": steps, "lr": lr, "seed": seed,
                "param": param, "decorrelate": decorrelate, "views": views,
                "transparency": transparency, **dict(identity or {})}
    os.makedirs(os.path.join(out_dir, IMAGES_DIR), exist_ok=True)
    os.makedirs(os.path.join(out_dir, BATCHES_DIR), exist_ok=True)
    _check_settings(out_dir, settings, writer=rank == 0)

    if command and rank == 0:
        record_command(out_dir, command)

    batches = [channels[i:i + batch_size] for i in range(0, len(channels), batch_size)]
    mine = [k for k in range(len(batches)) if k % world == rank]
    todo = [k for k in mine if _load_batch(out_dir, k, batches[k]) is None]
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        total = sum(len(batches[k]) for k in mine)
        bar = tqdm(total=total, initial=total - sum(len(batches[k]) for k in todo),
                   desc=f"atlas {layer}" + (f" (rank 0 of {world})" if world > 1 else ""),
                   unit="ch")
    start = time.perf_counter()
    try:
        for k in todo:
            _render_batch(model, layer, out_dir, k, batches[k], grey, bar, len(batches),
                          image_size=image_size, steps=steps, lr=lr, seed=seed + k,
                          param=param, decorrelate=decorrelate, views=views,
                          transparency=transparency, max_batch=max_batch,
                          channels_last=channels_last, preprocess=preprocess, device=device)
            if rank == 0:
                write_atlas_page(out_dir)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    if world > 1:
        dist.barrier()
    records = [_load_batch(out_dir, k, batches[k]) for k in range(len(batches))]
    entries = [AtlasEntry(int(c), float(a), float(g)) for r in records
               for c, a, g in zip(r["channels"], r["activation"], r["grey"])]
    if rank == 0:
        _write_summary(out_dir, entries, torch.cat([r["images"] for r in records]), scale)
        write_atlas_page(out_dir)
    return AtlasResult(entries, sum(len(batches[k]) for k in todo), seconds)


def _render_batch(model: nn.Module, layer: str, out_dir: str, k: int, channels: List[int],
                  grey: torch.Tensor, bar: Any, batch_count: int, *, preprocess: Any,
                  **render_options: Any) -> None:
    """Render batch ``k`` (one channel per sample), write its images, then its record."""
    shown_at = [0.0]

    def report(step: int, loss: torch.Tensor, images: torch.Tensor) -> None:
        now = time.perf_counter()
        if bar is not None and (now - shown_at[0] >= 0.5 or step == render_options["steps"]):
            shown_at[0] = now
            bar.set_postfix_str(f"batch {k + 1}/{batch_count}, step {step}")

    objective = ChannelActivation(layer, channels)
    result = render(model, objective, batch_size=len(channels), stop_early=True,
                    preprocess=preprocess, progress=False, callback=report, **render_options)
    index = torch.tensor(channels)
    means = channel_means(model, layer, result.images.to(render_options["device"]),
                          preprocess).cpu()
    activation = means[torch.arange(len(channels)), index]
    for channel, image in zip(channels, result.images):
        save_png(image, os.path.join(out_dir, IMAGES_DIR, image_name(channel)))
    record = {"channels": index, "activation": activation, "grey": grey.cpu()[index],
              "images": (result.images.clamp(0, 1) * 255).round().to(torch.uint8)}
    if result.transparency is not None:
        alpha = transparency_alpha(result.transparency)
        os.makedirs(os.path.join(out_dir, TRANSPARENCY_DIR), exist_ok=True)
        for channel, image, mask in zip(channels, result.images, alpha):
            save_rgba_png(image, mask, os.path.join(out_dir, TRANSPARENCY_DIR,
                                                    image_name(channel)))
        record["alpha"] = (alpha * 255).round().to(torch.uint8)
    write_atomically(batch_path(out_dir, k), lambda tmp: torch.save(record, tmp))
    if bar is not None:
        bar.update(len(channels))


def _write_summary(out_dir: str, entries: List[AtlasEntry], images: torch.Tensor,
                   scale: int) -> None:
    """The CSV of activations and the labelled grid of every channel's image."""
    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["channel", "activation", "grey_activation"])
            for e in entries:
                writer.writerow([e.channel, f"{e.activation:.6g}", f"{e.grey_activation:.6g}"])

    write_atomically(os.path.join(out_dir, CSV_FILE), write_csv)
    grid = make_grid(images.float() / 255, labels=[str(e.channel) for e in entries])
    write_atomically(os.path.join(out_dir, GRID_FILE),
                      lambda tmp: save_png(upscale(grid, scale), tmp))
