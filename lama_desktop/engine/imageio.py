"""Image and mask I/O that never harms a user's file: safe decode, faithful encode, atomic write."""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageCms, ImageOps, JpegImagePlugin, UnidentifiedImageError

from lama_desktop.engine import depth
from lama_desktop.engine.base import EngineError

DEFAULT_MAX_PIXELS = 150_000_000
# What Pillow calls a format -> the name we keep it under. Cameras write MPO (multi-picture JPEG).
_READABLE = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "WEBP": "WEBP",
    "BMP": "BMP",
    "TIFF": "TIFF",
}
OUTPUT_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
_DEEP_FORMATS = {"PNG", "TIFF"}  # where a 16-bit photo stays 16-bit
_MAX_SIDE = {"WEBP": 16383, "JPEG": 65535}  # limits of the file formats themselves
_ORIENTATION = 0x0112
_GREY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
# write_atomic's temporary file for NAME: ".NAME.<8 hex>.tmp" (see temp_path).
TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.tmp")


class ImageError(EngineError):
    """A file that cannot be used as an image or mask; the message names the file and why."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class Picture:
    """A decoded photo: upright 8-bit RGB pixels plus what must survive into the output."""

    rgb: np.ndarray  # uint8 HxWx3, EXIF orientation already applied
    alpha: np.ndarray | None  # uint8 HxW when the source had transparency
    format: str  # "JPEG", "PNG", "WEBP", "BMP" or "TIFF"
    exif: bytes | None  # orientation tag cleared, since the pixels are already upright
    icc: bytes | None  # only an RGB profile; others are applied at decode time
    grey: bool = False  # a greyscale source is written back as greyscale
    dpi: tuple[float, float] | None = None  # (x, y) of the upright photo, when the file says
    subsampling: int | None = None  # a JPEG's chroma subsampling (Pillow's 0, 1 or 2)
    qtables: list[list[int]] | None = None  # a JPEG's quantisation tables, reused for JPEG out
    deep: np.ndarray | None = None  # uint16 HxWx3|4 of a 16-bit PNG/TIFF (same layout as rgb)
    bits: int = 8  # bits per channel of the source

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    def depth_note(self, fmt: str | None) -> str | None:
        """What the user must hear before saving as `fmt` loses bits, or None when nothing is
        lost (16-bit photos stay 16-bit as PNG and TIFF)."""
        target = _target_format(self, fmt)
        if self.bits <= 8 or (self.deep is not None and target in _DEEP_FORMATS):
            return None
        hint = " Save as PNG to keep 16 bits." if self.deep is not None else ""
        return f"This photo has {self.bits} bits per channel; as {target} it is saved with 8.{hint}"


@contextmanager
def _decoding(name: str) -> Iterator[None]:
    """Turn Pillow's many exception types for a damaged file into one clear `ImageError`."""
    try:
        with warnings.catch_warnings():
            # Pillow warns about damage it steps over (bad EXIF, bomb-sized canvases, which
            # are checked against our own limit); the decoded pixels are still sound.
            warnings.simplefilter("ignore")
            yield
    except ImageError:
        raise
    except MemoryError as exc:
        raise ImageError(name, "not enough memory to decode this image") from exc
    except Exception as exc:  # Pillow raises OSError, ValueError, struct.error, IndexError...
        reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise ImageError(name, f"the file is {reason} ({exc})") from exc


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Open and fully decode `data`, refusing empty, foreign and oversized files.

    Call it inside `_decoding`, which reports broken files.
    """
    if not data:
        raise ImageError(name, "the file is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(name, f"the image is too large to open safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(name, "not an image, or a format that cannot be read") from exc
    if image.format not in _READABLE:
        raise ImageError(
            name, f"{image.format} images are not supported (use JPEG, PNG, WebP, BMP or TIFF)"
        )
    width, height = image.size
    # Checked before any pixel is decoded: a small file can declare a huge canvas.
    if width * height > max_pixels:
        raise ImageError(
            name,
            f"the image is {width}x{height} ({width * height / 1e6:.0f} MP), over the limit of "
            f"{max_pixels / 1e6:.0f} MP (raise it with --max-pixels)",
        )
    image.load()
    return image


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; unreadable EXIF counts as none, as photo viewers do."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # damaged EXIF must not cost the user a photo whose pixels are fine
        return image


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (
        image.mode in {"P", "L", "RGB"} and "transparency" in image.info
    )


def _to_uint8(image: Image.Image) -> Image.Image:
    """Reduce 16/32-bit and float single-channel images to 8-bit by scaling, not clipping."""
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = values.astype(np.float64) / 257.0
    elif image.mode == "I":
        top = 65535.0 if values.max(initial=0) <= 65535 else float(values.max())
        scaled = np.clip(values.astype(np.float64), 0, None) * (255.0 / top)
    else:  # "F": floats, taken as 0..1 when they fit, else as 0..255
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        scaled = values.astype(np.float64) * scale
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _rgb_profile(icc: bytes | None) -> tuple[bytes | None, ImageCms.ImageCmsProfile | None]:
    """Split a profile into (bytes to keep if it describes RGB, parsed profile otherwise)."""
    if not icc:
        return None, None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ImageCms.PyCMSError):
        return None, None  # an unreadable profile is dropped rather than copied forward
    if profile.profile.xcolor_space.strip() == "RGB":
        return icc, None
    return None, profile


def _upright_exif(image: Image.Image) -> bytes | None:
    """The source EXIF block, with the orientation tag removed only when it was set."""
    raw = image.info.get("exif")
    if not raw:
        return None
    # A fresh Exif: editing image.getexif() would hide the tag from exif_transpose.
    exif = Image.Exif()
    try:
        exif.load(bytes(raw))
        if exif.get(_ORIENTATION, 1) == 1:
            return bytes(raw)
        del exif[_ORIENTATION]
        return exif.tobytes()
    except Exception:  # EXIF that cannot be parsed is dropped, not copied into the output
        return None


def decode_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode a photo from bytes into an upright 8-bit RGB `Picture`, or raise `ImageError`."""
    with _decoding(name):
        image = _open(data, name, max_pixels)
        fmt = _READABLE[str(image.format)]
        exif = _upright_exif(image)
        icc, foreign_profile = _rgb_profile(image.info.get("icc_profile"))
        turned = _orientation(image) != 1
        dpi = _dpi(image, swap=_orientation(image) in {5, 6, 7, 8})
        jpeg = _jpeg_encoding(image)
        sixteen = depth.is_16_bit(image, data)
        image = _upright(image)
        rgb, alpha = _to_rgb(image, foreign_profile)
        # Full depth only where the 16-bit pixels line up with the 8-bit ones unchanged (no
        # rotation, no profile conversion); otherwise the photo is saved at 8 bits, and said so.
        deep = (
            depth.decode_deep(data, rgb) if sixteen and not turned and not foreign_profile else None
        )
    grey = image.mode in _GREY_MODES
    return Picture(
        rgb=rgb,
        alpha=alpha,
        format=fmt,
        exif=exif,
        icc=icc,
        grey=grey,
        dpi=dpi,
        subsampling=jpeg[0],
        qtables=jpeg[1],
        deep=deep,
        bits=16 if sixteen else 8,
    )


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION, 1))
    except Exception:  # unreadable EXIF counts as upright, as in _upright
        return 1


def _dpi(image: Image.Image, swap: bool) -> tuple[float, float] | None:
    """The file's resolution, (x, y) as the upright photo sees it."""
    dpi: Any = image.info.get("dpi")
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return None
    if x <= 0 or y <= 0:
        return None
    return (y, x) if swap else (x, y)


def _jpeg_encoding(image: Image.Image) -> tuple[int | None, list[list[int]] | None]:
    """A JPEG's chroma subsampling and quantisation tables, to encode the result the same way."""
    if not isinstance(image, JpegImagePlugin.JpegImageFile):
        return None, None
    sampling = JpegImagePlugin.get_sampling(image)
    tables = getattr(image, "quantization", None)
    qtables = [list(tables[key]) for key in sorted(tables)] if tables else None
    return (sampling if sampling >= 0 else None), qtables


def decode_grey(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image into upright 8-bit grey (Pillow's "L" conversion), or raise ImageError."""
    with _decoding(name):
        return np.asarray(_upright(_open(data, name, max_pixels)).convert("L"))


def _to_rgb(
    image: Image.Image, profile: ImageCms.ImageCmsProfile | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """8-bit RGB pixels and, when the image has transparency, its alpha channel."""
    if _has_alpha(image):
        rgba = np.array(image.convert("RGBA"))
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    if image.mode in {"I", "F"} or image.mode.startswith("I;16"):
        return np.array(_to_uint8(image).convert("RGB")), None
    if image.mode == "CMYK" and profile is not None:
        # A CMYK profile describes the ink, so convert through it rather than copy it to RGB.
        srgb = ImageCms.createProfile("sRGB")
        converted = ImageCms.profileToProfile(image, profile, srgb, outputMode="RGB")
        assert converted is not None  # inPlace=False always returns the new image
        return np.array(converted), None
    return np.array(image.convert("RGB")), None


def read_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Read and decode a photo from disk; the file is opened read-only and never changed."""
    return decode_image(read_bytes(path), str(path), max_pixels)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a file, or an ImageError that says plainly why it cannot be read."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise ImageError(path, "file not found") from exc
    except IsADirectoryError as exc:
        raise ImageError(path, "is a folder, not a file") from exc
    except OSError as exc:
        raise ImageError(path, f"cannot be read ({exc.strerror or exc})") from exc


def _brightest(rgb: np.ndarray) -> np.ndarray:
    """Per pixel, the largest of R, G and B (much faster than a max over the last axis)."""
    return np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])


def _mask_bits(image: Image.Image, lossy: bool) -> np.ndarray:
    """True where the mask says erase; see `decode_mask` for the rule."""
    if _has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"))
        colour, alpha = rgba[..., :3], rgba[..., 3]
        if (colour == colour.reshape(-1, 3)[0]).all() and alpha.min() < 255:
            # One colour everywhere and a varying alpha: the strokes live in the alpha
            # channel. (An opaque one-colour mask is read by its colour: all black is empty.)
            return alpha > 0
        return (_brightest(colour) > 0) & (alpha > 0)
    if image.mode in {"1", "L", "I", "F"} or image.mode.startswith("I;16"):
        values = np.asarray(image)
    else:  # RGB, palette, CMYK...: a pixel counts when any of its colours is lit
        values = _brightest(np.asarray(image.convert("RGB")))
    # JPEG noise turns black into 1..3; a lossy mask is read as black/white at the midpoint.
    return values >= 128 if lossy else values > 0


def decode_mask(data: bytes, name: str, size: tuple[int, int], resize: bool = False) -> np.ndarray:
    """Decode a mask for an image of `size` (w, h) into uint8 HxW of 0 (keep) and 255 (erase).

    Non-zero means erase, as in IOPaint (a JPEG mask is split at 128 because of its noise).
    A mask with transparency: if every pixel has the same colour, the alpha channel is the mask
    (strokes painted on a clear layer); otherwise a pixel is erased when it is both non-black and
    not fully transparent. A mask of another size is refused unless `resize` asks for
    nearest-neighbour scaling.
    """
    # A mask as large as its photo is fine, even past the default limit; a bigger one is not.
    limit = max(DEFAULT_MAX_PIXELS, size[0] * size[1])
    with _decoding(name):
        image = _open(data, name, limit)
        lossy = image.format in {"JPEG", "MPO"}
        bits = _mask_bits(_upright(image), lossy)
    mask = bits.astype(np.uint8)
    mask *= 255  # in place: no second full-size array, and no trip through Pillow
    if (mask.shape[1], mask.shape[0]) != tuple(size):
        if not resize:
            raise ImageError(
                name,
                f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                f"{size[0]}x{size[1]}; make them the same size, or pass --resize-mask to "
                "scale the mask (nearest neighbour)",
            )
        scaled = Image.fromarray(mask, mode="L").resize(size, Image.Resampling.NEAREST)
        mask = np.array(scaled)
    return mask


def read_mask(
    path: str | os.PathLike[str], size: tuple[int, int], resize: bool = False
) -> np.ndarray:
    """Read a mask file from disk; see `decode_mask`."""
    return decode_mask(read_bytes(path), str(path), size, resize)


def output_extension(picture: Picture, fmt: str | None) -> str:
    """File extension (with dot) for the output of `picture` written as `fmt` (None keeps it)."""
    return _EXTENSIONS[_target_format(picture, fmt)]


def _target_format(picture: Picture, fmt: str | None) -> str:
    if fmt is None:
        return picture.format
    try:
        return OUTPUT_FORMATS[fmt.lower()]
    except KeyError:
        raise ValueError(f"unknown output format {fmt!r} (choose png, jpg or webp)") from None


def encode_image(
    picture: Picture, rgb: np.ndarray, fmt: str | None = None, quality: int = 95
) -> bytes:
    """Encode `rgb` (the edited pixels of `picture`) in the input's format unless `fmt` says.

    EXIF, the RGB ICC profile and the DPI go along where the format holds them; alpha is kept
    for PNG, WebP and TIFF. A JPEG written from a JPEG keeps its chroma subsampling and its
    quantisation tables (so `quality` applies only to other sources); a 16-bit photo written as
    PNG or TIFF stays 16-bit, with every pixel the edit left alone kept exactly.
    """
    if rgb.dtype != np.uint8 or rgb.shape != picture.rgb.shape:
        raise ValueError(
            f"expected uint8 pixels of shape {picture.rgb.shape}, got {rgb.dtype} {rgb.shape}"
        )
    target = _target_format(picture, fmt)
    longest = max(picture.size)
    if longest > _MAX_SIDE.get(target, longest):
        raise ValueError(
            f"{target} holds at most {_MAX_SIDE[target]} pixels per side and this image has "
            f"{longest}; choose another output format (--format png)"
        )
    if picture.deep is not None and target in _DEEP_FORMATS:
        deep = depth.widen(picture.deep, picture.rgb, rgb, picture.grey)
        if target == "TIFF":
            return depth.encode_tiff16(deep, picture.icc, picture.dpi)
        return depth.encode_png16(deep, picture.icc, picture.exif, picture.dpi)
    image = Image.fromarray(rgb, mode="RGB")
    if picture.grey:
        image = image.convert("L")
    if picture.alpha is not None and target in _ALPHA_FORMATS:
        image.putalpha(Image.fromarray(picture.alpha, mode="L"))
    options: dict[str, object] = {}
    if target != "BMP":
        if picture.exif:
            options["exif"] = picture.exif
        if picture.icc:
            options["icc_profile"] = picture.icc
    if picture.dpi and target in {"JPEG", "PNG", "TIFF", "BMP"}:
        options["dpi"] = picture.dpi
    if target == "JPEG" and picture.qtables:
        options["qtables"] = picture.qtables
    elif target in {"JPEG", "WEBP"}:
        options["quality"] = quality
    if target == "JPEG" and picture.subsampling is not None:
        options["subsampling"] = picture.subsampling
    if target == "TIFF":
        options["compression"] = "tiff_lzw"
    out = io.BytesIO()
    image.save(out, format=target, **options)
    return out.getvalue()


def write_atomic(path: Path, data: bytes, overwrite: bool = False) -> None:
    """Write `data` to `path` through a temporary file in the same folder and one rename.

    Readers see the old file or the whole new one, never a part. An existing file is refused
    with `FileExistsError` unless `overwrite`. Missing parent folders are created. The temporary
    file is removed on any failure, Ctrl-C included.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: already exists (not overwritten)")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temp, flags, 0o666)
    try:
        lock_temp(fd)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            _place_new(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def temp_path(path: Path) -> Path:
    """A fresh temporary name next to `path` (matches TEMP_NAME)."""
    # Dot-prefixed with a non-image suffix so a batch scanning this folder never picks it up.
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def lock_temp(fd: int) -> None:
    """Hold an exclusive lock on a temporary file while it is written.

    The kernel drops it when the writer dies, so a later run tells a leftover of a killed
    writer (lock free: remove it) from a file another run is writing now (locked: keep it).
    """
    try:
        import fcntl
    except ImportError:  # Windows: an open file cannot be deleted there anyway
        return
    # On a file system without locks, the leftover check falls back to the file's age.
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _place_new(temp: Path, path: Path) -> None:
    """Give `temp` the name `path` only if nothing has that name, even a file made just now."""
    try:
        # A hard link fails when the name exists: no window in which another writer's file
        # (a second batch on the same folder) could be replaced.
        os.link(temp, path)
    except FileExistsError:
        raise FileExistsError(f"{path}: already exists (not overwritten)") from None
    except OSError:  # file systems without hard links (FAT, some network shares)
        if path.exists():
            raise FileExistsError(f"{path}: already exists (not overwritten)") from None
        os.replace(temp, path)
        return
    temp.unlink()


def _sync_folder(folder: Path) -> None:
    """Make the rename durable on POSIX; folders cannot be opened for sync on Windows."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself is still atomic
    finally:
        os.close(fd)
