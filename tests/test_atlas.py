"""Tests of whole-layer atlases: the files written, resuming, refusals, and the channels split
over two gloo ranks started as ``torchrun`` starts them (RANK, WORLD_SIZE, MASTER_ADDR, ...).

The demo CNN, 16-pixel images and a few steps keep every case to about a second of CPU.
"""
from __future__ import annotations

import argparse
import csv
import os
import socket
import struct

import pytest
import torch

from _ranks import run_ranks
from fastobj.render import cli as render_cli
from fastobj.render import demo_cnn, render_atlas
from fastobj.render.atlas import parse_channels
from fastobj.render.png import LABEL_HEIGHT

LAYER = "features.6"
OPTIONS = dict(batch_size=2, image_size=16, steps=6, lr=0.1, seed=4, progress=False)
LAUNCH_TIMEOUT = 60  # seconds for the two ranks, start-up included


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _png_size(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_parse_channels():
    assert parse_channels(None, 4) == [0, 1, 2, 3]
    assert parse_channels("0:3,7, 9:", 11) == [0, 1, 2, 7, 9, 10]
    assert parse_channels("5", 6) == [5]
    for spec, message in (("0:7", "outside"), ("1,1", "twice"), ("a", "START:STOP"),
                          ("3:3", "none selected"), ("-1", "outside")):
        with pytest.raises(ValueError, match=message):
            parse_channels(spec, 6)


def test_atlas_writes_files_and_resumes(tmp_path):
    model = demo_cnn()
    out = str(tmp_path / "atlas")
    first = render_atlas(model, LAYER, out, "3:8", scale=2, **OPTIONS)
    assert first.rendered == 5 and [e.channel for e in first.entries] == [3, 4, 5, 6, 7]
    rows = _csv(os.path.join(out, "atlas.csv"))
    assert [int(r["channel"]) for r in rows] == [3, 4, 5, 6, 7]
    for row, entry in zip(rows, first.entries):
        assert float(row["activation"]) == pytest.approx(entry.activation, rel=1e-5)
        assert float(row["grey_activation"]) == pytest.approx(entry.grey_activation, rel=1e-5)
    # The grey baseline is the channel's mean on a mid-grey image, without preprocessing.
    acts = {}
    handle = model.features[6].register_forward_hook(lambda m, i, o: acts.update(out=o))
    model(torch.full((1, 3, 16, 16), 0.5))
    handle.remove()
    grey = acts["out"][0].double().mean(dim=(1, 2))
    assert [e.grey_activation for e in first.entries] == pytest.approx(grey[3:8].tolist())
    assert sum(e.activation > e.grey_activation for e in first.entries) >= 4
    for channel in range(3, 8):
        assert _png_size(os.path.join(out, "images", f"channel_{channel:04d}.png")) == (16, 16)
    # 5 tiles: 3 per row, 2 rows, each with a label row; then doubled.
    width, height = 3 * 18 + 2, 2 * (16 + LABEL_HEIGHT + 2) + 2
    assert _png_size(os.path.join(out, "atlas.png")) == (2 * width, 2 * height)

    again = render_atlas(model, LAYER, out, "3:8", scale=2, **OPTIONS)
    assert again.rendered == 0 and again.entries == first.entries
    os.remove(os.path.join(out, "batches", "batch_00001.pt"))  # channels 5 and 6
    os.remove(os.path.join(out, "atlas.csv"))
    resumed = render_atlas(model, LAYER, out, "3:8", scale=2, **OPTIONS)
    assert resumed.rendered == 2
    for a, b in zip(resumed.entries, first.entries):  # batch 1 starts from the same seed
        assert a.channel == b.channel and a.activation == pytest.approx(b.activation, rel=1e-4)
    assert _no_hooks(model)

    with pytest.raises(ValueError, match="steps"):
        render_atlas(model, LAYER, out, "3:8", **dict(OPTIONS, steps=7))


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _run_atlas(argv):
    parser = argparse.ArgumentParser()
    render_cli.add_atlas_arguments(parser)
    args = parser.parse_args(argv)
    return args.run(args)


ATLAS_ARGV = [LAYER, "--channels", "0:5", "--batch-size", "2", "--size", "16", "--steps", "4",
              "--seed", "2", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("argv, message", [
    (["features.60", "--out", "x"], "features.60"),
    ([LAYER, "--channels", "0:99", "--out", "x"], "outside"),
    ([LAYER, "--batch-size", "0", "--out", "x"], "--batch-size"),
    ([LAYER, "--normalize", "1,2,3", "--out", "x"], "--normalize"),
])
def test_atlas_command_refuses(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _run_atlas(argv + ["--steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "fastobj atlas" in err and "Traceback" not in err


def _rank(rank, world, port, out):
    """One rank, with the environment torchrun gives it, running the atlas command."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    code = _run_atlas(ATLAS_ARGV + ["--out", out])
    os._exit(code)  # skip the interpreter's slow teardown; the results are on disk


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_atlas_split_over_two_gloo_ranks(tmp_path, capsys):
    shared = str(tmp_path / "two_ranks")
    run_ranks(_rank, (2, _free_port(), shared), 2, LAUNCH_TIMEOUT,
              preload=["torch", "torch.distributed", "torch._dynamo", "fastobj.render",
                       __name__])
    # 3 batches: rank 0 renders batches 0 and 2, rank 1 batch 1; rank 0 writes the summary.
    assert sorted(os.listdir(os.path.join(shared, "batches"))) == [
        "batch_00000.pt", "batch_00001.pt", "batch_00002.pt"]
    assert os.path.exists(os.path.join(shared, "atlas.png"))
    single = str(tmp_path / "one_process")
    assert _run_atlas(ATLAS_ARGV + ["--out", single]) == 0
    assert "5 channels of features.6" in capsys.readouterr().out
    split, whole = _csv(os.path.join(shared, "atlas.csv")), _csv(os.path.join(single,
                                                                              "atlas.csv"))
    assert [r["channel"] for r in split] == [r["channel"] for r in whole] == list("01234")
    for a, b in zip(split, whole):
        assert float(a["activation"]) == pytest.approx(float(b["activation"]), rel=1e-4)
        assert float(a["grey_activation"]) == pytest.approx(float(b["grey_activation"]),
                                                            rel=1e-6)
