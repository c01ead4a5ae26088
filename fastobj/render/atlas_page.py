"""The atlas as a static web page: one page per layer, and an index page over several layers.

:func:`write_atlas_page` writes ``index.html`` into an atlas directory (see
:mod:`fastobj.render.atlas`): one tile per finished channel with its number and its final and
grey-image activations, sorting by channel or activation, a filter by channel number, and an
enlarged view with the full-size image, the channel's transparency map where the render left
one (``transparency/channel_0017.png``, an RGBA PNG), and the command and settings that made
the atlas. :func:`write_model_index` writes the index of a model's layer atlases.

The pages open offline from ``file://`` in any browser: their scripts and styles are inline,
the channel data is inline JSON (a browser refuses to fetch local files from a page opened
from disk), nothing is fetched, and a content security policy forbids anything else. The grid
shows small thumbnails (made with Pillow into ``thumbs/``, loaded as they scroll into view);
the full image is loaded only when its channel is enlarged, so a layer of 1,280 channels
stays quick to open.

The page is rebuilt from what is on disk (each finished batch's record, else the CSV), so an
interrupted or resumed atlas shows the channels finished so far. Every text from the atlas
(the layer's name, the settings, the command) reaches the page escaped: HTML-escaped in the
markup, and with ``<``, ``>`` and ``&`` escaped inside the inline JSON.
"""
from __future__ import annotations

import csv
import glob
import html
import json
import math
import os
import re
import shlex
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote

import torch
from PIL import Image

from .atlas_files import (
    BATCHES_DIR,
    COMMAND_FILE,
    CSV_FILE,
    GRID_FILE,
    IMAGES_DIR,
    PAGE_FILE,
    SETTINGS_FILE,
    THUMBS_DIR,
    TRANSPARENCY_DIR,
    AtlasEntry,
    image_name,
)
from .imageio import write_atomically

__all__ = ["PAGE_FILE", "COMMAND_FILE", "LAYERS_FILE", "THUMBNAIL_SIDE", "LayerAtlas",
           "finished_entries", "format_channels", "record_command", "write_atlas_page",
           "write_model_index"]

LAYERS_FILE = "layers.json"  # in a model directory: its layers, beside the index page
THUMBNAIL_SIDE = 96  # pixels: the longer side of a grid thumbnail (never enlarged)
PREVIEW_TILES = 8  # thumbnails per layer on the model index


def format_channels(channels: Sequence[int]) -> str:
    """The shortest ``START:STOP`` form of a channel list (what ``--channels`` accepts):
    ``[0, 1, 2, 7]`` gives ``"0:3,7"``."""
    parts: List[str] = []
    i = 0
    while i < len(channels):
        j = i
        while j + 1 < len(channels) and channels[j + 1] == channels[j] + 1:
            j += 1
        parts.append(f"{channels[i]}:{channels[j] + 1}" if j > i else str(channels[i]))
        i = j + 1
    return ",".join(parts)


def finished_entries(out_dir: str) -> Tuple[Dict[str, Any], List[AtlasEntry]]:
    """The atlas's settings and its finished channels, in the order of its channel list.

    A channel is finished when a batch record holds it (records are written last, whole) or,
    where the records were removed, when the CSV lists it.
    """
    path = os.path.join(out_dir, SETTINGS_FILE)
    if not os.path.exists(path):
        raise ValueError(f"finished_entries: {out_dir!r} is not an atlas directory (no "
                         f"{SETTINGS_FILE})")
    with open(path) as f:
        settings = json.load(f)
    found: Dict[int, AtlasEntry] = {}
    csv_path = os.path.join(out_dir, CSV_FILE)
    if os.path.exists(csv_path):
        with open(csv_path, newline="") as f:
            for row in csv.DictReader(f):
                entry = AtlasEntry(int(row["channel"]), float(row["activation"]),
                                   float(row["grey_activation"]))
                found[entry.channel] = entry
    for path in sorted(glob.glob(os.path.join(out_dir, BATCHES_DIR, "batch_*.pt"))):
        # Memory-mapped: only the small tensors read here leave the disk, not the images.
        record = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        for channel, activation, grey in zip(record["channels"].tolist(),
                                             record["activation"].tolist(),
                                             record["grey"].tolist()):
            found[channel] = AtlasEntry(channel, activation, grey)
    return settings, [found[c] for c in settings["channels"] if c in found]


def record_command(out_dir: str, argv: Sequence[str]) -> None:
    """Add the command line ``argv`` to the atlas's command file, unless it is the last one
    there. The page shows these lines; a resume does not compare them."""
    line = shlex.join(argv)
    path = os.path.join(out_dir, COMMAND_FILE)
    lines = _read_commands(out_dir)
    if not lines or lines[-1] != line:
        os.makedirs(out_dir, exist_ok=True)
        with open(path, "a") as f:
            f.write(line + "\n")


def _read_commands(out_dir: str) -> List[str]:
    path = os.path.join(out_dir, COMMAND_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def _thumbnail(source: str, target: str) -> None:
    """Write a copy of ``source`` no larger than :data:`THUMBNAIL_SIDE` (alpha kept), unless
    ``target`` is already newer."""
    if os.path.exists(target) and os.path.getmtime(target) >= os.path.getmtime(source):
        return
    with Image.open(source) as image:
        image.load()
        small = image.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    write_atomically(target, lambda tmp: small.save(tmp, format="PNG"))


def _finite(value: float) -> Optional[float]:
    """JSON has no NaN or infinity: such activations go to the page as null ("n/a")."""
    return value if math.isfinite(value) else None


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``</script>``, no markup."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _shown_settings(settings: Dict[str, Any]) -> Dict[str, Any]:
    return dict(settings, channels=format_channels(settings["channels"]))


def write_atlas_page(out_dir: str) -> str:
    """Write ``out_dir/index.html`` for the atlas in ``out_dir`` (finished channels so far) and
    the thumbnails it shows; returns the page's path."""
    settings, entries = finished_entries(out_dir)
    os.makedirs(os.path.join(out_dir, THUMBS_DIR), exist_ok=True)
    rows = []
    for entry in entries:
        name = image_name(entry.channel)
        _thumbnail(os.path.join(out_dir, IMAGES_DIR, name), os.path.join(out_dir, THUMBS_DIR, name))
        alpha = os.path.join(out_dir, TRANSPARENCY_DIR, name)
        has_alpha = os.path.exists(alpha)
        if has_alpha:
            _thumbnail(alpha, os.path.join(out_dir, THUMBS_DIR,
                                           f"transparency_{entry.channel:04d}.png"))
        rows.append([entry.channel, _finite(entry.activation),
                     _finite(entry.grey_activation), int(has_alpha)])
    layer = str(settings.get("layer", ""))
    data = {"channels": rows, "total": len(settings["channels"]),
            "settings": _shown_settings(settings), "commands": _read_commands(out_dir)}
    in_index = os.path.exists(os.path.join(out_dir, os.pardir, LAYERS_FILE))
    links = [f'<a href="{name}">{name}</a>' for name in (CSV_FILE, GRID_FILE, SETTINGS_FILE)
             if os.path.exists(os.path.join(out_dir, name))]
    if in_index:
        links.insert(0, '<a href="../index.html">all layers</a>')
    model = settings.get("model")
    page = _fill(_ATLAS_PAGE, TITLE=html.escape(f"{layer} · fastobj atlas"),
                 LAYER=html.escape(layer), MODEL=html.escape(f" of {model}" if model else ""),
                 LINKS=" · ".join(links), DATA=_script_json(data))
    path = os.path.join(out_dir, PAGE_FILE)
    write_atomically(path, lambda tmp: _write_text(tmp, page))
    return path


def _fill(template: str, **values: str) -> str:
    """``template`` with each ``@NAME@`` replaced by ``values[NAME]``, in one pass (a value
    that holds ``@OTHER@`` stays as it is)."""
    return re.sub(r"@([A-Z]+)@", lambda m: values.get(m.group(1), m.group(0)), template)


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


@dataclass
class LayerAtlas:
    """One layer of a model index: its name, its atlas's folder (relative to the index), its
    module type, its output shape without the batch axis, and its channels to render."""

    name: str
    folder: str
    kind: str
    shape: Tuple[int, ...]
    channels: int


def write_model_index(out_dir: str, layers: Sequence[LayerAtlas], title: str = "") -> str:
    """Write ``out_dir/index.html`` linking each layer's atlas page (``folder/index.html``),
    with its shape, its progress and a few of its thumbnails, and ``out_dir/layers.json``
    (which also tells each layer page to link back). The commands shown are those of
    ``out_dir/command.txt`` (:func:`record_command`). Returns the page's path."""
    os.makedirs(out_dir, exist_ok=True)

    def write_layers(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump({"title": title, "layers": [vars(layer) for layer in layers]}, f,
                      indent=1)

    write_atomically(os.path.join(out_dir, LAYERS_FILE), write_layers)
    rows = []
    finished_layers = 0
    for layer in layers:
        folder = os.path.join(out_dir, layer.folder)
        done, total, preview = 0, layer.channels, []
        if os.path.exists(os.path.join(folder, SETTINGS_FILE)):
            settings, entries = finished_entries(folder)
            done, total = len(entries), len(settings["channels"])
            preview = [e.channel for e in entries[:PREVIEW_TILES]]
        finished_layers += done == total
        href = html.escape(quote(layer.folder) + "/" + PAGE_FILE)
        thumbs = "".join(
            f'<img loading="lazy" alt="channel {c}" src="'
            f'{html.escape(quote(layer.folder))}/thumbs/{image_name(c)}">' for c in preview
            if os.path.exists(os.path.join(folder, THUMBS_DIR, image_name(c))))
        percent = 100 * done // max(total, 1)
        rows.append(
            f'<tr><td><a href="{href}">{html.escape(layer.name)}</a></td>'
            f"<td>{html.escape(layer.kind)}</td>"
            f"<td>{html.escape('×'.join(str(s) for s in layer.shape))}</td>"
            f'<td><progress max="{total}" value="{done}"></progress> {done} / {total}'
            f"{'' if done == total else f' ({percent}%)'}</td>"
            f'<td class="preview">{thumbs}</td></tr>')
    summary = f"{finished_layers} of {len(layers)} layers finished"
    page = _fill(_INDEX_PAGE,
                 TITLE=html.escape(f"{title} · fastobj atlas" if title else "fastobj atlas"),
                 HEADING=html.escape(title or "fastobj atlas"), SUMMARY=html.escape(summary),
                 COMMANDS=html.escape("\n".join(_read_commands(out_dir))) or "(not recorded)",
                 ROWS="\n".join(rows))
    path = os.path.join(out_dir, PAGE_FILE)
    write_atomically(path, lambda tmp: _write_text(tmp, page))
    return path


# Both pages: no fetch, no outside resource; images from the page's own folder only.
_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' file:;
 style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'">
<title>@TITLE@</title>
<style>
:root { color-scheme: dark; --tile: 96px; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #1b1c1f; color: #e4e4e4; }
header { position: sticky; top: 0; z-index: 1; padding: 10px 16px; background: #26282c;
         border-bottom: 1px solid #3a3d42; }
h1 { font-size: 18px; margin: 0 0 4px; }
a { color: #8cc4ff; }
.meta, .hint { color: #a9adb3; }
pre { white-space: pre-wrap; word-break: break-all; background: #141518; padding: 8px;
      margin: 4px 0; border-radius: 4px; }
.checker { background: repeating-conic-gradient(#777 0 25%, #bbb 0 50%) 0 0 / 12px 12px; }
</style>
"""

_ATLAS_PAGE = _HEAD + """<style>
.controls { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; margin-top: 6px; }
.controls input[type=text] { width: 12em; }
.controls input[aria-invalid=true] { outline: 2px solid #e06c6c; }
#grid { display: grid; gap: 8px; padding: 12px 16px;
        grid-template-columns: repeat(auto-fill, calc(var(--tile) + 12px)); }
.tile { display: block; padding: 5px; border: 1px solid #3a3d42; border-radius: 5px;
        background: #232529; color: inherit; font: inherit; text-align: left; cursor: pointer;
        content-visibility: auto; contain-intrinsic-size: auto 150px; }
.tile[hidden] { display: none; }
.tile:hover, .tile:focus-visible { border-color: #8cc4ff; }
.tile img { display: block; width: var(--tile); height: var(--tile); object-fit: contain;
            image-rendering: pixelated; background: #111; }
.tile .num { font-weight: 600; }
.tile .act, .tile .grey { display: block; font-size: 12px; color: #c8ccd2; }
.tile .grey { color: #8d9299; }
.tile.has-alpha .num::after { content: " α"; color: #e5c07b; }
#view { max-width: min(1100px, 96vw); background: #26282c; color: inherit;
        border: 1px solid #4a4d52; border-radius: 6px; }
#view::backdrop { background: rgba(0, 0, 0, 0.6); }
#view .body { display: flex; flex-wrap: wrap; gap: 16px; margin-top: 8px; }
#view .images { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
#view .text { flex: 1 1 320px; min-width: 0; }
#view .text p { margin-top: 0; }
#view figure { margin: 0; }
#view .images img { display: block; max-width: 45vw; image-rendering: pixelated; }
#view .bar { display: flex; gap: 8px; align-items: center; }
#view .bar h2 { flex: 1; margin: 0; font-size: 17px; }
</style>
</head>
<body>
<header>
<h1>Atlas of <code>@LAYER@</code>@MODEL@</h1>
<div class="meta"><span id="progress"></span> @LINKS@</div>
<div class="controls">
<label>Sort <select id="sort">
<option value="channel">by channel</option>
<option value="activation-desc">by activation, highest first</option>
<option value="activation-asc">by activation, lowest first</option>
<option value="gain-desc">by activation above grey, highest first</option>
</select></label>
<label>Channels <input id="filter" type="text" placeholder="e.g. 0:16,40" spellcheck="false"
 title="numbers and START:STOP ranges (STOP excluded), comma separated"></label>
<label id="alpha-toggle" hidden><input id="alpha" type="checkbox"> transparency maps</label>
<span id="count" class="hint"></span>
</div>
</header>
<main id="grid"></main>
<dialog id="view">
<div class="bar"><h2 id="view-title"></h2>
<button id="view-prev" type="button" title="previous (left arrow)">&larr;</button>
<button id="view-next" type="button" title="next (right arrow)">&rarr;</button>
<button id="view-close" type="button" title="close (Esc)">close</button></div>
<div class="body">
<div class="images">
<figure><img id="view-image" alt="full-size render"><figcaption>
<a id="view-link">full-size PNG</a></figcaption></figure>
<figure id="view-alpha" hidden><img id="view-alpha-image" class="checker"
 alt="transparency map"><figcaption>transparency map (RGBA, on a checkerboard)</figcaption>
</figure>
</div>
<div class="text">
<p id="view-numbers"></p>
<div>Made by:</div><pre id="view-command"></pre>
<div>Settings:</div><pre id="view-settings"></pre>
</div>
</div>
</dialog>
<script type="application/json" id="atlas-data">@DATA@</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("atlas-data").textContent);
const grid = document.getElementById("grid");
const view = document.getElementById("view");
const $ = (id) => document.getElementById(id);
const pad = (c) => String(c).padStart(4, "0");
const show = (v) => v === null ? "n/a" : String(Number(v.toPrecision(4)));
const tiles = data.channels.map(([c, a, g, t]) => {
  const el = document.createElement("button");
  el.type = "button";
  el.className = "tile" + (t ? " has-alpha" : "");
  el.dataset.channel = c;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.decoding = "async";
  img.alt = "channel " + c;
  img.src = "thumbs/channel_" + pad(c) + ".png";
  const num = document.createElement("span");
  num.className = "num";
  num.textContent = c;
  const act = document.createElement("span");
  act.className = "act";
  act.textContent = "act " + show(a);
  act.title = "mean activation on the render";
  const grey = document.createElement("span");
  grey.className = "grey";
  grey.textContent = "grey " + show(g);
  grey.title = "mean activation on a mid-grey image";
  el.append(img, num, act, grey);
  const tile = {c, a, g, t, el, img};
  el.addEventListener("click", () => openView(tile));
  return tile;
});
const last = (v, sign) => v === null ? Infinity : sign * v;
const orders = {
  "channel": (x, y) => x.c - y.c,
  "activation-desc": (x, y) => last(x.a, -1) - last(y.a, -1) || x.c - y.c,
  "activation-asc": (x, y) => last(x.a, 1) - last(y.a, 1) || x.c - y.c,
  "gain-desc": (x, y) => last(x.a === null || x.g === null ? null : x.a - x.g, -1)
                         - last(y.a === null || y.g === null ? null : y.a - y.g, -1) || x.c - y.c,
};
let shown = tiles;
let sortedBy = null;  // the order the grid holds the tiles in (none yet)
function parseFilter(text) {
  const tests = [];
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const range = /^(\\d*)\\s*:\\s*(\\d*)$/.exec(part);
    if (range) {
      const lo = range[1] === "" ? -Infinity : Number(range[1]);
      const hi = range[2] === "" ? Infinity : Number(range[2]);
      tests.push((c) => c >= lo && c < hi);
    } else if (/^\\d+$/.test(part)) {
      const n = Number(part);
      tests.push((c) => c === n);
    } else {
      return undefined;
    }
  }
  return tests.length ? (c) => tests.some((f) => f(c)) : null;
}
function update() {
  const keep = parseFilter($("filter").value);
  $("filter").setAttribute("aria-invalid", String(keep === undefined));
  const sorted = tiles.slice().sort(orders[$("sort").value]);
  shown = sorted.filter((t) => !keep || keep(t.c));
  for (const t of tiles) t.el.hidden = !!keep && !keep(t.c);
  if (sortedBy !== $("sort").value) {  // moving 1,280 tiles costs a layout: only to reorder
    grid.append(...sorted.map((t) => t.el));
    sortedBy = $("sort").value;
  }
  $("count").textContent = keep === undefined
    ? "use numbers and START:STOP ranges, comma separated"
    : "showing " + shown.length + " of " + tiles.length;
}
function useAlpha() {
  const on = $("alpha").checked;
  for (const t of tiles) {
    if (!t.t) continue;
    t.img.src = on ? "thumbs/transparency_" + pad(t.c) + ".png"
                   : "thumbs/channel_" + pad(t.c) + ".png";
    t.img.classList.toggle("checker", on);
  }
}
let current = null;
function openView(tile) {
  current = tile;
  const name = "channel_" + pad(tile.c) + ".png";
  $("view-title").textContent = "channel " + tile.c;
  const image = $("view-image");
  image.onload = () => { image.style.width = Math.max(image.naturalWidth, 256) + "px"; };
  image.src = "images/" + name;
  $("view-link").href = "images/" + name;
  const alpha = $("view-alpha-image");
  $("view-alpha").hidden = !tile.t;
  if (tile.t) {
    alpha.onload = () => { alpha.style.width = Math.max(alpha.naturalWidth, 256) + "px"; };
    alpha.src = "transparency/" + name;
  } else {
    alpha.removeAttribute("src");
  }
  const gain = tile.a === null || tile.g === null ? null : tile.a - tile.g;
  $("view-numbers").textContent = "mean activation " + show(tile.a) + " on the render, "
    + show(tile.g) + " on a mid-grey image (" + show(gain) + " above it)";
  if (!view.open) view.showModal();
}
function step(by) {
  const i = shown.indexOf(current);
  if (i >= 0 && shown.length) openView(shown[(i + by + shown.length) % shown.length]);
}
$("view-prev").addEventListener("click", () => step(-1));
$("view-next").addEventListener("click", () => step(1));
$("view-close").addEventListener("click", () => view.close());
view.addEventListener("keydown", (e) => {
  if (e.key === "ArrowLeft") step(-1);
  if (e.key === "ArrowRight") step(1);
});
view.addEventListener("click", (e) => { if (e.target === view) view.close(); });
$("view-command").textContent = data.commands.length ? data.commands.join("\\n")
  : "(not recorded: rendered through the Python API)";
$("view-settings").textContent = Object.entries(data.settings)
  .map(([k, v]) => k + ": " + JSON.stringify(v)).join("\\n");
$("progress").textContent = tiles.length + " of " + data.total + " channels finished"
  + (tiles.length < data.total ? " (rendering, or interrupted: reload to see more)" : "")
  + " ·";
$("alpha-toggle").hidden = !tiles.some((t) => t.t);
$("sort").addEventListener("change", update);
$("filter").addEventListener("input", update);
$("alpha").addEventListener("change", useAlpha);
update();
</script>
</body>
</html>
"""

_INDEX_PAGE = _HEAD + """<style>
main { padding: 12px 16px; }
table { border-collapse: collapse; }
td, th { padding: 6px 10px; border-bottom: 1px solid #3a3d42; text-align: left;
         vertical-align: middle; }
.preview img { width: 40px; height: 40px; margin-right: 2px; image-rendering: pixelated; }
</style>
</head>
<body>
<header><h1>@HEADING@</h1><div class="meta">@SUMMARY@; each layer links to its atlas.</div>
</header>
<main>
<table>
<thead><tr><th>layer</th><th>type</th><th>output shape</th><th>channels finished</th>
<th>first channels</th></tr></thead>
<tbody>
@ROWS@
</tbody>
</table>
<p>Made by:</p><pre>@COMMANDS@</pre>
</main>
</body>
</html>
"""
