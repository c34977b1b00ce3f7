"""facegen.common.images: untrusted bytes -> RGB, or a rejection with the right status."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegen.common.images import FORMAT_EXT, ImageRejected, decode_image, looks_like_html, read_image, sha256_hex

CAP = 50_000_000


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def rejected(data: bytes, **kw: object) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, **{"max_pixels": CAP, **kw})  # type: ignore[arg-type]
    return info.value


def test_empty_html_and_garbage_are_not_images():
    assert rejected(b"").status == "not_an_image"
    html = rejected(b"  \n<!DOCTYPE html><html><body>404</body></html>")
    assert html.status == "not_an_image" and "HTML" in html.reason
    assert rejected(b"<?xml version='1.0'?><svg/>").status == "not_an_image"
    garbage = rejected(b"\x00\x01 definitely not a picture" * 10)
    assert garbage.status == "not_an_image" and "not a supported image format" in garbage.reason
    assert looks_like_html(b"<html>") and not looks_like_html(b"\xff\xd8\xff")


def test_unsupported_format_is_not_an_image():
    ico = encode(Image.new("RGB", (16, 16)), "ICO")
    assert rejected(ico).status == "not_an_image"


def test_truncated_jpeg_is_corrupt():
    rng = np.random.default_rng(0)
    jpeg = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    err = rejected(jpeg[: len(jpeg) // 2])
    assert err.status == "corrupt" and "truncated" in err.reason


def test_pixel_cap_is_checked_from_the_header_before_decoding():
    png = encode(Image.new("L", (300, 200)), "PNG")
    err = rejected(png, max_pixels=59_999)
    assert err.status == "too_large" and "300x200" in err.reason and "max_pixels=59999" in err.reason
    assert decode_image(png, max_pixels=60_000).rgb.shape == (200, 300, 3)


def test_body_size_cap():
    png = encode(Image.new("RGB", (8, 8)), "PNG")
    assert rejected(png, max_bytes=len(png) - 1).status == "too_large"
    assert decode_image(png, max_pixels=CAP, max_bytes=len(png)).width == 8


@pytest.mark.parametrize(
    ("mode", "colour", "fmt", "rgb"),
    [
        ("CMYK", (0, 255, 255, 0), "JPEG", (255, 0, 0)),  # cyan-free, full magenta + yellow = red
        ("L", 128, "PNG", (128, 128, 128)),
        ("RGBA", (0, 0, 255, 0), "PNG", (255, 255, 255)),  # fully transparent -> white background
        ("RGBA", (0, 0, 255, 255), "PNG", (0, 0, 255)),
        ("LA", (0, 128), "PNG", (127, 127, 127)),  # half-transparent black over white
        ("1", 1, "PNG", (255, 255, 255)),
    ],
)
def test_modes_become_rgb(mode, colour, fmt, rgb):
    img = decode_image(encode(Image.new(mode, (16, 8), colour), fmt), max_pixels=CAP)
    assert img.rgb.shape == (8, 16, 3) and img.rgb.dtype == np.uint8
    np.testing.assert_allclose(img.rgb[4, 8], rgb, atol=3)


def test_palette_with_transparency_and_16_bit_gray():
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    p.putpixel((0, 0), 0)  # palette entry 0 is transparent
    rgb = decode_image(encode(p, "PNG", transparency=0), max_pixels=CAP).rgb
    np.testing.assert_array_equal(rgb[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(rgb[1, 1], [200, 10, 10])
    deep = Image.fromarray(np.full((4, 4), 65535 // 2, dtype=np.uint16))  # 32767 / 65535 * 255 = 127.5 -> 127
    np.testing.assert_array_equal(decode_image(encode(deep, "PNG"), max_pixels=CAP).rgb[0, 0], [127, 127, 127])


def test_animated_gif_keeps_its_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    img = decode_image(gif.getvalue(), max_pixels=CAP)
    assert (img.format, img.ext, img.n_frames) == ("GIF", "gif", 2)
    assert tuple(img.rgb[5, 5]) == (255, 0, 0)


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 10, 20))  # white stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    img = decode_image(encode(im, "JPEG", exif=exif, quality=95), max_pixels=CAP)
    assert img.rgb.shape == (40, 20, 3)
    assert img.rgb[2, 10].mean() > 200 and img.rgb[-3, 10].mean() < 50  # the stripe is now on top


def test_real_photos_from_shared(faces_dir: Path):
    wild = faces_dir / "wild"
    t1 = decode_image((wild / "insightface__inspireface_bulk_image_T1.jpeg").read_bytes(), max_pixels=CAP)
    assert (t1.width, t1.height, t1.ext) == (480, 640, "jpg")  # stored 640x480 with EXIF orientation 6
    webp = decode_image((wild / "insightface__inspireface_RD_d2.webp").read_bytes(), max_pixels=CAP)
    assert (webp.format, webp.ext, webp.rgb.shape) == ("WEBP", "webp", (789, 500, 3))
    rgba = wild / "facerec__tests_32bit.png"
    assert Image.open(rgba).mode == "RGBA"
    np.testing.assert_array_equal(read_image(rgba), np.asarray(Image.open(rgba).convert("RGB")))  # opaque alpha


def test_read_image_matches_decode(tmp_path):
    data = encode(Image.new("RGB", (12, 7), (1, 2, 3)), "PNG")
    (tmp_path / "x.png").write_bytes(data)
    np.testing.assert_array_equal(read_image(tmp_path / "x.png"), decode_image(data, max_pixels=CAP).rgb)


def test_helpers():
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert FORMAT_EXT["JPEG"] == FORMAT_EXT["MPO"] == "jpg"
    with pytest.raises(ValueError, match="max_pixels"):
        decode_image(b"x", max_pixels=0)
