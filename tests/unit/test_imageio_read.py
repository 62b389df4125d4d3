"""Reading photos: every format and colour mode, and a clear refusal for every bad file."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from lama_desktop.engine.base import EngineError
from lama_desktop.engine.imageio import ImageError, decode_image, read_image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def gradient(width: int = 64, height: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4 % 256, y * 5 % 256, (x + y) % 256], axis=2).astype(np.uint8)


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_formats_read_pixel_exact(fmt: str) -> None:
    pixels = gradient()
    picture = decode_image(encode(Image.fromarray(pixels), fmt), f"photo.{fmt.lower()}")
    assert picture.format == fmt
    assert picture.size == (64, 48)
    assert picture.rgb.dtype == np.uint8
    np.testing.assert_array_equal(picture.rgb, pixels)
    assert picture.alpha is None


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats_read_close(fmt: str) -> None:
    pixels = np.full((40, 30, 3), (200, 40, 90), np.uint8)
    picture = decode_image(encode(Image.fromarray(pixels), fmt, quality=95), "photo")
    assert picture.format == fmt
    assert picture.rgb.shape == (40, 30, 3)
    assert np.abs(picture.rgb.astype(int) - pixels).max() <= 4


def test_mpo_camera_jpeg_counts_as_jpeg() -> None:
    frames = [Image.new("RGB", (16, 8), (250, 0, 0)), Image.new("RGB", (16, 8), (0, 0, 250))]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    picture = decode_image(data, "camera.jpg")
    assert picture.format == "JPEG"
    assert picture.rgb[4, 8, 0] > 200  # the first picture, not the second


def test_exif_orientation_is_applied_and_cleared() -> None:
    pixels = np.zeros((2, 4, 3), np.uint8)
    pixels[:, :2] = (255, 0, 0)  # left half red, right half blue
    pixels[:, 2:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: the viewer turns it 90 degrees clockwise
    exif[0x010F] = "TestCam"
    picture = decode_image(encode(Image.fromarray(pixels), "PNG", exif=exif.tobytes()), "s.png")
    assert picture.size == (2, 4)
    np.testing.assert_array_equal(picture.rgb[:2, :, :], np.full((2, 2, 3), (255, 0, 0)))
    np.testing.assert_array_equal(picture.rgb[2:, :, :], np.full((2, 2, 3), (0, 0, 255)))
    assert picture.exif is not None
    kept = Image.Exif()
    kept.load(picture.exif)
    assert 0x0112 not in kept
    assert kept[0x010F] == "TestCam"


def test_grayscale_becomes_equal_channels() -> None:
    grey = gradient()[..., 0]
    picture = decode_image(encode(Image.fromarray(grey, mode="L"), "PNG"), "g.png")
    for channel in range(3):
        np.testing.assert_array_equal(picture.rgb[..., channel], grey)


def test_palette_image_and_its_transparency() -> None:
    image = Image.fromarray(gradient()).quantize(16)
    expected = np.array(image.convert("RGB"))
    picture = decode_image(encode(image, "PNG"), "p.png")
    np.testing.assert_array_equal(picture.rgb, expected)
    assert picture.alpha is None
    image.info["transparency"] = 0
    picture = decode_image(encode(image, "PNG", transparency=0), "pt.png")
    assert picture.alpha is not None
    np.testing.assert_array_equal(picture.alpha == 0, np.array(image) == 0)


def test_rgba_keeps_alpha() -> None:
    pixels = gradient()
    alpha = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    rgba = np.dstack([pixels, alpha])
    picture = decode_image(encode(Image.fromarray(rgba, mode="RGBA"), "PNG"), "a.png")
    np.testing.assert_array_equal(picture.rgb, pixels)
    np.testing.assert_array_equal(picture.alpha, alpha)


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100, 65535, 257 * 7]], dtype=np.uint16)
    picture = decode_image(encode(Image.fromarray(values), "PNG"), "deep.png")
    np.testing.assert_array_equal(picture.rgb[0, :, 0], [0, 100, 255, 7])


def test_16_bit_rgb_png(tmp_path: Path) -> None:
    pixels = gradient().astype(np.uint16) * 257
    path = tmp_path / "deep_rgb.png"
    cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    assert path.read_bytes()[24] == 16  # IHDR bit depth: really 16 bits per channel
    picture = read_image(path)
    np.testing.assert_array_equal(picture.rgb, gradient())


def test_cmyk_jpeg_becomes_rgb() -> None:
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    picture = decode_image(encode(cyan, "JPEG", quality=95), "print.jpg")
    red, green, blue = (int(v) for v in picture.rgb[8, 8])
    assert red < 20 and green > 235 and blue > 235
    assert picture.icc is None


def test_icc_kept_only_when_it_describes_rgb() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    rgb_photo = decode_image(encode(Image.new("RGB", (8, 8)), "JPEG", icc_profile=srgb), "a.jpg")
    assert rgb_photo.icc == srgb
    grey_photo = decode_image(encode(Image.new("L", (8, 8)), "JPEG", icc_profile=lab), "b.jpg")
    assert grey_photo.icc is None


def test_zero_byte_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty") as caught:
        read_image(path)
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == b""


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_refused_and_untouched(tmp_path: Path, fmt: str) -> None:
    whole = encode(
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)), fmt
    )
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(whole[: len(whole) // 2])
    before = snapshot(path)
    with pytest.raises(ImageError, match="truncated"):
        read_image(path)
    assert snapshot(path) == before


def test_corrupt_png_is_refused() -> None:
    data = bytearray(encode(Image.fromarray(gradient()), "PNG"))
    start = data.index(b"IDAT") + 8
    data[start : start + 40] = bytes(40)  # wreck the compressed pixel stream
    with pytest.raises(ImageError, match=r"corrupt|truncated"):
        decode_image(bytes(data), "broken.png")


def test_non_image_with_image_extension_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are my shopping notes, not a photo\n", encoding="utf-8")
    with pytest.raises(ImageError, match="not an image"):
        read_image(path)


def test_unsupported_format_is_named() -> None:
    with pytest.raises(ImageError, match="GIF"):
        decode_image(encode(Image.new("RGB", (4, 4)), "GIF"), "anim.jpg")


def test_missing_file_and_folder_are_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="folder"):
        read_image(tmp_path)


def test_image_error_is_an_engine_error() -> None:
    assert issubclass(ImageError, EngineError)


def test_pixel_limit_is_configurable() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    assert decode_image(data, "ok.png", max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageError, match=r"100x100.*--max-pixels"):
        decode_image(data, "big.png", max_pixels=9_999)


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge canvas (the pixels are never there)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("width", "height"), [(13_000, 12_000), (40_000, 40_000)])
def test_decompression_bomb_is_refused_before_decoding(width: int, height: int) -> None:
    data = png_bomb(width, height)
    assert len(data) < 200
    with pytest.raises(ImageError, match=r"limit|too large"):
        decode_image(data, "bomb.png")


def test_reading_never_changes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(Image.fromarray(gradient()), "JPEG"))
    before = snapshot(path)
    read_image(path)
    assert snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]
