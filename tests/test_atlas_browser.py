"""The atlas pages in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, over ``file://``, as a person opens them from disk.

One small atlas of two layers of the demo CNN (``fastobj atlas --layers``, a few seconds of
CPU), with transparency maps written by the test for two channels, then, from the pages' DOM:
the model index links both layers; on a layer page every tile's image loads, sorting by
activation follows the CSV's values, the filter hides the right tiles, the enlarged view
opens with the full-size image, the transparency map where there is one, and the command;
nothing is requested outside the atlas folder and no script error is raised. Skipped, with
the reason, where Chromium or Playwright is absent (CI installs both).
"""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from PIL import Image

from fastobj.benchmarks.atlas_page import chromium_missing, launch_chromium
from fastobj.cli import main as fastobj_main
from fastobj.render.atlas_page import write_atlas_page

if chromium_missing():
    pytest.skip(chromium_missing(), allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402  (after the skip)

LAYER = "features.6"
WITH_MAPS = (1, 4)
ARGV = ["atlas", "--layers", f"features.3,{LAYER}", "--channels", "0:6", "--batch-size",
        "3", "--size", "16", "--steps", "3", "--seed", "1", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("browser") / "model")
    assert fastobj_main(ARGV + ["--out", out]) == 0
    layer_dir = os.path.join(out, LAYER)
    os.makedirs(os.path.join(layer_dir, "transparency"))
    rng = np.random.default_rng(0)
    for channel in WITH_MAPS:
        rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
        Image.fromarray(rgba, "RGBA").save(
            os.path.join(layer_dir, "transparency", f"channel_{channel:04d}.png"))
    write_atlas_page(layer_dir)
    return out


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, atlas):
    """A fresh page that records every request outside the atlas and every script error."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    outside, errors = [], []
    root = "file://" + os.path.abspath(atlas)
    page.on("request", lambda r: r.url.startswith(root) or outside.append(r.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert outside == [] and errors == []


def _tile_order(page):
    """The channels of the tiles laid out on the page (not hidden), in their order."""
    return page.eval_on_selector_all(
        ".tile", "tiles => tiles.filter(t => t.getClientRects().length > 0)"
                 ".map(t => Number(t.dataset.channel))")


def _all_loaded(page, selector):
    page.wait_for_function(
        "s => [...document.querySelectorAll(s)].every(i => i.complete)", arg=selector)
    return page.eval_on_selector_all(selector, "imgs => imgs.map(i => i.naturalWidth)")


def test_model_index_links_each_layer_page(page, atlas):
    page.goto("file://" + os.path.abspath(os.path.join(atlas, "index.html")))
    links = page.eval_on_selector_all("td a", "as => as.map(a => a.textContent)")
    assert links == ["features.3", LAYER]
    assert all(width > 0 for width in _all_loaded(page, ".preview img"))
    page.click(f"text={LAYER}")
    page.wait_for_url("**/features.6/index.html")
    assert page.text_content("h1").startswith(f"Atlas of {LAYER}")
    assert "6 of 6 channels finished" in page.text_content("#progress")


def test_layer_page_tiles_sort_filter_and_enlarged_view(page, atlas):
    layer_dir = os.path.join(atlas, LAYER)
    with open(os.path.join(layer_dir, "atlas.csv")) as f:
        activation = {int(r["channel"]): float(r["activation"]) for r in csv.DictReader(f)}
    page.goto("file://" + os.path.abspath(os.path.join(layer_dir, "index.html")))
    widths = _all_loaded(page, ".tile img")
    assert len(widths) == 6 and all(width > 0 for width in widths)
    assert _tile_order(page) == [0, 1, 2, 3, 4, 5]

    page.select_option("#sort", "activation-desc")
    by_activation = sorted(activation, key=lambda c: -activation[c])
    assert by_activation != sorted(activation)  # the test can tell the orders apart
    assert _tile_order(page) == by_activation
    page.select_option("#sort", "activation-asc")
    assert _tile_order(page) == by_activation[::-1]
    page.select_option("#sort", "channel")

    page.fill("#filter", "1:4")
    assert _tile_order(page) == [1, 2, 3]
    assert page.text_content("#count") == "showing 3 of 6"
    page.fill("#filter", "5, 0")
    assert _tile_order(page) == [0, 5]
    page.fill("#filter", "x")
    assert page.get_attribute("#filter", "aria-invalid") == "true"
    assert _tile_order(page) == [0, 1, 2, 3, 4, 5]
    page.fill("#filter", "")

    page.click('.tile[data-channel="4"]')
    page.wait_for_selector("#view[open]")
    assert page.text_content("#view-title") == "channel 4"
    assert page.get_attribute("#view-image", "src") == "images/channel_0004.png"
    assert _all_loaded(page, "#view-image, #view-alpha-image") == [16, 16]  # full size
    assert page.is_visible("#view-alpha-image")
    assert page.text_content("#view-command").startswith("fastobj atlas --layers")
    assert 'layer: "features.6"' in page.text_content("#view-settings")
    page.keyboard.press("ArrowRight")
    assert page.text_content("#view-title") == "channel 5"
    assert not page.is_visible("#view-alpha-image")  # channel 5 has no map
    page.keyboard.press("Escape")
    assert page.eval_on_selector("#view", "v => v.open") is False

    page.check("#alpha")
    sources = page.eval_on_selector_all(".tile img", "imgs => imgs.map(i => i.src)")
    assert [("transparency_" in s) for s in sources] == [c in WITH_MAPS for c in range(6)]
    assert all(width > 0 for width in _all_loaded(page, ".tile img"))
