"""Encoding keeps format, metadata and alpha; atomic writes never leave a part-file behind."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from lama_desktop.engine import imageio
from lama_desktop.engine.imageio import (
    Picture,
    decode_image,
    encode_image,
    output_extension,
    read_image,
    write_atomic,
)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def gradient(width: int = 64, height: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4 % 256, y * 5 % 256, (x + y) % 256], axis=2).astype(np.uint8)


def test_jpeg_output_keeps_exif_and_icc() -> None:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[0x0132] = "2026:11:28 03:00:00"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(Image.fromarray(gradient()), "JPEG", exif=exif.tobytes(), icc_profile=srgb)
    picture = decode_image(data, "in.jpg")
    out = Image.open(io.BytesIO(encode_image(picture, picture.rgb)))
    assert out.format == "JPEG"
    assert out.info["icc_profile"] == srgb
    assert out.getexif()[0x010F] == "TestCam"
    assert out.getexif()[0x0132] == "2026:11:28 03:00:00"


def test_jpeg_quality_defaults_to_95() -> None:
    picture = decode_image(encode(Image.fromarray(gradient()), "PNG"), "in.png")
    default = encode_image(picture, picture.rgb, "jpg")
    assert default == encode_image(picture, picture.rgb, "jpg", quality=95)
    assert default != encode_image(picture, picture.rgb, "jpg", quality=50)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_alpha_survives_lossless_output(fmt: str) -> None:
    rgba = np.dstack([gradient(), np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))])
    picture = decode_image(encode(Image.fromarray(rgba, mode="RGBA"), fmt), "in")
    edited = picture.rgb.copy()
    edited[10:20, 10:20] = 7
    out = Image.open(io.BytesIO(encode_image(picture, edited)))
    assert out.format == fmt
    assert out.mode == "RGBA"
    back = np.array(out)
    np.testing.assert_array_equal(back[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(back[..., :3], edited)


def test_alpha_survives_webp_output() -> None:
    rgba = np.dstack(
        [gradient(), np.where(np.arange(64) < 32, 0, 255).astype(np.uint8)[None, :].repeat(48, 0)]
    )
    picture = decode_image(encode(Image.fromarray(rgba, mode="RGBA"), "PNG"), "in.png")
    out = Image.open(io.BytesIO(encode_image(picture, picture.rgb, "webp")))
    assert out.format == "WEBP"
    np.testing.assert_array_equal(np.array(out.convert("RGBA"))[..., 3], rgba[..., 3])


@pytest.mark.parametrize(
    ("fmt", "pillow", "extension"),
    [
        (None, "PNG", ".png"),
        ("png", "PNG", ".png"),
        ("jpg", "JPEG", ".jpg"),
        ("webp", "WEBP", ".webp"),
    ],
)
def test_output_format_choice(fmt: str | None, pillow: str, extension: str) -> None:
    picture = decode_image(encode(Image.fromarray(gradient()), "PNG"), "in.png")
    out = Image.open(io.BytesIO(encode_image(picture, picture.rgb, fmt)))
    assert out.format == pillow
    assert output_extension(picture, fmt) == extension


def test_input_format_is_kept_for_bmp_and_tiff() -> None:
    for fmt, extension in (("BMP", ".bmp"), ("TIFF", ".tif")):
        picture = decode_image(encode(Image.fromarray(gradient()), fmt), "in")
        out = Image.open(io.BytesIO(encode_image(picture, picture.rgb)))
        assert out.format == fmt
        np.testing.assert_array_equal(np.array(out), gradient())
        assert output_extension(picture, None) == extension


def test_encode_refuses_wrong_pixels_and_formats() -> None:
    picture = decode_image(encode(Image.fromarray(gradient()), "PNG"), "in.png")
    with pytest.raises(ValueError, match="shape"):
        encode_image(picture, picture.rgb[:10])
    with pytest.raises(ValueError, match="gif"):
        encode_image(picture, picture.rgb, "gif")


def test_write_atomic_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "new" / "out.png"
    write_atomic(path, b"first")
    assert path.read_bytes() == b"first"
    with pytest.raises(FileExistsError, match="already exists"):
        write_atomic(path, b"second")
    assert path.read_bytes() == b"first"
    write_atomic(path, b"third", overwrite=True)
    assert path.read_bytes() == b"third"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.png"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    def fail(fd: int) -> None:
        raise error

    monkeypatch.setattr(imageio.os, "fsync", fail)
    with pytest.raises(type(error)):
        write_atomic(tmp_path / "out.jpg", b"x" * 10_000)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.jpg"
    path.write_bytes(b"old result")

    def fail(src: object, dst: object) -> None:
        raise OSError("rename failed")

    monkeypatch.setattr(imageio.os, "replace", fail)
    with pytest.raises(OSError, match="rename failed"):
        write_atomic(path, b"new result", overwrite=True)
    assert path.read_bytes() == b"old result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jpg"]


def test_non_ascii_paths_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "Фото 写真 été"
    source = folder / "café ☕.png"
    write_atomic(source, encode(Image.fromarray(gradient()), "PNG"))
    picture = read_image(source)
    np.testing.assert_array_equal(picture.rgb, gradient())
    target = folder / "résultat 結果.png"
    write_atomic(target, encode_image(picture, picture.rgb))
    np.testing.assert_array_equal(read_image(target).rgb, gradient())


def test_written_file_has_ordinary_permissions(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX permission bits")
    write_atomic(tmp_path / "out.png", b"data")
    mode = (tmp_path / "out.png").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_greyscale_photo_stays_greyscale(fmt: str) -> None:
    grey = gradient()[..., 0]
    picture = decode_image(encode(Image.fromarray(grey, mode="L"), fmt), "grey")
    assert picture.grey
    with Image.open(io.BytesIO(encode_image(picture, picture.rgb))) as out:
        assert out.format == fmt
        assert out.mode == "L"
        back = np.array(out.convert("L")).astype(int)
    assert np.abs(back - grey).max() <= (6 if fmt == "JPEG" else 0)


def test_greyscale_with_alpha_keeps_both() -> None:
    la = Image.fromarray(np.dstack([gradient()[..., 1], gradient()[..., 2]]), mode="LA")
    picture = decode_image(encode(la, "PNG"), "la.png")
    with Image.open(io.BytesIO(encode_image(picture, picture.rgb))) as out:
        assert out.mode == "LA"
        np.testing.assert_array_equal(np.array(out), np.array(la))


@pytest.mark.parametrize(("source", "target"), [("JPEG", "png"), ("PNG", "jpg"), ("PNG", "webp")])
def test_exif_survives_a_change_of_format(source: str, target: str) -> None:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    picture = decode_image(
        encode(Image.fromarray(gradient()), source, exif=exif.tobytes()), f"in.{source}"
    )
    with Image.open(io.BytesIO(encode_image(picture, picture.rgb, target))) as out:
        assert out.getexif()[0x010F] == "TestCam"


def test_webp_side_limit_is_explained() -> None:
    wide = Picture(
        rgb=np.zeros((1, 17_000, 3), np.uint8), alpha=None, format="PNG", exif=None, icc=None
    )
    with pytest.raises(ValueError, match=r"16383.*--format png"):
        encode_image(wide, wide.rgb, "webp")
    assert encode_image(wide, wide.rgb)[:4] == b"\x89PNG"


def test_file_appearing_during_the_write_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.png"
    real_fsync = os.fsync

    def other_writer_wins(fd: int) -> None:
        real_fsync(fd)
        if not path.exists():
            path.write_bytes(b"another batch's result")

    monkeypatch.setattr(imageio.os, "fsync", other_writer_wins)
    with pytest.raises(FileExistsError):
        write_atomic(path, b"ours")
    assert path.read_bytes() == b"another batch's result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_without_hard_links_the_write_still_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError("hard links are not supported here")

    monkeypatch.setattr(imageio.os, "link", no_links)
    write_atomic(tmp_path / "out.png", b"data")
    assert (tmp_path / "out.png").read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    with pytest.raises(FileExistsError):
        write_atomic(tmp_path / "out.png", b"again")
