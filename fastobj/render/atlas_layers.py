"""Atlases of several layers of one model, rendered in turn, with an index page over them.

:func:`render_layer_atlases` renders one :func:`~fastobj.render.render_atlas` per layer, each
into its own folder of ``out_dir`` (named after the layer), and keeps ``out_dir/index.html``
(:func:`~fastobj.render.atlas_page.write_model_index`) listing every layer with its output
shape and its progress. Each layer's atlas resumes as a single atlas does, so rerunning the
same call finishes what an interrupted one left. Under ``torchrun`` every rank takes the layers
in the same order and shares each layer's batches as :func:`render_atlas` does; rank 0 writes
the pages.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from torch import nn

from .atlas import AtlasResult, parse_channels, rank_and_world, render_atlas
from .atlas_page import LayerAtlas, record_command, write_model_index
from .models import LayerInfo, list_layers
from .preprocess import Preprocess, model_preprocess

__all__ = ["ALL_LAYERS", "select_layers", "layer_folders", "render_layer_atlases"]

#: The ``layers`` value that picks every layer with a ``(C,)`` or ``(C, H, W)`` output.
ALL_LAYERS = "all"


def select_layers(infos: Sequence[LayerInfo],
                  layers: Union[str, Sequence[str]]) -> List[LayerInfo]:
    """The layers to render, from ``infos`` (:func:`~fastobj.render.list_layers`).

    ``layers`` is :data:`ALL_LAYERS` (every layer whose output is ``(C,)`` or ``(C, H, W)``
    and that runs once per forward pass, in the order the forward pass meets them), or names,
    as a list or comma separated, each a layer that runs once and has channels.
    """
    if isinstance(layers, str) and layers.strip() == ALL_LAYERS:
        return [i for i in infos if i.calls == 1 and i.shape is not None
                and len(i.shape) in (1, 3)]
    names = [n.strip() for n in layers.split(",")] if isinstance(layers, str) else list(layers)
    if not names or not all(names):
        raise ValueError(f"render_layer_atlases: layers {layers!r}: give {ALL_LAYERS!r} or "
                         "layer names, comma separated")
    if len(set(names)) != len(names):
        raise ValueError(f"render_layer_atlases: layers {layers!r}: a layer is listed twice")
    by_name = {i.name: i for i in infos}
    picked = []
    for name in names:
        info = by_name.get(name)
        if info is None:
            raise ValueError(f"render_layer_atlases: layer {name!r} is not a submodule that "
                             "runs in the model's forward pass (see `fastobj layers`)")
        if info.calls != 1 or info.shape is None or len(info.shape) not in (1, 3):
            raise ValueError(f"render_layer_atlases: layer {name!r} has no channels to render "
                             "(it must run once and output (C,) or (C, H, W))")
        picked.append(info)
    return picked


def layer_folders(names: Sequence[str]) -> List[str]:
    """A folder name for each layer: its name with characters other than letters, digits,
    ``.``, ``_`` and ``-`` replaced by ``_``, numbered where two would meet."""
    folders: List[str] = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "layer"
        folder, n = base, 2
        while folder in folders:
            folder, n = f"{base}_{n}", n + 1
        folders.append(folder)
    return folders


def render_layer_atlases(model: nn.Module, layers: Union[str, Sequence[str]], out_dir: str,
                         channels: Union[None, str, Sequence[int]] = None, *,
                         image_size: Optional[int] = None, preprocess: Any = "model",
                         identity: Optional[Mapping[str, Any]] = None,
                         command: Optional[Sequence[str]] = None, title: str = "",
                         **atlas_options: Any) -> Dict[str, AtlasResult]:
    """Render an atlas of each of ``layers`` into ``out_dir/FOLDER`` (see the module
    docstring) and write the model index ``out_dir/index.html``.

    Args:
        layers: :data:`ALL_LAYERS` or layer names (see :func:`select_layers`).
        channels: as for :func:`render_atlas`, the same for every layer, each keeping the
            channels it has (``"0:32"`` gives a 16-channel layer its 16); None for all.
        image_size, preprocess, identity, command: as for :func:`render_atlas`; the shapes
            on the index are those the layers output for an image of ``image_size`` through
            ``preprocess`` (when it is a :class:`~fastobj.render.Preprocess`).
        title: the index page's heading, such as the model's name.
        atlas_options: the other options of :func:`render_atlas`.

    Returns:
        each layer's :class:`~fastobj.render.atlas.AtlasResult`, by name, in render order.
    """
    if isinstance(preprocess, str) and preprocess == "model":
        preprocess = model_preprocess(model)
    infos = list_layers(model, image_size,
                        preprocess if isinstance(preprocess, Preprocess) else Preprocess())
    picked = select_layers(infos, layers)
    widest = max(info.shape[0] for info in picked)
    if channels is None or isinstance(channels, str):
        wanted = parse_channels(channels, widest)
    else:
        wanted = parse_channels(",".join(str(int(c)) for c in channels), widest)
    plan = [LayerAtlas(info.name, folder, info.kind, info.shape,
                       sum(c < info.shape[0] for c in wanted))
            for info, folder in zip(picked, layer_folders([i.name for i in picked]))]
    empty = [layer.name for layer in plan if not layer.channels]
    if empty:
        raise ValueError(f"render_layer_atlases: channels {channels!r} leave no channel of "
                         f"{', '.join(empty)}")
    rank, _ = rank_and_world()

    def write_index() -> None:
        if rank == 0:
            write_model_index(out_dir, plan, title)

    if rank == 0 and command:
        record_command(out_dir, command)
    write_index()
    results: Dict[str, AtlasResult] = {}
    try:
        for layer in plan:
            results[layer.name] = render_atlas(
                model, layer.name, os.path.join(out_dir, layer.folder),
                [c for c in wanted if c < layer.shape[0]], image_size=image_size,
                preprocess=preprocess, identity=identity, command=command, **atlas_options)
            write_index()
    finally:  # an interrupted run leaves an index of what it finished
        write_index()
    return results
