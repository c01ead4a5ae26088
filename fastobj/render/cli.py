"""The ``fastobj render``, ``accentuate``, ``layers`` and ``atlas`` commands.

Examples (the built-in demo CNN; ``--model efficientnet_lite0`` for the pretrained network)::

    fastobj render "ChannelActivation('features.6', 3)" --batch-size 6 --size 96 \\
        --steps 128 --out render.png
    fastobj render features.6:3 --param maco --views 4 --transparency --out maco.png
    fastobj accentuate photo.jpg features.6:3 --size 96 --steps 64 --out accent.png
    fastobj layers
    fastobj atlas features.6 --channels 0:16 --size 64 --steps 64 --out atlas/
    fastobj atlas --layers features.3,features.6 --channels 0:16 --size 64 --steps 64 \\
        --out atlas_layers/

Usage errors (a model import path that does not resolve, a weights file that cannot be loaded,
an expression outside the accepted grammar, a target that names no submodule, an objective that
does not fit its layer's activations, such as a channel index past the layer's channels) print
one line to stderr and exit with status 2, without a traceback.

A photograph that cannot be read (missing, corrupt, not an image, too large) is one such
error, reported before the model is built; nothing is written.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from datetime import timedelta
from typing import Any, List, Optional

import torch
from torch import nn

from ..backend import default_device
from ..loss import targets_of
from .accentuate import load_pictures
from .callbacks import transparency_alpha
from .expression import parse_objective
from .imageio import ImageFileError, save_png, save_rgba_png
from .models import NAMED_MODELS, format_layers, list_layers
from .png import make_grid, upscale
from .preprocess import model_preprocess, parse_normalize
from .probe import check_targets
from .runner import RECIPES, render
from .step import OPTIMIZERS

__all__ = ["add_arguments", "run", "add_accentuate_arguments", "run_accentuate",
           "add_layers_arguments", "run_layers", "add_atlas_arguments",
           "run_atlas", "make_grid", "save_png", "load_model", "DEFAULT_MODEL"]

DEFAULT_MODEL = "fastobj.render.demo:demo_cnn"
DEFAULT_DEMO_OBJECTIVE = "ChannelActivation('features.6', 3)"


class UsageError(Exception):
    """A problem with the command's inputs: reported in one line, exit status 2."""


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the model, its preprocessing and the device."""
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="MODEL",
                        help=f"a name ({', '.join(NAMED_MODELS)}) or the import path "
                             "package.module:callable of a callable returning the nn.Module (or "
                             f"of the module object itself); default {DEFAULT_MODEL} (small "
                             "random CNN)")
    parser.add_argument("--weights", default=None, metavar="FILE",
                        help="state_dict file to load into the model (torch.load, weights_only)")
    parser.add_argument("--normalize", default="model", metavar="imagenet|none|MEAN,STD",
                        help="input normalisation: imagenet, none, MEAN,STD or M1,M2,M3,S1,S2,S3 "
                             "(default: what the model declares, else none)")
    parser.add_argument("--model-size", type=int, default=None, metavar="N",
                        help="resize the model input to NxN inside the optimization (default: "
                             "the model's declared input size, else no resizing)")
    parser.add_argument("--device", default=None,
                        help="device to run on (default: cuda if available, else cpu)")


def _add_image_arguments(parser: argparse.ArgumentParser, batch_size: int,
                         size: Optional[int] = None) -> None:
    """The options of the optimization shared by ``render``, ``accentuate`` and ``atlas``."""
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"images rendered together (default {batch_size})")
    parser.add_argument("--steps", type=int, default=256, help="optimizer steps (default 256)")
    parser.add_argument("--size", type=int, default=size,
                        help=f"image side in pixels (default {size})" if size else
                        "image side in pixels (default 128; 512 with --param maco)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--param", choices=tuple(RECIPES), default="fft",
                        help="image: fft (1/f spectrum), pixel, or maco (phase only, natural "
                             "magnitude; also picks MACO's recipe of optimizer, learning rate "
                             "and crops); default fft")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default 0.05; 0.1 with --param maco)")
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=None,
                        help="optimizer (default adam; nadam with --param maco)")
    parser.add_argument("--views", type=int, default=None, metavar="K",
                        help="random views of each image per step, evaluated as one batch "
                             "(default 1; 6 crops with --param maco)")
    parser.add_argument("--max-batch", type=int, default=None, metavar="N",
                        help="at most N model inputs per forward pass: passes of whole view "
                             "sets bound the memory, slices below the batch size are faster on "
                             "a CPU; never changes the result (default: 4 on a CPU, else all "
                             "at once)")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="keep the model inputs in the default memory layout (by default "
                             "they are channels-last on a CPU, which speeds up convolutions; a "
                             "model that .view()s a convolution's output needs this flag)")
    parser.add_argument("--transparency", action="store_true",
                        help="also accumulate |d loss / d image| and write it (see below)")
    parser.add_argument("--no-decorrelate", action="store_true",
                        help="optimize RGB directly instead of decorrelated colour channels")
    parser.add_argument("--scale", type=int, default=1, metavar="K",
                        help="enlarge the written grid K times, nearest neighbour (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``render`` options to ``parser`` and make ``args.run`` this module's :func:`run`."""
    parser.add_argument(
        "expression", nargs="?", default=None, metavar="OBJECTIVE",
        help="objective expression, e.g. \"ChannelActivation('features.3', 5) + "
             "0.1 * Diversity('features.3')\", or LAYER:CHANNEL (features.3:5, also as a "
             "string inside an expression); the target 'image' is the rendered image. "
             f"Default with the demo model: \"{DEFAULT_DEMO_OBJECTIVE}\"")
    parser.add_argument("--objective", dest="objective_option", default=None, metavar="OBJECTIVE",
                        help="the objective expression, as an option instead of positionally")
    _add_model_arguments(parser)
    _add_image_arguments(parser, batch_size=8)
    parser.add_argument("--stop-early", action="store_true",
                        help="stop each forward pass after the deepest target layer")
    parser.add_argument("--out", default="render.png",
                        help="output PNG (a grid of the batch); with --transparency also "
                             "OUT_rgba.png (the map as alpha) and OUT_transparency.npy (the raw "
                             "(B, 3, H, W) map)")
    parser.add_argument("--save-at", default=None, metavar="N,N,...",
                        help="also write the grid after these step counts, as OUT_0032.png ...")
    parser.set_defaults(run=run)


def add_accentuate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``accentuate`` options to ``parser``; ``args.run`` becomes :func:`run_accentuate`."""
    parser.add_argument("photo", metavar="PHOTO",
                        help="the photograph to start from (PNG, JPEG, ...; converted to RGB; "
                             "cropped about its centre to a square of --size pixels); with "
                             "--batch-size B, every sample starts from it (for a per-sample "
                             "objective)")
    parser.add_argument("expression", metavar="OBJECTIVE",
                        help="objective expression or LAYER:CHANNEL, as for fastobj render")
    _add_model_arguments(parser)
    _add_image_arguments(parser, batch_size=1, size=224)
    parser.add_argument("--anchor-layer", default=None, metavar="LAYER",
                        help="the layer whose activations stay near the photograph's (default: "
                             "the objective's first layer)")
    parser.add_argument("--anchor-weight", type=float, default=1.0, metavar="ALPHA",
                        help="weight of the anchor after automatic balancing (default 1; 0 "
                             "turns it off)")
    parser.add_argument("--stop-early", action="store_true",
                        help="stop each forward pass after the deepest layer used")
    parser.add_argument("--out", default="accentuated.png",
                        help="output PNG: the photograph, then each accentuated image")
    parser.set_defaults(run=run_accentuate, save_at=None)


def add_layers_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``layers`` options to ``parser``; ``args.run`` becomes :func:`run_layers`."""
    _add_model_arguments(parser)
    parser.add_argument("--size", type=int, default=224,
                        help="input side when the model declares no input size (default 224)")
    parser.set_defaults(run=run_layers)


def add_atlas_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``atlas`` options to ``parser``; ``args.run`` becomes :func:`run_atlas`."""
    parser.add_argument("layer", metavar="LAYER", nargs="?", default=None,
                        help="the layer, e.g. _blocks.10 (or --layers)")
    parser.add_argument("--layers", default=None, metavar="L1,L2,...|all",
                        help="instead of LAYER: several layers in turn, each into its own "
                             "folder of --out, with an index page over them; 'all' takes "
                             "every layer with a (C,) or (C, H, W) output")
    parser.add_argument("--channels", default=None, metavar="SPEC",
                        help="channels: START:STOP ranges and numbers, comma separated "
                             "(default: all; with --layers, each layer keeps those it has)")
    _add_model_arguments(parser)
    _add_image_arguments(parser, batch_size=16)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="atlas directory (index.html, images, CSV, grid; "
                             "transparency/ with --transparency); a rerun resumes it")
    parser.set_defaults(run=run_atlas)


def load_model(spec: str) -> nn.Module:
    """The model of a name in :data:`~fastobj.render.models.NAMED_MODELS`, or import
    ``"package.module:attr"`` and return the module it names or builds.

    ``attr`` may be dotted (``"pkg.mod:Factory.build"``). If it names an ``nn.Module`` object,
    that object is used; otherwise it is called without arguments and must return one.
    """
    if spec in NAMED_MODELS:
        try:
            return NAMED_MODELS[spec]()
        except ImportError as exc:
            raise UsageError(f"--model {spec!r}: {exc}") from None
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise UsageError(f"--model {spec!r}: expected a name ({', '.join(NAMED_MODELS)}) or "
                         "an import path 'package.module:callable'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # an import runs arbitrary code: report any failure
        raise UsageError(f"--model {spec!r}: cannot import {module_name!r}: "
                         f"{type(exc).__name__}: {exc}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"--model {spec!r}: {module_name!r} has no attribute "
                             f"{attr_path!r}") from None
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise UsageError(f"--model {spec!r}: {attr_path!r} is neither an nn.Module nor "
                             "callable")
        try:
            obj = obj()
        except Exception as exc:
            raise UsageError(f"--model {spec!r}: calling {attr_path}() failed: "
                             f"{type(exc).__name__}: {exc}") from None
    if not isinstance(obj, nn.Module):
        raise UsageError(f"--model {spec!r}: {attr_path}() returned a {type(obj).__name__}, "
                         "not an nn.Module")
    return obj


def load_weights(model: nn.Module, path: str) -> None:
    """Load a state_dict file (optionally wrapped as ``{"state_dict": ...}``) into ``model``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"--weights {path!r}: no such file") from None
    except Exception as exc:
        detail = _first_line(exc, 160)
        if "weights only load failed" in detail.lower():
            detail = ("it is not a file of tensors that torch.load(weights_only=True) accepts, "
                      "or it holds other Python objects")
        raise UsageError(f"--weights {path!r}: cannot load it: {detail}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"--weights {path!r}: holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise UsageError(f"--weights {path!r}: does not fit the model: "
                         f"{_first_line(exc)}") from None


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _error(message: str, command: str = "render") -> int:
    print(f"fastobj {command}: error: {message}", file=sys.stderr)
    return 2


def _prepare_model(args: argparse.Namespace):
    """The model (weights loaded, on its device), the device and the preprocessing."""
    if args.model_size is not None and args.model_size < 1:
        raise UsageError(f"--model-size must be at least 1, got {args.model_size}")
    if args.normalize != "model":
        try:  # checked before the model is imported
            parse_normalize(args.normalize)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--normalize {args.normalize!r}: {exc}") from None
    model = load_model(args.model)
    if args.weights:
        load_weights(model, args.weights)
    device = args.device or default_device()
    try:
        device = torch.device(device)
        model = model.to(device)
    except Exception as exc:
        raise UsageError(f"--device {args.device!r}: {_first_line(exc)}") from None
    return model, device, model_preprocess(model, args.model_size, args.normalize)


def _check_counts(args: argparse.Namespace) -> None:
    for name, value, low in (("--batch-size", args.batch_size, 1), ("--steps", args.steps, 0),
                             ("--size", args.size, 1), ("--scale", args.scale, 1),
                             ("--views", args.views, 1), ("--max-batch", args.max_batch, 1)):
        if value is not None and value < low:
            raise UsageError(f"{name} must be at least {low}, got {value}")


def _render_options(args: argparse.Namespace) -> dict:
    """The :func:`~fastobj.render.render` arguments that the image options set."""
    return dict(image_size=args.size, steps=args.steps, seed=args.seed, param=args.param,
                lr=args.lr, optimizer=args.optimizer, views=args.views,
                max_batch="auto" if args.max_batch is None else args.max_batch,
                channels_last=False if args.no_channels_last else None,
                transparency=args.transparency, decorrelate=not args.no_decorrelate)


def _save_at(spec: Optional[str], steps: int) -> List[int]:
    if spec is None:
        return []
    try:
        values = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--save-at {spec!r}: expected step counts such as 32,128,512") \
            from None
    bad = [v for v in values if not 0 <= v <= steps]
    if bad:
        raise UsageError(f"--save-at {spec!r}: {bad} outside 0..{steps} (--steps)")
    return values


def _prepare(args: argparse.Namespace):
    if args.expression is not None and args.objective_option is not None:
        raise UsageError("give the objective either positionally or with --objective, not both")
    expression = args.expression if args.expression is not None else args.objective_option
    if expression is None:
        if args.model != DEFAULT_MODEL:
            raise UsageError("no objective given (positional OBJECTIVE or --objective)")
        expression = DEFAULT_DEMO_OBJECTIVE
    _check_counts(args)
    save_at = _save_at(args.save_at, args.steps)
    try:
        objective = parse_objective(expression)  # checked before any model code runs
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    model, device, preprocess = _prepare_model(args)
    try:
        check_targets(model, targets_of(objective))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return model, objective, device, preprocess, save_at


def _write_grid(images: torch.Tensor, path: str, scale: int) -> None:
    save_png(upscale(make_grid(images), scale), path)


def _write_transparency(result: Any, out: str, scale: int) -> List[str]:
    """``OUT_rgba.png`` (the grid with each image's map as alpha) and
    ``OUT_transparency.npy`` (the raw summed gradients); returns the paths written."""
    import numpy as np

    stem, _ = os.path.splitext(out)
    alpha = transparency_alpha(result.transparency).unsqueeze(1)
    rgba = torch.cat([result.images.clamp(0, 1), alpha], dim=1)
    grid = upscale(make_grid(rgba), scale)
    png, npy = f"{stem}_rgba.png", f"{stem}_transparency.npy"
    save_rgba_png(grid[:3], grid[3], png)
    np.save(npy, result.transparency.numpy())
    return [png, npy]


def _summary(out: str, result: Any, device: torch.device, extra: List[str]) -> str:
    b, _, h, w = result.images.shape
    last = f"{result.history[-1]:.4g}" if result.history else "n/a"
    per_step = result.seconds / max(result.steps, 1)
    also = f" (and {', '.join(extra)})" if extra else ""
    return (f"wrote {out}{also}: {b} images of {h}x{w}, {result.steps} steps of {result.views} "
            f"view(s) each on {device} in {result.seconds:.1f} s ({per_step * 1e3:.0f} ms/step), "
            f"final loss {last}")


def run(args: argparse.Namespace) -> int:
    """Run ``fastobj render`` with parsed ``args``; returns the exit status."""
    try:
        model, objective, device, preprocess, save_at = _prepare(args)
    except UsageError as exc:
        return _error(str(exc))
    stem, ext = os.path.splitext(args.out)

    def numbered(step: int) -> str:
        return f"{stem}_{step:04d}{ext or '.png'}"

    def write_when_asked(step: int, loss: torch.Tensor, images: torch.Tensor) -> None:
        if step in save_at:  # written as soon as reached, to watch a long render
            _write_grid(images.cpu(), numbered(step), args.scale)

    try:
        result = render(model, objective, batch_size=args.batch_size, device=device,
                        preprocess=preprocess, stop_early=args.stop_early,
                        progress=not args.no_progress, thresholds=[0] if 0 in save_at else [],
                        callback=write_when_asked if save_at else None, **_render_options(args))
        if 0 in save_at:
            _write_grid(result.intermediate[0], numbered(0), args.scale)
        _write_grid(result.images, args.out, args.scale)
        extra = _write_transparency(result, args.out, args.scale) if args.transparency else []
    except KeyboardInterrupt:
        print("fastobj render: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        return _error(f"--out {args.out!r}: {exc.strerror or exc}")
    except (ValueError, IndexError) as exc:  # the objective does not fit the model's outputs
        return _error(_first_line(exc))
    print(_summary(args.out, result, device, extra))
    return 0


def run_accentuate(args: argparse.Namespace) -> int:
    """Run ``fastobj accentuate``: start from a photograph and push the objective, with an
    anchor keeping a layer near the photograph's activations."""
    try:
        _check_counts(args)
        photo = load_pictures([args.photo], args.size)  # a bad file stops here, before the model
        try:
            objective = parse_objective(args.expression)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        model, device, preprocess = _prepare_model(args)
        try:
            check_targets(model, targets_of(objective)
                          + ([args.anchor_layer] if args.anchor_layer else []))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    except ImageFileError as exc:
        return _error(str(exc), "accentuate")
    except UsageError as exc:
        return _error(str(exc), "accentuate")
    options = _render_options(args)
    options["image_size"] = tuple(photo.shape[-2:])
    try:
        result = render(model, objective, batch_size=args.batch_size, device=device,
                        preprocess=preprocess, stop_early=args.stop_early,
                        progress=not args.no_progress, start=photo,
                        anchor_layer=args.anchor_layer, anchor_weight=args.anchor_weight,
                        **options)
        _write_grid(torch.cat([photo, result.images]), args.out, args.scale)
        extra = _write_transparency(result, args.out, args.scale) if args.transparency else []
    except KeyboardInterrupt:
        print("fastobj accentuate: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        return _error(f"--out {args.out!r}: {exc.strerror or exc}", "accentuate")
    except (ValueError, IndexError) as exc:
        return _error(_first_line(exc), "accentuate")
    print(_summary(args.out, result, device, extra))
    return 0


def run_layers(args: argparse.Namespace) -> int:
    """Run ``fastobj layers``: print every submodule with its output shape."""
    try:
        if args.size < 1:
            raise UsageError(f"--size must be at least 1, got {args.size}")
        model, _, preprocess = _prepare_model(args)
    except UsageError as exc:
        return _error(str(exc), "layers")
    size = preprocess.size or (args.size, args.size)
    print(f"# {args.model}: input 3x{size[0]}x{size[1]}; shapes are (channels, height, width)")
    print(format_layers(list_layers(model, size, preprocess)))
    return 0


def _start_distributed(device: torch.device) -> tuple:
    """Join the ``torchrun`` process group (from WORLD_SIZE etc.) if there is one.

    Returns ``(device, started)``: each rank's CUDA device is ``cuda:LOCAL_RANK``. The barrier
    at the end may wait while other ranks render, hence the long timeout.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device, False
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            timeout=timedelta(hours=24))
    return device, True


def run_atlas(args: argparse.Namespace) -> int:
    """Run ``fastobj atlas``: one image per channel of a layer (or of each of ``--layers``),
    a grid, a CSV and a page; resumable."""
    from .atlas import render_atlas
    from .atlas_layers import render_layer_atlases
    from .atlas_page import PAGE_FILE

    try:
        if (args.layer is None) == (args.layers is None):
            raise UsageError("give one layer (LAYER) or several (--layers L1,L2,...|all), "
                             "not both")
        _check_counts(args)
        model, device, preprocess = _prepare_model(args)
        if args.layer is not None:
            check_targets(model, [args.layer])
    except (UsageError, ValueError) as exc:
        return _error(str(exc), "atlas")
    device, started = _start_distributed(device)
    rank = int(os.environ.get("RANK", "0")) if started else 0
    model = model.to(device)
    identity = {"model": args.model, "weights": args.weights, "normalize": args.normalize,
                "model_size": args.model_size}
    options = dict(_render_options(args), batch_size=args.batch_size, preprocess=preprocess,
                   device=device, scale=args.scale, progress=not args.no_progress,
                   identity=identity, command=getattr(args, "command_line", None))
    try:
        if options.pop("optimizer") is not None:
            raise ValueError("--optimizer is not an atlas option (the recipe's is used)")
        if args.layers is not None:
            atlases = render_layer_atlases(model, args.layers, args.out, args.channels,
                                           title=args.model, **options)
        else:
            atlases = {args.layer: render_atlas(model, args.layer, args.out, args.channels,
                                                **options)}
    except KeyboardInterrupt:
        print("fastobj atlas: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:
        return _error(_first_line(exc), "atlas")
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()
    rendered = sum(atlas.rendered for atlas in atlases.values())
    seconds = sum(atlas.seconds for atlas in atlases.values())
    rate = f" ({rendered / seconds * 60:.1f} channels/min)" if rendered else ""
    done = f"rendered {rendered} channels in {seconds:.1f} s{rate}"
    if rank:
        print(f"rank {rank}: {done}")
        return 0
    for layer, atlas in atlases.items():
        above = sum(e.activation > e.grey_activation for e in atlas.entries)
        print(f"{len(atlas.entries)} channels of {layer}, {above} above their grey-image "
              "activation")
    page = os.path.join(args.out, PAGE_FILE)
    print(f"wrote {args.out} (open {page}): this process {done}")
    return 0
