"""How long an atlas page takes to open in headless Chromium, for a layer of many channels.

``python -m fastobj.benchmarks.atlas_page --tiles 1280`` writes a synthetic atlas of 1,280
channels (random 128x128 images, a batch record per 16 channels, as ``fastobj atlas`` leaves
them), times :func:`~fastobj.render.atlas_page.write_atlas_page` (from scratch, then again as
after each finished batch, thumbnails already made), then opens the page over ``file://`` in
a fresh browser context ``--repeat`` times and reports, from the page's own performance
entries, the time to DOMContentLoaded, to the load event, to first (contentful) paint, and
until every thumbnail on the first screen has loaded. ``--busy`` runs a busy Python process
beside the measurement.

It needs Chromium (Debian's ``chromium`` package) and the ``playwright`` package, which
drives that Chromium (it downloads no browser of its own). :func:`launch_chromium` is also the
browser test's way to start it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium_missing", "launch_chromium",
           "synthetic_atlas", "open_timings"]

CHROMIUM = "/usr/bin/chromium"
#: Headless, as root, and quiet: no sandbox (root), no GPU, nothing fetched in the background.
#: Playwright adds --headless and a fresh --user-data-dir of its own.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"]


def chromium_missing() -> Optional[str]:
    """Why Chromium cannot be driven here (None when it can)."""
    if not os.path.exists(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (it is in the test extra)"
    return None


def launch_chromium(playwright: Any) -> Any:
    """The system Chromium, headless, started through ``playwright``'s Chromium driver."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)


def synthetic_atlas(out_dir: str, channels: int, side: int = 128, batch_size: int = 16,
                    seed: int = 0) -> None:
    """An atlas directory as ``fastobj atlas`` leaves it (settings, images, batch records,
    CSV), with random images and activations, without rendering anything."""
    import csv
    import json

    import torch
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "batches"), exist_ok=True)
    order = list(range(channels))
    with open(os.path.join(out_dir, "atlas.json"), "w") as f:
        json.dump({"layer": "synthetic", "channels": order, "batch_size": batch_size,
                   "image_size": side, "steps": 0}, f)
    rows = []
    for k, start in enumerate(range(0, channels, batch_size)):
        index = torch.arange(start, min(start + batch_size, channels))
        # Smooth random images (noise upsampled), which compress like real renders.
        small = torch.rand(len(index), 3, side // 8, side // 8, generator=generator)
        images = torch.nn.functional.interpolate(small, size=(side, side), mode="bicubic")
        pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        for channel, image in zip(index.tolist(), pixels):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(
                os.path.join(out_dir, "images", f"channel_{channel:04d}.png"))
        activation = torch.randn(len(index), generator=generator, dtype=torch.float64) * 5 + 20
        grey = torch.randn(len(index), generator=generator, dtype=torch.float64)
        torch.save({"channels": index, "activation": activation, "grey": grey,
                    "images": pixels}, os.path.join(out_dir, "batches", f"batch_{k:05d}.pt"))
        rows += zip(index.tolist(), activation.tolist(), grey.tolist())
    with open(os.path.join(out_dir, "atlas.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["channel", "activation", "grey_activation"])
        writer.writerows([c, f"{a:.6g}", f"{g:.6g}"] for c, a, g in rows)


# Milliseconds since navigation start, read from the page once the first screen is loaded.
_TIMINGS_JS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = Object.fromEntries(performance.getEntriesByType("paint")
                                   .map((e) => [e.name, e.startTime]));
  return {dom_content_loaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
          first_paint: paint["first-paint"], first_contentful_paint:
          paint["first-contentful-paint"], tiles: document.querySelectorAll(".tile").length};
}"""

# Each image's load time, recorded by the page itself (file:// loads leave no resource timing).
_RECORD_LOADS_JS = """window.imageLoads = new Map();
document.addEventListener("load", (e) => {
  if (e.target.tagName === "IMG") window.imageLoads.set(e.target, performance.now());
}, true);"""

# When every thumbnail on the first screen has loaded, the last of their load times.
_FIRST_SCREEN_LOADED_JS = """() => {
  const seen = [...document.querySelectorAll(".tile img")].filter((img) => {
    const box = img.getBoundingClientRect();
    return box.bottom > 0 && box.top < innerHeight;
  });
  return seen.length > 0 && seen.every((img) => window.imageLoads.has(img))
    && Math.max(...seen.map((img) => window.imageLoads.get(img)));
}"""


# A control changed as a person changes it, until the next frame is drawn (ms).
_CONTROL_JS = """async ([id, value]) => {
  const control = document.getElementById(id);
  const start = performance.now();
  control.value = value;
  control.dispatchEvent(new Event(control.tagName === "SELECT" ? "change" : "input"));
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return performance.now() - start;
}"""


def open_timings(browser: Any, url: str) -> Dict[str, float]:
    """One opening of ``url`` in a fresh context (1280x800): the page's timings in ms."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.add_init_script(_RECORD_LOADS_JS)
        page.goto(url, wait_until="load")
        first_screen = page.wait_for_function(_FIRST_SCREEN_LOADED_JS, polling=100).json_value()
        timings = page.evaluate(_TIMINGS_JS)
        timings["first_screen_thumbnails"] = first_screen
        timings["sort_by_activation"] = page.evaluate(_CONTROL_JS, ["sort", "activation-desc"])
        timings["filter_0_100"] = page.evaluate(_CONTROL_JS, ["filter", "0:100"])
        return timings
    finally:
        context.close()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=1280, help="channels (default 1280)")
    parser.add_argument("--size", type=int, default=128, help="image side (default 128)")
    parser.add_argument("--repeat", type=int, default=5, help="openings (default 5)")
    parser.add_argument("--busy", action="store_true",
                        help="run a busy Python process beside the measurement")
    parser.add_argument("--dir", default=None, help="atlas directory (default: a temporary one)")
    args = parser.parse_args(argv)
    missing = chromium_missing()
    if missing:
        print(f"atlas_page: {missing}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    from fastobj.render.atlas_page import write_atlas_page

    out_dir = args.dir or tempfile.mkdtemp(prefix="atlas_page_")
    if not os.path.exists(os.path.join(out_dir, "atlas.json")):
        synthetic_atlas(out_dir, args.tiles, args.size)
    busy = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy
            else None)
    try:
        shutil.rmtree(os.path.join(out_dir, "thumbs"), ignore_errors=True)
        start = time.perf_counter()
        path = write_atlas_page(out_dir)
        first_write = time.perf_counter() - start
        start = time.perf_counter()
        write_atlas_page(out_dir)
        rewrite = time.perf_counter() - start
        runs = []
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                open_timings(browser, "file://" + os.path.abspath(path))  # warm-up, not kept
                runs = [open_timings(browser, "file://" + os.path.abspath(path))
                        for _ in range(args.repeat)]
            finally:
                browser.close()
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    print(f"# {runs[0]['tiles']} tiles of {args.size}x{args.size} ({path}, "
          f"{os.path.getsize(path) / 1024:.0f} KiB); load average "
          f"{os.getloadavg()[0]:.2f}{'; a busy process beside it' if args.busy else ''}")
    print(f"write_atlas_page: {first_write:.2f} s with its thumbnails, {rewrite:.2f} s again")
    print(f"opening in Chromium, ms after navigation start (then ms per control change to the "
          f"second frame drawn), median (min-max) of {args.repeat}:")
    for key in ("dom_content_loaded", "first_paint", "first_contentful_paint", "load",
                "first_screen_thumbnails", "sort_by_activation", "filter_0_100"):
        values = [run[key] for run in runs]
        print(f"  {key:<24} {statistics.median(values):7.0f} "
              f"({min(values):.0f}-{max(values):.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
