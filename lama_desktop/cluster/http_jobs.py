"""A job as an IOPaint inpaint request and its answer back as a RESULT payload (no I/O here).

Both kinds of job are decoded here with our own rules (a batch photo's EXIF, alpha and mask
rules; an edit's raw pixels), sent as lossless PNG with a clean 0/255 mask, and the answer is
put back together here: pixels outside the mask are the input's, bit for bit, and a batch
photo is encoded with its own format, metadata and quality as a local worker would.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from lama_desktop.cluster import protocol as p
from lama_desktop.engine.base import EngineError
from lama_desktop.engine.imageio import (
    Picture,
    decode_image,
    decode_mask,
    encode_image,
    output_extension,
)
from lama_desktop.engine.pipeline import JobSettings

_CV2_FLAGS = {"opencv-ns": "INPAINT_NS", "opencv-telea": "INPAINT_TELEA"}
# What an endpoint's GET /api/v1/model name means in our model names.
MODELS_OF = {"cv2": ["opencv-ns", "opencv-telea"], "lama": ["lama"]}


def models_of(iopaint_name: str) -> list[str]:
    """Our models an endpoint running IOPaint's model `iopaint_name` can take jobs for."""
    return MODELS_OF.get(iopaint_name, [iopaint_name])


@dataclass
class JobPixels:
    """What the answer is checked and finished against."""

    rgb: np.ndarray
    mask: np.ndarray
    picture: Picture | None  # a batch photo (None for an edit's raw pixels)
    settings: JobSettings


def build_request(job: p.Job, image: Any, mask: Any) -> tuple[bytes, JobPixels]:
    """The JSON body of POST /api/v1/inpaint for `job`; raises EngineError for bad input."""
    settings = JobSettings.from_dict(job.settings)
    picture: Picture | None = None
    if job.kind == "array":
        if not job.shape or len(job.shape) != 2:
            raise EngineError(f"array job needs shape [height, width], got {job.shape}")
        height, width = job.shape
        rgb = _array(image, (height, width, 3), "image")
        bits = np.where(_array(mask, (height, width), "mask") > 0, 255, 0).astype(np.uint8)
    else:
        picture = decode_image(bytes(image), job.image_name, settings.max_pixels)
        bits = decode_mask(bytes(mask), job.mask_name, picture.size, settings.resize_mask)
        rgb = picture.rgb
    body: dict[str, Any] = {
        "image": _png_base64(rgb),
        "mask": _png_base64(bits),
        "hd_strategy": settings.hd.strategy.value.capitalize(),
        "hd_strategy_crop_trigger_size": settings.hd.crop_trigger_size,
        "hd_strategy_crop_margin": settings.hd.crop_margin,
        "hd_strategy_resize_limit": settings.hd.resize_limit,
    }
    if settings.model in _CV2_FLAGS:
        body["cv2_flag"] = _CV2_FLAGS[settings.model]
        body["cv2_radius"] = int(dict(settings.model_options).get("radius", 4))
    return json.dumps(body).encode(), JobPixels(rgb, bits, picture, settings)


def finish_answer(pixels: JobPixels, data: bytes) -> tuple[bytes, str, list[int] | None]:
    """The RESULT payload, its extension and shape from the endpoint's image bytes."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            out = np.array(image.convert("RGB"))
    except Exception as exc:  # Pillow raises many kinds for a broken answer
        raise EngineError(f"the endpoint answered something that is not an image ({exc})") from None
    if out.shape != pixels.rgb.shape:
        raise EngineError(
            f"the endpoint answered a {out.shape[1]}x{out.shape[0]} image for a "
            f"{pixels.rgb.shape[1]}x{pixels.rgb.shape[0]} photo"
        )
    # Outside the mask the photo stays bit-identical, whatever the endpoint did there.
    np.copyto(out, pixels.rgb, where=(pixels.mask == 0)[..., None])
    if pixels.picture is None:
        height, width = pixels.mask.shape
        return out.tobytes(), "", [height, width]
    settings = pixels.settings
    encoded = encode_image(pixels.picture, out, settings.output_format, settings.quality)
    return encoded, output_extension(pixels.picture, settings.output_format), None


def error_detail(status: int, data: bytes) -> str:
    """A one-line reason from an error answer (IOPaint's JSON error, or the start of the text)."""
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("errors") or body.get("error")
        if detail:
            return f"HTTP {status}: {detail}"
    text = data[:200].decode("utf-8", "replace").strip()
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


def _array(buffer: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    view = memoryview(buffer).cast("B")
    if view.nbytes != int(np.prod(shape)):
        raise EngineError(f"{what} has {view.nbytes} bytes, {shape} needs {int(np.prod(shape))}")
    return np.frombuffer(view, dtype=np.uint8).reshape(shape)


def _png_base64(array: np.ndarray) -> str:
    out = io.BytesIO()
    # Level 1: the bytes only cross a network once; speed matters more than a few percent.
    Image.fromarray(array).save(out, format="PNG", compress_level=1)
    return base64.b64encode(out.getvalue()).decode()
