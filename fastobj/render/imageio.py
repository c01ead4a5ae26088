"""Reading photographs and writing PNGs, with Pillow.

* :func:`load_image` reads a PNG, JPEG (or any other file Pillow reads) as a ``(3, H, W)``
  float32 tensor in ``[0, 1]``, or raises one :class:`ImageFileError` that names the file and
  what is wrong with it.
* :func:`save_png` and :func:`save_rgba_png` write 8-bit RGB and RGBA PNGs.
* :func:`write_atomically` is how they write: through a temporary file in the target's folder,
  renamed over the target only once it is complete, so a failed write leaves no half file.
"""
from __future__ import annotations

import os
import uuid
import warnings
from typing import Any, Callable, Union

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = ["ImageFileError", "load_image", "save_png", "save_rgba_png", "write_atomically",
           "DEFAULT_MAX_PIXELS"]

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image :func:`load_image` decodes by default: 50 megapixels (600 MB as float32)."""

_SIXTEEN_BIT_GRAY = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("LA", "PA", "RGBA")
_CONVERTIBLE = ("RGB", "1", "L", "P", "CMYK", "YCbCr")


class ImageFileError(ValueError):
    """An image file that cannot be used: missing, unreadable, corrupt, too large or of an
    unsupported pixel mode. The message names the file and the problem."""


def _fail(path: PathLike, problem: str) -> ImageFileError:
    return ImageFileError(f"load_image: {os.fspath(path)!r}: {problem}")


def load_image(path: PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Read an image file as a ``(3, H, W)`` float32 tensor with values in ``[0, 1]``.

    The size is checked from the file's header before the pixels are decoded: an image of more
    than ``max_pixels`` pixels (default :data:`DEFAULT_MAX_PIXELS`, 50 megapixels) is refused,
    so a small file that decompresses to a huge image costs nothing. A JPEG's EXIF orientation
    is applied, so the tensor is upright as a viewer shows it. An animated file gives its first
    frame.

    Pixel modes (as Pillow names them), and what becomes of each:

    * ``RGB`` (also from 16-bit-per-channel PNGs, which Pillow reads at 8 bits per channel):
      taken as is, ``value / 255``.
    * grayscale ``L`` and bilevel ``1``: the gray copied into all three channels.
    * 16-bit grayscale ``I;16`` (16-bit PNGs and TIFFs): ``value / 65535``, copied into three
      channels.
    * 32-bit float grayscale ``F`` (TIFF): taken as is when every value is finite and in
      ``[0, 1]``; refused otherwise, since the file does not say what its range is.
    * 32-bit integer grayscale ``I``: refused (no fixed range); save it as 8 or 16 bits.
    * palette ``P``: looked up in its palette; with a transparent colour it is treated as RGBA.
    * with alpha (``RGBA``, ``LA``, ``PA``, or a PNG's transparent colour): composited over
      white, ``rgb * alpha + (1 - alpha)``; a fully opaque image is therefore unchanged.
    * ``CMYK`` (print JPEGs and TIFFs) and ``YCbCr`` (TIFFs): converted by Pillow's fixed
      formulas, ignoring any colour profile, so CMYK colours are approximate.
    * any other mode (e.g. ``LAB`` TIFFs): refused.

    Every problem raises :class:`ImageFileError` (a ``ValueError``): a missing file, a folder,
    a file that is not an image, a truncated or corrupt one, one over ``max_pixels``, or a
    refused mode. Nothing is ever written.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"load_image: max_pixels must be a positive int, got {max_pixels!r}")
    try:
        with warnings.catch_warnings():
            # The size check below is ours; Pillow's own bomb warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise _fail(path, f"{width}x{height} is {width * height:,} pixels, more than "
                                      f"max_pixels={max_pixels:,}")
                image.load()
                return _to_tensor(ImageOps.exif_transpose(image), path)
    except ImageFileError:
        raise
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "is a folder, not an image file") from None
    except PermissionError:
        raise _fail(path, "permission denied") from None
    except Image.DecompressionBombError as error:
        raise _fail(path, f"too large for Pillow ({error})") from None
    except Image.UnidentifiedImageError:
        raise _fail(path, "not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise _fail(path, f"truncated or corrupt ({error})") from None


def _to_tensor(image: Image.Image, path: PathLike) -> torch.Tensor:
    """The decoded ``image`` as ``(3, H, W)`` float32 in ``[0, 1]``, per :func:`load_image`'s
    table of modes."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_GRAY or mode == "F":
        gray = np.array(image, dtype=np.float32)
        if mode in _SIXTEEN_BIT_GRAY:
            gray = gray / 65535.0
        elif not (np.isfinite(gray).all() and gray.min() >= 0.0 and gray.max() <= 1.0):
            raise _fail(path, "32-bit float pixels outside [0, 1] (their range is unknown); "
                              "save it as 8 or 16 bits")
        return torch.from_numpy(gray).expand(3, -1, -1).clone()
    if mode in _ALPHA_MODES or (mode in _CONVERTIBLE and image.has_transparency_data):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        rgb = rgba[..., :3] * alpha + (1.0 - alpha)
    elif mode in _CONVERTIBLE:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    elif mode == "I":
        raise _fail(path, "32-bit integer pixels (mode I) have no fixed range; "
                          "save it as 8 or 16 bits")
    else:
        raise _fail(path, f"unsupported pixel mode {mode!r}; convert it to RGB")
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def write_atomically(path: PathLike, write: Callable[[str], Any]) -> None:
    """Call ``write(temporary)`` to write a new file at a temporary path in ``path``'s folder,
    then rename it to ``path``. Readers never see half a file, and if ``write`` fails the
    temporary file is removed and ``path`` is left as it was."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _to_uint8(values: torch.Tensor) -> np.ndarray:
    """``values`` in [0, 1] (clamped) as rounded 8-bit integers, on the CPU."""
    return (values.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _check_tensor(function: str, name: str, value: Any, shape: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{function}: {name} must be a {shape} tensor, got "
                        f"{type(value).__name__}")


def _check_color_image(function: str, image: Any) -> None:
    _check_tensor(function, "image", image, "(3, H, W)")
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"{function}: image must be a (3, H, W) tensor, got shape "
                         f"{tuple(image.shape)}")


def save_png(image: torch.Tensor, path: PathLike) -> None:
    """Write a ``(3, H, W)`` image with values in [0, 1] as an 8-bit RGB PNG (atomically)."""
    _check_color_image("save_png", image)
    pixels = Image.fromarray(np.ascontiguousarray(_to_uint8(image).transpose(1, 2, 0)))
    write_atomically(path, lambda temporary: pixels.save(temporary, format="PNG"))


def save_rgba_png(image: torch.Tensor, alpha: torch.Tensor, path: PathLike) -> None:
    """Write a ``(3, H, W)`` colour image and an ``(H, W)`` alpha map, both with values in
    [0, 1], as an 8-bit RGBA PNG (atomically). Alpha 1 is opaque."""
    _check_color_image("save_rgba_png", image)
    _check_tensor("save_rgba_png", "alpha", alpha, "(H, W)")
    if alpha.shape != image.shape[1:]:
        raise ValueError(f"save_rgba_png: alpha must be an (H, W) = {tuple(image.shape[1:])} "
                         f"tensor to match the image, got shape {tuple(alpha.shape)}")
    rgba = np.concatenate([_to_uint8(image), _to_uint8(alpha)[None]])
    pixels = Image.fromarray(np.ascontiguousarray(rgba.transpose(1, 2, 0)))
    write_atomically(path, lambda temporary: pixels.save(temporary, format="PNG"))
