"""``fastobj render``: render feature visualizations of a model from the command line.

Example (the built-in demo CNN, 6 images of 96x96, written as one PNG grid)::

    fastobj render "ChannelActivation('features.6', 3)" --batch-size 6 --size 96 \\
        --steps 128 --out render.png

Usage errors (a model import path that does not resolve, a weights file that cannot be loaded,
an expression outside the accepted grammar, a target that names no submodule, an objective that
does not fit its layer's activations, such as a channel index past the layer's channels) print
one line to stderr and exit with status 2, without a traceback.

The PNG is written by :mod:`fastobj.render.png` (zlib + the Paeth filter), so no imaging
library is needed.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

import torch
from torch import nn

from ..loss import targets_of
from .expression import parse_objective
from .png import make_grid, save_png
from .runner import _check_target_names, render

__all__ = ["add_arguments", "run", "make_grid", "save_png", "load_model", "DEFAULT_MODEL"]

DEFAULT_MODEL = "fastobj.render.demo:demo_cnn"
DEFAULT_DEMO_OBJECTIVE = "ChannelActivation('features.6', 3)"


class UsageError(Exception):
    """A problem with the command's inputs: reported in one line, exit status 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``render`` options to ``parser`` and make ``args.run`` this module's :func:`run`."""
    parser.add_argument(
        "expression", nargs="?", default=None, metavar="OBJECTIVE",
        help="objective expression, e.g. \"ChannelActivation('features.3', 5) + "
             "0.1 * Diversity('features.3')\"; the target 'image' is the rendered image. "
             f"Default with the demo model: \"{DEFAULT_DEMO_OBJECTIVE}\"")
    parser.add_argument("--objective", dest="objective_option", default=None, metavar="OBJECTIVE",
                        help="the objective expression, as an option instead of positionally")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="MODULE:CALLABLE",
                        help="import path of a callable returning the nn.Module (or of the module "
                             f"object itself); default {DEFAULT_MODEL} (small random CNN)")
    parser.add_argument("--weights", default=None, metavar="FILE",
                        help="state_dict file to load into the model (torch.load, weights_only)")
    parser.add_argument("--batch-size", type=int, default=8, help="images rendered (default 8)")
    parser.add_argument("--steps", type=int, default=256, help="optimizer steps (default 256)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    parser.add_argument("--param", choices=("fft", "pixel"), default="fft",
                        help="image parameterization (default fft)")
    parser.add_argument("--no-decorrelate", action="store_true",
                        help="optimize RGB directly instead of decorrelated colour channels")
    parser.add_argument("--stop-early", action="store_true",
                        help="stop each forward pass after the deepest target layer")
    parser.add_argument("--device", default=None,
                        help="device to run on (default: cuda if available, else cpu)")
    parser.add_argument("--out", default="render.png", help="output PNG (a grid of the batch)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run)


def load_model(spec: str) -> nn.Module:
    """Import ``"package.module:attr"`` and return the module it names or builds.

    ``attr`` may be dotted (``"pkg.mod:Factory.build"``). If it names an ``nn.Module`` object,
    that object is used; otherwise it is called without arguments and must return one.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise UsageError(f"--model {spec!r}: expected an import path 'package.module:callable'")
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


def _error(message: str) -> int:
    print(f"fastobj render: error: {message}", file=sys.stderr)
    return 2


def _prepare(args: argparse.Namespace):
    if args.expression is not None and args.objective_option is not None:
        raise UsageError("give the objective either positionally or with --objective, not both")
    expression = args.expression if args.expression is not None else args.objective_option
    if expression is None:
        if args.model != DEFAULT_MODEL:
            raise UsageError("no objective given (positional OBJECTIVE or --objective)")
        expression = DEFAULT_DEMO_OBJECTIVE
    for name, value, low in (("--batch-size", args.batch_size, 1), ("--steps", args.steps, 0),
                             ("--size", args.size, 1)):
        if value < low:
            raise UsageError(f"{name} must be at least {low}, got {value}")
    try:
        objective = parse_objective(expression)  # checked before any model code runs
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    model = load_model(args.model)
    if args.weights:
        load_weights(model, args.weights)
    try:
        _check_target_names(model, targets_of(objective))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
        model = model.to(device)
    except Exception as exc:
        raise UsageError(f"--device {args.device!r}: {_first_line(exc)}") from None
    return model, objective, device


def run(args: argparse.Namespace) -> int:
    """Run ``fastobj render`` with parsed ``args``; returns the exit status."""
    try:
        model, objective, device = _prepare(args)
    except UsageError as exc:
        return _error(str(exc))
    try:
        result = render(model, objective, batch_size=args.batch_size, image_size=args.size,
                        steps=args.steps, lr=args.lr, seed=args.seed, device=device,
                        param=args.param, decorrelate=not args.no_decorrelate,
                        stop_early=args.stop_early, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("fastobj render: interrupted", file=sys.stderr)
        return 130
    except (ValueError, IndexError) as exc:  # the objective does not fit the model's outputs
        return _error(_first_line(exc))
    try:
        save_png(make_grid(result.images), args.out)
    except OSError as exc:
        return _error(f"--out {args.out!r}: {exc.strerror or exc}")
    last = f"{result.history[-1]:.4g}" if result.history else "n/a"
    per_step = result.seconds / max(result.steps, 1)
    print(f"wrote {args.out}: {args.batch_size} images of {args.size}x{args.size}, "
          f"{result.steps} steps on {device} in {result.seconds:.1f} s "
          f"({per_step * 1e3:.0f} ms/step), final loss {last}")
    return 0
