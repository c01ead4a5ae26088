"""How a render's cost grows with the batch B and the views K, and what batching buys.

    python -m fastobj.benchmarks.render_throughput --model efficientnet_lite0 \\
        --objective "ChannelActivation('_blocks.10', 0)" --batch-sizes 1,8 --views 1,4,8

For every (B, K) it times render steps (after one warm-up step, which pays for allocation and
the model's first pass) and prints the time per step, per view (a step over ``K·B``: constant
when the cost is linear in ``K·B``) and the images per minute of a whole render of
``--render-steps`` steps. The objective is made per sample when it names one channel:
``ChannelActivation(layer, c)`` becomes channels ``c, c+1, ..., c+B-1``, one per image, as an
atlas renders them. ``--max-batch`` and ``--channels-last`` are render's options of the same
names (``auto``: render's default for the device).

Times are wall-clock and process CPU time; the load average is printed with them, since on a
shared machine only a run next to a quiet load average compares with another.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import List

import torch

from fastobj.objectives import ChannelActivation
from fastobj.render import parse_objective, render
from fastobj.render.cli import load_model


def _per_sample(objective, batch: int):
    """``ChannelActivation(layer, c)`` as channels c .. c+batch-1, one per image."""
    if isinstance(objective, ChannelActivation) and objective.batch_index is None:
        first = int(objective.channel_index)
        return ChannelActivation(objective.target, list(range(first, first + batch)))
    return objective


def _ints(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--objective", default="ChannelActivation('_blocks.10', 0)")
    parser.add_argument("--param", default="fft", choices=("fft", "pixel", "maco"))
    parser.add_argument("--size", type=int, default=None, help="image side (default: recipe)")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--views", default="1")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per point")
    parser.add_argument("--render-steps", type=int, default=256,
                        help="steps of the whole render the images/min column assumes")
    parser.add_argument("--max-batch", default="auto",
                        help="model inputs per forward pass: N, all, or auto (render's default)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    max_batch = (None if args.max_batch == "all" else
                 args.max_batch if args.max_batch == "auto" else int(args.max_batch))
    channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
    base = parse_objective(args.objective)
    print(f"# {args.model}, {args.param}, {torch.get_num_threads()} threads, "
          f"channels_last={args.channels_last}, max_batch={args.max_batch}, load average "
          f"{os.getloadavg()[0]:.1f} at the start")
    print("| B | K | ms/step | ms/view | CPU ms/step | images/min |")
    print("|---|---|---|---|---|---|")
    for batch in _ints(args.batch_sizes):
        objective = _per_sample(base, batch)
        for views in _ints(args.views):
            stamps = []

            def stamp(state):
                stamps.append((time.perf_counter(), time.process_time()))

            render(model, objective, param=args.param, batch_size=batch, image_size=args.size,
                   steps=args.steps + 1, views=views, max_batch=max_batch,
                   channels_last=channels_last,
                   stop_early=True, progress=False,
                   callbacks=[stamp])
            wall = (stamps[-1][0] - stamps[0][0]) / args.steps
            cpu = (stamps[-1][1] - stamps[0][1]) / args.steps
            per_minute = batch * 60 / (wall * args.render_steps)
            print(f"| {batch} | {views} | {wall * 1e3:.0f} | {wall * 1e3 / (batch * views):.1f} "
                  f"| {cpu * 1e3:.0f} | {per_minute:.2f} |", flush=True)
    print(f"# load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
