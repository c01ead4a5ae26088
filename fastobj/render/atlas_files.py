"""The files of an atlas directory, shared by the renderer (:mod:`.atlas`) and the page
(:mod:`.atlas_page`)::

    atlas.json                     the settings (a rerun with other settings is refused)
    command.txt                    the command lines that rendered into it (not compared)
    images/channel_0017.png        each channel's image
    transparency/channel_0017.png  its transparency map as alpha (``transparency=True``)
    thumbs/                        the page's small copies of both
    batches/batch_00002.pt         each finished batch: channels, activations, images
    atlas.csv, atlas.png           every channel's numbers, the labelled grid (when all are done)
    index.html                     the page
"""
from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["SETTINGS_FILE", "COMMAND_FILE", "CSV_FILE", "GRID_FILE", "PAGE_FILE", "IMAGES_DIR",
           "TRANSPARENCY_DIR", "THUMBS_DIR", "BATCHES_DIR", "AtlasEntry", "batch_path",
           "image_name"]

SETTINGS_FILE = "atlas.json"
COMMAND_FILE = "command.txt"
CSV_FILE = "atlas.csv"
GRID_FILE = "atlas.png"
PAGE_FILE = "index.html"
IMAGES_DIR = "images"
TRANSPARENCY_DIR = "transparency"
THUMBS_DIR = "thumbs"
BATCHES_DIR = "batches"


@dataclass
class AtlasEntry:
    """One channel of an atlas: its final and its grey-image mean activation."""

    channel: int
    activation: float
    grey_activation: float


def image_name(channel: int) -> str:
    """The file name of a channel's image (in :data:`IMAGES_DIR` and :data:`TRANSPARENCY_DIR`)."""
    return f"channel_{channel:04d}.png"


def batch_path(out_dir: str, k: int) -> str:
    """The record of batch ``k``."""
    return os.path.join(out_dir, BATCHES_DIR, f"batch_{k:05d}.pt")
