"""Reading masks: non-zero erases, alpha masks, size checks and --resize-mask."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lama_desktop.engine.imageio import ImageError, decode_mask, read_mask


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def square_mask(width: int = 40, height: int = 30, value: int = 255) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[10:20, 5:25] = value
    return mask


def test_white_on_black_mask() -> None:
    mask = square_mask()
    decoded = decode_mask(encode(Image.fromarray(mask)), "m.png", (40, 30))
    assert decoded.dtype == np.uint8
    assert decoded.shape == (30, 40)
    np.testing.assert_array_equal(decoded, mask)


def test_any_non_zero_value_erases_as_in_iopaint() -> None:
    faint = square_mask(value=1)
    decoded = decode_mask(encode(Image.fromarray(faint)), "faint.png", (40, 30))
    np.testing.assert_array_equal(decoded, square_mask())
    coloured = np.zeros((30, 40, 3), np.uint8)
    coloured[10:20, 5:25] = (0, 0, 3)  # dark blue strokes still mean erase
    decoded = decode_mask(encode(Image.fromarray(coloured)), "blue.png", (40, 30))
    np.testing.assert_array_equal(decoded, square_mask())


def test_jpeg_mask_noise_does_not_erase() -> None:
    data = encode(Image.fromarray(square_mask()), "JPEG", quality=60)
    noisy = np.array(Image.open(io.BytesIO(data)))
    assert ((noisy > 0) & (square_mask() == 0)).any()  # the noise this test is about
    decoded = decode_mask(data, "m.jpg", (40, 30))
    np.testing.assert_array_equal(decoded[square_mask() == 0], 0)
    np.testing.assert_array_equal(decoded[12:18, 8:22], 255)


def test_alpha_only_mask_uses_the_alpha_channel() -> None:
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: only alpha tells strokes from background
    rgba[..., 3] = square_mask()
    decoded = decode_mask(encode(Image.fromarray(rgba, mode="RGBA")), "layer.png", (40, 30))
    np.testing.assert_array_equal(decoded, square_mask())


def test_opaque_black_mask_with_an_alpha_channel_erases_nothing() -> None:
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 3] = 255  # an empty mask exported with an (opaque) alpha channel
    decoded = decode_mask(encode(Image.fromarray(rgba, mode="RGBA")), "empty.png", (40, 30))
    assert not decoded.any()


def test_strokes_on_a_clear_layer() -> None:
    rgba = np.zeros((30, 40, 4), np.uint8)  # transparent black background
    rgba[10:20, 5:25] = (255, 0, 0, 255)  # red strokes
    rgba[0:3, 0:3] = (255, 255, 255, 0)  # white but fully transparent: not a stroke
    decoded = decode_mask(encode(Image.fromarray(rgba, mode="RGBA")), "strokes.png", (40, 30))
    np.testing.assert_array_equal(decoded, square_mask())


def test_opaque_rgba_mask_reads_its_colour() -> None:
    rgba = np.dstack([np.dstack([square_mask()] * 3), np.full((30, 40), 255, np.uint8)])
    decoded = decode_mask(encode(Image.fromarray(rgba, mode="RGBA")), "flat.png", (40, 30))
    np.testing.assert_array_equal(decoded, square_mask())


def test_size_mismatch_names_both_sizes_and_the_option() -> None:
    data = encode(Image.fromarray(square_mask(40, 30)))
    with pytest.raises(ImageError) as caught:
        decode_mask(data, "m.png", (80, 60))
    message = str(caught.value)
    assert "40x30" in message
    assert "80x60" in message
    assert "--resize-mask" in message
    assert caught.value.path == "m.png"


def test_resize_mask_uses_nearest_neighbour() -> None:
    data = encode(Image.fromarray(square_mask(40, 30)))
    decoded = decode_mask(data, "m.png", (80, 60), resize=True)
    assert decoded.shape == (60, 80)
    assert set(np.unique(decoded)) == {0, 255}
    expected = np.zeros((60, 80), np.uint8)
    expected[20:40, 10:50] = 255
    np.testing.assert_array_equal(decoded, expected)


def test_bad_mask_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_mask(empty, (40, 30))
    text = tmp_path / "text.png"
    text.write_text("no pixels here", encoding="utf-8")
    with pytest.raises(ImageError, match="not an image"):
        read_mask(text, (40, 30))


def test_read_mask_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    path.write_bytes(encode(Image.fromarray(square_mask())))
    np.testing.assert_array_equal(read_mask(path, (40, 30)), square_mask())
