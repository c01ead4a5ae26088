"""The ``fastobj`` command: ``fastobj bench`` and ``fastobj render``."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    from .benchmarks import cli as bench_cli
    from .render import cli as render_cli

    parser = argparse.ArgumentParser(prog="fastobj", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench_cli.add_arguments(commands.add_parser(
        "bench", help="benchmark fastobj against the classic algorithms and torch.compile"))
    render_cli.add_arguments(commands.add_parser(
        "render", help="render feature visualizations of a model"))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
