"""The one job path: bytes in, bytes out, outside-mask pixels untouched, settings on the wire."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from lama_desktop.engine.base import InpaintModel, create_model
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.imageio import ImageError
from lama_desktop.engine.pipeline import JobSettings, process_arrays, process_bytes


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def photo(width: int = 96, height: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 2 % 256, y * 3 % 256, np.full_like(x, 90)], axis=2).astype(np.uint8)
    pixels[20:40, 30:60] = (250, 20, 20)  # the object to erase
    return pixels


def object_mask(width: int = 96, height: int = 64) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[18:42, 28:62] = 255
    return mask


@pytest.fixture(scope="module")
def model() -> InpaintModel:
    return create_model("opencv-telea", device="cpu")


def test_png_job_changes_only_the_masked_pixels(model: InpaintModel) -> None:
    rgba = np.dstack([photo(), np.full((64, 96), 200, np.uint8)])
    out = process_bytes(
        encode(Image.fromarray(rgba, mode="RGBA"), "PNG"),
        "in.png",
        encode(Image.fromarray(object_mask()), "PNG"),
        "mask.png",
        JobSettings(),
        model,
    )
    result = np.array(Image.open(io.BytesIO(out)))
    assert result.shape == (64, 96, 4)
    outside = object_mask() == 0
    np.testing.assert_array_equal(result[..., :3][outside], photo()[outside])
    np.testing.assert_array_equal(result[..., 3], 200)  # alpha kept
    erased = result[20:40, 30:60, :3].astype(int)
    assert np.abs(erased - (250, 20, 20)).sum(axis=2).mean() > 100  # the red object is gone


def test_jpeg_job_keeps_format_and_exif(model: InpaintModel) -> None:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    out = process_bytes(
        encode(Image.fromarray(photo()), "JPEG", quality=95, exif=exif.tobytes()),
        "in.jpg",
        encode(Image.fromarray(object_mask()), "PNG"),
        "mask.png",
        JobSettings(),
        model,
    )
    result = Image.open(io.BytesIO(out))
    assert result.format == "JPEG"
    assert result.getexif()[0x010F] == "TestCam"


def test_format_choice_and_resize_mask(model: InpaintModel) -> None:
    small_mask = encode(Image.fromarray(object_mask()[::2, ::2]), "PNG")
    image = encode(Image.fromarray(photo()), "PNG")
    with pytest.raises(ImageError, match="--resize-mask"):
        process_bytes(image, "in.png", small_mask, "m.png", JobSettings(), model)
    settings = JobSettings(output_format="webp", resize_mask=True)
    out = process_bytes(image, "in.png", small_mask, "m.png", settings, model)
    assert Image.open(io.BytesIO(out)).format == "WEBP"


def test_pixel_limit_setting_is_applied(model: InpaintModel) -> None:
    image = encode(Image.fromarray(photo()), "PNG")
    mask = encode(Image.fromarray(object_mask()), "PNG")
    with pytest.raises(ImageError, match="limit"):
        process_bytes(image, "in.png", mask, "m.png", JobSettings(max_pixels=1000), model)


@pytest.mark.parametrize("strategy", list(HDStrategy))
def test_every_strategy_keeps_outside_pixels(model: InpaintModel, strategy: HDStrategy) -> None:
    cfg = HDConfig(strategy=strategy, crop_trigger_size=64, resize_limit=64, crop_margin=8)
    result = process_arrays(photo(), object_mask(), model, cfg)
    outside = object_mask() == 0
    np.testing.assert_array_equal(result[outside], photo()[outside])
    assert not np.array_equal(result, photo())


def test_empty_mask_returns_the_photo_unchanged(model: InpaintModel) -> None:
    result = process_arrays(photo(), np.zeros((64, 96), np.uint8), model, HDConfig())
    np.testing.assert_array_equal(result, photo())


def test_settings_round_trip_through_json() -> None:
    settings = JobSettings(
        model="lama",
        device="cpu",
        hd=HDConfig(strategy=HDStrategy.RESIZE, resize_limit=1024),
        output_format="png",
        quality=90,
        resize_mask=True,
        max_pixels=1234,
    )
    wire = json.loads(json.dumps(settings.to_dict()))
    assert wire["hd"]["strategy"] == "resize"
    assert JobSettings.from_dict(wire) == settings
    assert JobSettings.from_dict({}) == JobSettings()


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="unknown job settings"):
        JobSettings.from_dict({"modle": "lama"})
    with pytest.raises(ValueError, match="output format"):
        JobSettings(output_format="gif")
    with pytest.raises(ValueError, match="quality"):
        JobSettings(quality=0)
    with pytest.raises(ValueError):
        JobSettings.from_dict({"hd": {"strategy": "sideways"}})
    with pytest.raises(ValueError, match="bad HD settings"):
        JobSettings.from_dict({"hd": {"margin": 3}})
