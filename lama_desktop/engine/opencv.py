"""OpenCV's classical inpainting (Navier-Stokes and Telea): built in, no download, CPU only."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from lama_desktop.engine.base import EngineError, InpaintModel, check_inputs, register

DEFAULT_RADIUS = 4  # IOPaint's cv2_radius default


class OpenCVModel(InpaintModel):
    """cv2.inpaint with one algorithm flag; option `radius` (pixels, default 4)."""

    needs_download: ClassVar[bool] = False
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    # The cv2 constant's name: cv2 is imported only to inpaint, so the desktop's GUI process,
    # which looks these classes up for memory estimates, never loads it.
    flag_name: ClassVar[str]

    def __init__(self, device: str = "cpu", radius: int = DEFAULT_RADIUS, **options: Any) -> None:
        if device != "cpu":
            raise EngineError(f"Model {self.name!r} runs on the CPU only, not on {device!r}.")
        if options:
            raise EngineError(
                f"Model {self.name!r} has no option(s): {', '.join(sorted(options))}."
            )
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
            raise EngineError(
                f"OpenCV radius must be a whole number of pixels >= 1, got {radius!r}."
            )
        super().__init__(device)
        self.radius = radius

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Fill masked pixels from their surroundings; unmasked pixels come back unchanged."""
        check_inputs(image, mask)
        import cv2

        # IOPaint calls cv2.inpaint(bgr, mask) and reverses the channels back. cv2 fills each
        # channel on its own, reads every non-zero mask pixel as "fill" and copies unmasked
        # pixels through, so the RGB array goes in as it is: no BGR copy, no 0/255 mask, no
        # restore pass (tests/unit/test_engine_opencv.py holds all three against cv2 itself).
        return cv2.inpaint(
            np.ascontiguousarray(image), mask, self.radius, getattr(cv2, self.flag_name)
        )

    @classmethod
    def memory_estimate(cls, height: int, width: int) -> int:
        """cv2.inpaint keeps a few float and flag planes per pixel: about 40 bytes a pixel."""
        return 40 * height * width + 32 * 1024 * 1024


@register
class OpenCVNavierStokes(OpenCVModel):
    """Navier-Stokes based inpainting (IOPaint's default cv2 flag)."""

    name: ClassVar[str] = "opencv-ns"
    title: ClassVar[str] = "OpenCV Navier-Stokes"
    flag_name: ClassVar[str] = "INPAINT_NS"


@register
class OpenCVTelea(OpenCVModel):
    """Telea's fast marching inpainting."""

    name: ClassVar[str] = "opencv-telea"
    title: ClassVar[str] = "OpenCV Telea"
    flag_name: ClassVar[str] = "INPAINT_TELEA"
