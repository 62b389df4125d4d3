"""One job, bytes in and bytes out: decode, check the mask, inpaint with an HD strategy, encode.

This is the single path that the in-process batch and every cluster worker run, so a photo
comes out the same wherever it was cleaned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lama_desktop.engine.base import EngineError, InpaintModel
from lama_desktop.engine.hd import HDConfig, HDStrategy, run_with_strategy
from lama_desktop.engine.imageio import (
    DEFAULT_MAX_PIXELS,
    OUTPUT_FORMATS,
    decode_image,
    decode_mask,
    encode_image,
)


@dataclass(frozen=True)
class JobSettings:
    """How every job of a batch is run; plain JSON through `to_dict`/`from_dict` for the wire."""

    model: str = "auto"
    device: str = "auto"
    hd: HDConfig = field(default_factory=HDConfig)
    output_format: str | None = None  # None keeps each photo's own format
    quality: int = 95
    resize_mask: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Options the model is built with, as (name, value) pairs (e.g. OpenCV's radius): a tuple,
    # so settings stay hashable; IOPaint's API sets them per request.
    model_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.output_format is not None and self.output_format.lower() not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output format {self.output_format!r} (png, jpg or webp)")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be 1..100, not {self.quality}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be positive, not {self.max_pixels}")

    def to_dict(self) -> dict[str, Any]:
        """Only str, int, bool and None values (the HD strategy by its name)."""
        data = asdict(self)
        data["hd"]["strategy"] = self.hd.strategy.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSettings:
        """The inverse of `to_dict`; missing keys take their defaults, unknown keys are refused."""
        values = dict(data)
        unknown = set(values) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown job settings: {', '.join(sorted(unknown))}")
        if "hd" in values:
            hd = dict(values["hd"])
            if "strategy" in hd:
                hd["strategy"] = HDStrategy(hd["strategy"])
            try:
                values["hd"] = HDConfig(**hd)
            except TypeError as exc:  # an unknown or missing HD field
                raise ValueError(f"bad HD settings {hd!r}: {exc}") from None
        if "model_options" in values:  # msgpack turns the pairs into lists
            values["model_options"] = tuple((str(k), v) for k, v in values["model_options"])
        return cls(**values)


def process_arrays(
    rgb: np.ndarray, mask: np.ndarray, model: InpaintModel, hd: HDConfig
) -> np.ndarray:
    """Inpaint `rgb` where `mask` is non-zero; pixels outside the mask come back unchanged."""
    result = run_with_strategy(model, rgb, mask, hd)
    if result.shape != rgb.shape or result.dtype != np.uint8:
        raise EngineError(
            f"model {model.name!r} returned {result.dtype} {result.shape}, "
            f"expected uint8 {rgb.shape}"
        )
    return result


def process_bytes(
    image_bytes: bytes,
    image_name: str,
    mask_bytes: bytes,
    mask_name: str,
    settings: JobSettings,
    model: InpaintModel,
) -> bytes:
    """Clean one photo given as file bytes; returns the encoded result (alpha and metadata kept).

    Raises `ImageError` (an `EngineError`) naming the file for any bad photo or mask.
    """
    picture = decode_image(image_bytes, image_name, settings.max_pixels)
    mask = decode_mask(mask_bytes, mask_name, picture.size, settings.resize_mask)
    result = process_arrays(picture.rgb, mask, model, settings.hd)
    return encode_image(picture, result, settings.output_format, settings.quality)
