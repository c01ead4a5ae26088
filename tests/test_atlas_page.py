"""Tests of the atlas pages without a browser: what the layer page holds (finished channels,
activations, transparency maps, the command) on partial, resumed and whole atlases, that
every text reaches it escaped, the thumbnails, and the model index of ``--layers``.

The browser's side (images load, sorting, the filter, the enlarged view) is in
test_atlas_browser.py.
"""
from __future__ import annotations

import csv
import json
import os
import random
import re
import socket

import pytest
import torch
from PIL import Image

from _ranks import run_ranks
from fastobj.cli import main as fastobj_main
from fastobj.render import atlas as atlas_module
from fastobj.render import demo_cnn, render_atlas
from fastobj.render.atlas import parse_channels
from fastobj.render.atlas_layers import layer_folders, render_layer_atlases, select_layers
from fastobj.render.atlas_page import (
    THUMBNAIL_SIDE,
    finished_entries,
    format_channels,
    write_atlas_page,
)
from fastobj.render.models import list_layers

LAYER = "features.6"
OPTIONS = dict(batch_size=2, image_size=16, steps=3, lr=0.1, seed=5, progress=False)
HOSTILE = "</script><img src=x onerror=alert(1)>&amp;"


def page_data(out_dir):
    """The page's inline JSON, parsed as the page's script parses it."""
    text = open(os.path.join(out_dir, "index.html"), encoding="utf-8").read()
    found = re.search(r'<script type="application/json" id="atlas-data">(.*?)</script>',
                      text, re.S)
    return text, json.loads(found.group(1))


def test_format_channels_is_read_back_by_parse_channels():
    assert format_channels([0, 1, 2, 7]) == "0:3,7"
    assert format_channels([5]) == "5"
    generator = random.Random(3)
    for _ in range(20):
        picked = sorted(generator.sample(range(40), generator.randint(1, 39)))
        assert parse_channels(format_channels(picked), 40) == picked


def test_page_of_an_interrupted_then_resumed_atlas(tmp_path, monkeypatch):
    """The page is rewritten after each finished batch: an atlas stopped in its second batch
    shows the first batch's channels; resumed, all of them with the CSV's numbers. The model
    name and the command, hostile on purpose, appear only escaped."""
    out = str(tmp_path / "atlas")
    model = demo_cnn()
    render_batch = atlas_module._render_batch

    def stop_at_second_batch(model, layer, out_dir, k, *args, **kwargs):
        if k == 1:
            raise KeyboardInterrupt
        render_batch(model, layer, out_dir, k, *args, **kwargs)

    monkeypatch.setattr(atlas_module, "_render_batch", stop_at_second_batch)
    command = ["fastobj", "atlas", LAYER, "--out", HOSTILE]
    with pytest.raises(KeyboardInterrupt):
        render_atlas(model, LAYER, out, "3,9,4,8,5", identity={"model": HOSTILE},
                     command=command, **OPTIONS)
    text, data = page_data(out)
    assert HOSTILE not in text and "<img src=x" not in text and "</script><" not in text
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&amp;amp;" in text  # the title
    assert data["settings"]["model"] == HOSTILE and data["commands"][0].endswith(
        "'</script><img src=x onerror=alert(1)>&amp;'")
    record = torch.load(os.path.join(out, "batches", "batch_00000.pt"), weights_only=True)
    assert data["total"] == 5 and data["settings"]["channels"] == "3,9,4,8,5"
    assert [row[0] for row in data["channels"]] == [3, 9]
    assert [row[1] for row in data["channels"]] == pytest.approx(record["activation"].tolist())
    assert [row[2] for row in data["channels"]] == pytest.approx(record["grey"].tolist())
    assert sorted(os.listdir(os.path.join(out, "thumbs"))) == ["channel_0003.png",
                                                               "channel_0009.png"]

    monkeypatch.setattr(atlas_module, "_render_batch", render_batch)
    resumed = render_atlas(model, LAYER, out, "3,9,4,8,5", identity={"model": HOSTILE},
                           command=command, **OPTIONS)
    assert resumed.rendered == 3
    _, data = page_data(out)
    with open(os.path.join(out, "atlas.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [row[0] for row in data["channels"]] == [int(r["channel"]) for r in rows]
    assert [row[1] for row in data["channels"]] == pytest.approx(
        [float(r["activation"]) for r in rows], rel=1e-5)
    assert data["commands"] == [data["commands"][0]]  # the same command is recorded once
    assert [row[3] for row in data["channels"]] == [0] * 5  # no transparency maps


def test_page_reads_the_csv_without_records_and_shows_transparency_maps(tmp_path):
    """With the batch records removed the CSV still gives the tiles (a non-finite activation
    becomes null, which JSON allows); a transparency map is flagged, and thumbnailed with its
    alpha and aspect kept, only where its file exists."""
    out = str(tmp_path / "atlas")
    render_atlas(demo_cnn(), LAYER, out, "0:4", **OPTIONS)
    for name in os.listdir(os.path.join(out, "batches")):
        os.remove(os.path.join(out, "batches", name))
    with open(os.path.join(out, "atlas.csv")) as f:
        rows = list(csv.DictReader(f))
    rows[2]["activation"] = "nan"
    with open(os.path.join(out, "atlas.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.makedirs(os.path.join(out, "transparency"))
    pixels = torch.randint(0, 256, (120, 200, 4), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)).numpy()
    Image.fromarray(pixels, "RGBA").save(os.path.join(out, "transparency", "channel_0001.png"))
    write_atlas_page(out)
    _, data = page_data(out)
    assert [row[0] for row in data["channels"]] == [0, 1, 2, 3]
    assert data["channels"][2][1] is None and data["channels"][1][1] == pytest.approx(
        float(rows[1]["activation"]))
    assert [row[3] for row in data["channels"]] == [0, 1, 0, 0]
    with Image.open(os.path.join(out, "thumbs", "transparency_0001.png")) as thumb:
        assert thumb.mode == "RGBA" and thumb.size == (THUMBNAIL_SIDE, 58)  # 200x120 -> 96x58
    with Image.open(os.path.join(out, "thumbs", "channel_0001.png")) as thumb:
        assert thumb.size == (16, 16)  # never enlarged
    assert not os.path.exists(os.path.join(out, "thumbs", "transparency_0000.png"))
    settings, entries = finished_entries(out)
    assert settings["layer"] == LAYER and [e.channel for e in entries] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="not an atlas directory"):
        write_atlas_page(str(tmp_path))


def test_select_layers_and_folders():
    infos = list_layers(demo_cnn(), 16)
    assert [i.name for i in select_layers(infos, "all")] == [
        "features"] + [f"features.{i}" for i in range(8)] + ["pool", "classifier"]
    assert [i.name for i in select_layers(infos, " classifier,features.3")] == [
        "classifier", "features.3"]
    for spec, message in (("features.9", "not a submodule"), ("pool,pool", "twice"),
                          ("pool,", "comma separated")):
        with pytest.raises(ValueError, match=message):
            select_layers(infos, spec)
    assert layer_folders(["a/b", "a_b", ".x", "", "a_b"]) == ["a_b", "a_b_2", "x", "layer",
                                                                 "a_b_3"]


def test_model_index_over_layers_and_its_resume(tmp_path):
    """``--channels 0:12`` gives the 10-channel classifier its 10; the index links each
    layer's page with its shape and progress; a rerun renders nothing."""
    out = str(tmp_path / "model")
    model = demo_cnn()
    options = dict(OPTIONS, batch_size=6)
    results = render_layer_atlases(model, "features.3,classifier", out, "0:12",
                                   title="demo", **options)
    assert [len(r.entries) for r in results.values()] == [12, 10]
    index = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    assert '<a href="features.3/index.html">features.3</a>' in index
    assert '<a href="classifier/index.html">classifier</a>' in index
    assert "<td>24×8×8</td>" in index and "<td>10</td>" in index
    assert index.count('value="12"') == 1 and index.count('value="10"') == 1
    assert "2 of 2 layers finished" in index
    layer_page, data = page_data(os.path.join(out, "classifier"))
    assert '<a href="../index.html">all layers</a>' in layer_page
    assert len(data["channels"]) == data["total"] == 10
    again = render_layer_atlases(model, "features.3,classifier", out, "0:12", title="demo",
                                 **options)
    assert [r.rendered for r in again.values()] == [0, 0]
    with pytest.raises(ValueError, match="leave no channel of classifier"):
        render_layer_atlases(model, "features.3,classifier", str(tmp_path / "x"), "12:20",
                             **OPTIONS)


ARGV = ["atlas", "--channels", "0:3", "--batch-size", "3", "--size", "16", "--steps", "2",
        "--device", "cpu", "--no-progress"]


def test_atlas_command_layer_or_layers_and_the_recorded_command(tmp_path, capsys):
    for extra in ([], [LAYER, "--layers", LAYER]):
        assert fastobj_main(ARGV + extra + ["--out", str(tmp_path / "x")]) == 2
        assert "give one layer (LAYER) or several (--layers" in capsys.readouterr().err
    assert fastobj_main(ARGV + ["--layers", "features.9", "--out", str(tmp_path / "x")]) == 2
    assert "features.9" in capsys.readouterr().err
    out = str(tmp_path / "model")
    argv = ARGV + ["--layers", "features.1,features.5", "--out", out]
    assert fastobj_main(argv) == 0
    printed = capsys.readouterr().out
    assert "3 channels of features.1" in printed and "3 channels of features.5" in printed
    assert os.path.join(out, "index.html") in printed
    line = "fastobj " + " ".join(argv) + "\n"
    for folder in (out, os.path.join(out, "features.1"), os.path.join(out, "features.5")):
        assert open(os.path.join(folder, "command.txt")).read() == line
    _, data = page_data(os.path.join(out, "features.5"))
    assert data["commands"] == [line.strip()]


def _layers_rank(rank, world, port, out):
    """One rank, with the environment torchrun gives it, running ``fastobj atlas --layers``."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    os._exit(fastobj_main(ARGV + ["--batch-size", "1", "--layers", "features.1,features.5",
                                  "--out", out]))


def test_layers_shared_by_two_gloo_ranks(tmp_path):
    """Both ranks take the layers in the same order and share each layer's batches; rank 0
    writes pages that show every channel of both layers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "model")
    run_ranks(_layers_rank, (2, port, out), 2, 60,
              preload=["torch", "torch.distributed", "torch._dynamo", "fastobj.render",
                       __name__])
    index = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    assert "2 of 2 layers finished" in index
    for layer in ("features.1", "features.5"):
        assert len(os.listdir(os.path.join(out, layer, "batches"))) == 3
        _, data = page_data(os.path.join(out, layer))
        assert [row[0] for row in data["channels"]] == [0, 1, 2]
