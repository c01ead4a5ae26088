"""The ``fastobj`` command: ``fastobj bench``, ``render``, ``accentuate``, ``layers`` and
``atlas``."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .benchmarks import cli as bench_cli
    from .render import cli as render_cli

    parser = argparse.ArgumentParser(prog="fastobj", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fastobj {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    bench_cli.add_arguments(commands.add_parser(
        "bench", help="benchmark fastobj against the classic algorithms and torch.compile"))
    render_cli.add_arguments(commands.add_parser(
        "render", help="render feature visualizations of a model"))
    render_cli.add_accentuate_arguments(commands.add_parser(
        "accentuate", help="start from a photograph and accentuate what a unit sees in it"))
    render_cli.add_layers_arguments(commands.add_parser(
        "layers", help="list a model's layers with their output shapes"))
    render_cli.add_atlas_arguments(commands.add_parser(
        "atlas", help="render every channel of a layer (or of several): images, a labelled grid, a CSV, "
              "a web page"))
    return parser


def _import_from_working_directory() -> None:
    """Let ``--model package.module:factory`` find modules in the current directory.

    ``python -m fastobj`` puts the working directory first on ``sys.path``; the ``fastobj``
    console script puts its own bin directory there instead. Adding the working directory makes
    both commands import the same user modules.
    """
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def main(argv: Optional[Sequence[str]] = None) -> int:
    _import_from_working_directory()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = ["fastobj", *argv]  # as typed, for the records of a run (atlas page)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
