"""fastobj.render.imageio: reading image files (every pixel mode, every kind of bad file) and
writing RGB/RGBA PNGs atomically. Every file is made by the test, a few pixels large."""
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from fastobj.render import ImageFileError, load_image, save_png, save_rgba_png
from fastobj.render.imageio import write_atomically

H, W = 5, 7  # odd and non-square, so a transposed result cannot pass


def _rng():
    return np.random.default_rng(7)


def _png(width, height, bit_depth, color_type, rows):
    """A PNG file's bytes, written by hand for what Pillow cannot write (16-bit colour) or
    should not decode (a header that promises a huge image)."""
    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def _as_rgb(array_hw3):
    return torch.from_numpy(array_hw3.astype(np.float32) / 255.0).permute(2, 0, 1)


def _over_white(rgba_hw4):
    rgba = rgba_hw4.astype(np.float32) / 255.0
    alpha = rgba[..., 3:]
    return torch.from_numpy(rgba[..., :3] * alpha + (1.0 - alpha)).permute(2, 0, 1)


# --- accepted modes: each file, and the tensor it must give ------------------------------------

def _rgb_png(folder):
    pixels = _rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "rgb.png")
    return folder / "rgb.png", _as_rgb(pixels)


def _gray_png(folder):
    gray = _rng().integers(0, 256, (H, W), dtype=np.uint8)
    Image.fromarray(gray).save(folder / "gray.png")
    return folder / "gray.png", _as_rgb(np.repeat(gray[..., None], 3, axis=2))


def _bilevel_png(folder):
    bits = _rng().integers(0, 2, (H, W)).astype(bool)
    Image.fromarray(bits).save(folder / "bits.png")
    return folder / "bits.png", torch.from_numpy(bits.astype(np.float32)).expand(3, H, W)


def _gray16_png(folder):
    gray = _rng().integers(0, 65536, (H, W)).astype(np.uint16)
    Image.fromarray(gray).save(folder / "gray16.png")
    return folder / "gray16.png", torch.from_numpy(gray.astype(np.float32) / 65535).expand(3, H, W)


def _float_tif(folder):
    gray = _rng().random((H, W), dtype=np.float32)
    Image.fromarray(gray).save(folder / "float.tif")
    return folder / "float.tif", torch.from_numpy(gray).expand(3, H, W)


def _palette_png(folder):
    palette = _rng().integers(0, 256, (4, 3), dtype=np.uint8)
    index = _rng().integers(0, 4, (H, W), dtype=np.uint8)
    image = Image.fromarray(index, mode="P")
    image.putpalette(palette.flatten().tolist())
    image.save(folder / "palette.png")
    return folder / "palette.png", _as_rgb(palette[index])


def _palette_transparent_png(folder):
    palette = _rng().integers(0, 256, (4, 3), dtype=np.uint8)
    index = _rng().integers(0, 4, (H, W), dtype=np.uint8)
    image = Image.fromarray(index, mode="P")
    image.putpalette(palette.flatten().tolist())
    image.save(folder / "palette_t.png", transparency=2)  # index 2 is fully transparent
    expected = palette[index].astype(np.float32) / 255
    expected[index == 2] = 1.0
    return folder / "palette_t.png", torch.from_numpy(expected).permute(2, 0, 1)


def _gray_alpha_png(folder):
    la = _rng().integers(0, 256, (H, W, 2), dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(folder / "la.png")
    rgba = np.concatenate([np.repeat(la[..., :1], 3, axis=2), la[..., 1:]], axis=2)
    return folder / "la.png", _over_white(rgba)


def _rgba_png(folder):
    rgba = _rng().integers(0, 256, (H, W, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(folder / "rgba.png")
    return folder / "rgba.png", _over_white(rgba)


def _opaque_rgba_png(folder):
    rgba = _rng().integers(0, 256, (H, W, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(folder / "opaque.png")
    return folder / "opaque.png", _as_rgb(rgba[..., :3])


def _rgb_transparent_colour_png(folder):
    pixels = _rng().integers(0, 200, (H, W, 3), dtype=np.uint8)
    pixels[1, 2] = (250, 251, 252)
    Image.fromarray(pixels).save(folder / "trns.png", transparency=(250, 251, 252))
    expected = _as_rgb(pixels)
    expected[:, 1, 2] = 1.0
    return folder / "trns.png", expected


def _rgb16_png(folder):
    pixels = _rng().integers(0, 65536, (H, W, 3)).astype(">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    (folder / "rgb16.png").write_bytes(_png(W, H, 16, 2, rows))
    return folder / "rgb16.png", _as_rgb(pixels >> 8)  # Pillow keeps the high byte


def _cmyk_jpeg(folder):
    Image.new("CMYK", (W, H), (255, 0, 0, 0)).save(folder / "cmyk.jpg", quality=100)
    return folder / "cmyk.jpg", torch.tensor([0.0, 1.0, 1.0])[:, None, None].expand(3, H, W)


def _ycbcr_tif(folder):
    Image.new("YCbCr", (W, H), (128, 128, 128)).save(folder / "ycbcr.tif")
    return folder / "ycbcr.tif", torch.full((3, H, W), 128 / 255)


def _rgb_jpeg(folder):
    Image.new("RGB", (W, H), (200, 40, 90)).save(folder / "rgb.jpg", quality=100)
    return folder / "rgb.jpg", torch.tensor([200, 40, 90])[:, None, None].expand(3, H, W) / 255


def _animated_gif(folder):
    frames = [Image.new("RGB", (W, H), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    return folder / "anim.gif", torch.tensor([1.0, 0.0, 0.0])[:, None, None].expand(3, H, W)


EXACT = [_rgb_png, _gray_png, _bilevel_png, _gray16_png, _float_tif, _palette_png,
         _palette_transparent_png, _gray_alpha_png, _rgba_png, _opaque_rgba_png,
         _rgb_transparent_colour_png, _rgb16_png, _animated_gif]
LOSSY = [_cmyk_jpeg, _ycbcr_tif, _rgb_jpeg]  # JPEG and colour conversions round


@pytest.mark.parametrize("make", EXACT + LOSSY, ids=lambda f: f.__name__.strip("_"))
def test_load_image_converts_mode(tmp_path, make):
    path, expected = make(tmp_path)
    image = load_image(path)
    assert image.dtype == torch.float32 and image.shape == (3, H, W)
    assert image.min() >= 0 and image.max() <= 1
    if make in EXACT:
        torch.testing.assert_close(image, expected, rtol=0, atol=1e-6)
    else:
        torch.testing.assert_close(image, expected, rtol=0, atol=3 / 255)


def test_load_image_applies_exif_orientation(tmp_path):
    # Stored 16 high x 32 wide, left half red, right half blue; orientation 6 says "rotate 90
    # degrees clockwise to view", so the viewer sees 32 high x 16 wide, red on top.
    pixels = np.zeros((16, 32, 3), dtype=np.uint8)
    pixels[:, :16, 0] = 255
    pixels[:, 16:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "turned.jpg", exif=exif, quality=100)
    image = load_image(tmp_path / "turned.jpg")
    assert image.shape == (3, 32, 16)
    red_top = torch.tensor([1.0, 0.0, 0.0])[:, None, None].expand(3, 12, 16)
    blue_bottom = torch.tensor([0.0, 0.0, 1.0])[:, None, None].expand(3, 12, 16)
    torch.testing.assert_close(image[:, :12], red_top, rtol=0, atol=0.05)
    torch.testing.assert_close(image[:, -12:], blue_bottom, rtol=0, atol=0.05)


# --- refused files: one ImageFileError naming the file and the problem -------------------------

def _missing(folder):
    return folder / "no_such.png", "no such file"


def _a_folder(folder):
    (folder / "pictures.png").mkdir()
    return folder / "pictures.png", "is a folder"


def _text_renamed(folder):
    (folder / "notes.png").write_text("not a picture\n")
    return folder / "notes.png", "not an image file"


def _empty_file(folder):
    (folder / "empty.jpg").write_bytes(b"")
    return folder / "empty.jpg", "not an image file"


def _noise_file(folder, suffix):
    """The bytes of a 50 x 40 noise image (it compresses badly, so it is a few KB) in the
    format of ``suffix``."""
    Image.fromarray(_rng().integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(
        folder / f"whole{suffix}")
    return (folder / f"whole{suffix}").read_bytes()


def _truncated_png(folder):
    data = _noise_file(folder, ".png")
    (folder / "cut.png").write_bytes(data[:len(data) // 2])
    return folder / "cut.png", "truncated or corrupt"


def _truncated_jpeg(folder):
    data = _noise_file(folder, ".jpg")
    (folder / "cut.jpg").write_bytes(data[:len(data) // 2])
    return folder / "cut.jpg", "truncated or corrupt"


def _corrupt_png(folder):
    data = bytearray(_noise_file(folder, ".png"))
    data[200] ^= 0xFF  # inside the compressed pixels
    (folder / "flipped.png").write_bytes(bytes(data))
    return folder / "flipped.png", "truncated or corrupt"


def _over_max_pixels(folder):
    # The header says 10000 x 6000 (60 megapixels, over the 50 MP default); the pixel data is
    # junk, so only a check made before decoding gives this message.
    (folder / "huge.png").write_bytes(_png(10000, 6000, 8, 2, b"\x00" * 64))
    return folder / "huge.png", "more than max_pixels=50,000,000"


def _over_pillow_limit(folder):
    (folder / "bomb.png").write_bytes(_png(20000, 20000, 8, 2, b"\x00" * 64))
    return folder / "bomb.png", "too large"


def _int32_tif(folder):
    Image.fromarray(np.arange(H * W, dtype=np.int32).reshape(H, W)).save(folder / "int.tif")
    return folder / "int.tif", "32-bit integer"


def _float_out_of_range_tif(folder):
    Image.fromarray(np.linspace(-1, 3, H * W, dtype=np.float32).reshape(H, W)).save(
        folder / "float_hdr.tif")
    return folder / "float_hdr.tif", "outside [0, 1]"


def _lab_tif(folder):
    Image.new("LAB", (W, H)).save(folder / "lab.tif")
    return folder / "lab.tif", "unsupported pixel mode 'LAB'"


@pytest.mark.parametrize("make", [
    _missing, _a_folder, _text_renamed, _empty_file, _truncated_png, _truncated_jpeg,
    _corrupt_png, _over_max_pixels, _over_pillow_limit, _int32_tif, _float_out_of_range_tif,
    _lab_tif], ids=lambda f: f.__name__.strip("_"))
def test_load_image_refuses_bad_file(tmp_path, make):
    path, problem = make(tmp_path)
    with pytest.raises(ImageFileError) as raised:
        load_image(path)
    message = str(raised.value)
    assert message.startswith(f"load_image: {str(path)!r}: ") and problem in message
    assert isinstance(raised.value, ValueError)


def test_load_image_max_pixels_is_inclusive(tmp_path):
    path, expected = _rgb_png(tmp_path)
    torch.testing.assert_close(load_image(path, max_pixels=H * W), expected, rtol=0, atol=1e-6)
    with pytest.raises(ImageFileError, match=f"{W}x{H} is {H * W} pixels"):
        load_image(path, max_pixels=H * W - 1)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "1000"])
def test_load_image_rejects_bad_max_pixels(tmp_path, bad):
    path, _ = _rgb_png(tmp_path)
    with pytest.raises(ValueError, match="load_image: max_pixels"):
        load_image(path, max_pixels=bad)


# --- writing -----------------------------------------------------------------------------------

def test_save_png_round_trip(tmp_path):
    image = torch.rand(3, H, W, dtype=torch.float64) * 1.2 - 0.1  # out-of-range values clamp
    save_png(image, tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == "RGB" and written.size == (W, H)
    expected = (image.float().clamp(0, 1) * 255).round().to(torch.uint8).float() / 255
    assert torch.equal(load_image(tmp_path / "out.png"), expected)


def test_save_rgba_png_round_trip(tmp_path):
    image, alpha = torch.rand(3, H, W), torch.rand(H, W)
    save_rgba_png(image, alpha, str(tmp_path / "out.png"))
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == "RGBA"
        pixels = torch.from_numpy(np.array(written)).permute(2, 0, 1)
    expected = (torch.cat([image, alpha[None]]) * 255).round().to(torch.uint8)
    assert torch.equal(pixels, expected)


@pytest.mark.parametrize("image, error", [
    (torch.rand(4, H, W), ValueError), (torch.rand(H, W), ValueError),
    (torch.rand(1, 3, H, W), ValueError), (np.zeros((3, H, W)), TypeError),
], ids=["4ch", "2d", "4d", "numpy"])
def test_save_png_rejects_bad_image(tmp_path, image, error):
    with pytest.raises(error, match="save_png: image must be a \\(3, H, W\\) tensor"):
        save_png(image, tmp_path / "out.png")
    with pytest.raises(error, match="save_rgba_png: image must be"):
        save_rgba_png(image, torch.rand(H, W), tmp_path / "out.png")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("alpha, error, message", [
    (torch.rand(W, H), ValueError, f"an \\(H, W\\) = \\({H}, {W}\\) tensor"),
    (torch.rand(1, H, W), ValueError, f"an \\(H, W\\) = \\({H}, {W}\\) tensor"),
    (None, TypeError, "a \\(H, W\\) tensor, got NoneType"),
], ids=["transposed", "3d", "none"])
def test_save_rgba_png_rejects_bad_alpha(tmp_path, alpha, error, message):
    with pytest.raises(error, match="save_rgba_png: alpha must be " + message):
        save_rgba_png(torch.rand(3, H, W), alpha, tmp_path / "out.png")
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "grid.png"
    save_png(torch.zeros(3, H, W), target)
    before = target.read_bytes()

    def half_then_fail(temporary):
        with open(temporary, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_then_fail)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["grid.png"]


def test_save_png_replaces_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "grid.png"
    save_png(torch.zeros(3, H, W), target)
    save_png(torch.ones(3, H + 1, W), target)
    assert os.listdir(tmp_path) == ["grid.png"]
    assert torch.equal(load_image(target), torch.ones(3, H + 1, W))


def test_save_png_into_missing_folder_fails_cleanly(tmp_path):
    with pytest.raises(FileNotFoundError):
        save_png(torch.zeros(3, H, W), tmp_path / "no_such_folder" / "out.png")
    assert os.listdir(tmp_path) == []
